"""lcsynth: long-context training data from real long documents."""

__version__ = "0.1.0"


def load(run_dir: str) -> object:
    """A finished run as a `datasets.DatasetDict`, one entry per row kind (see `lcsynth.out.export.load`)."""
    from lcsynth.out.export import load as load_run

    return load_run(run_dir)
