"""lcsynth: long-context training data from real long documents."""

__version__ = "0.1.0"
