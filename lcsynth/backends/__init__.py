"""Model backends behind one async contract; see `base.Backend`."""

from lcsynth.backends.base import Backend, Completion, Request, Usage, create_backend

__all__ = ["Backend", "Completion", "Request", "Usage", "create_backend"]
