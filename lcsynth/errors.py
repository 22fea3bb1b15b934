"""Errors shown to users: one line saying what went wrong, where, and how to fix it."""


class LcsynthError(Exception):
    """Base class of every error the CLI prints as one line instead of a traceback."""


class ConfigError(LcsynthError):
    """A recipe, template or command-line value is wrong."""


class InputError(LcsynthError):
    """A corpus, file or path the user gave cannot be read."""


class OutputError(LcsynthError):
    """An output folder or file cannot be written: in use by another run, not writable, or the disk is full."""


class BackendError(LcsynthError):
    """A model backend cannot be created or failed for good."""


class HubError(LcsynthError):
    """The Hugging Face Hub refused a request or could not be reached."""


class MissingExtra(LcsynthError):
    """An optional dependency is needed but not installed."""

    def __init__(self, package: str, extra: str, what: str) -> None:
        super().__init__(f"{what} needs the '{package}' package: install it with pip install 'lcsynth[{extra}]'")


class Pending(Exception):
    """A request was written to a batch file; its unit finishes in a later round, after `lcsynth ingest`."""


class Reject(Exception):
    """A unit of work produced no usable record; `reason` is a short slug, `detail` the evidence."""

    def __init__(self, reason: str, detail: str = "", raw: str | None = None) -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
        self.raw = raw
        self.request_hash: str | None = None
