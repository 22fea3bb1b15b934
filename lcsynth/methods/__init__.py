"""Methods turn documents into training records; see `base.Method`."""
