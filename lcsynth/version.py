"""lcsynth's version, written into every row's meta and the manifest; kept apart so any module can read it."""

__version__ = "0.1.0"
