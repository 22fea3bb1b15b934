"""Ways to run a recipe besides this process alone: `ray_executor` spreads its units over a Ray cluster."""
