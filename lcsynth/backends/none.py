"""No model at all: for recipes whose methods only build samples (KeyChain from a QA file, UtK, NExtLong)."""

from __future__ import annotations

from lcsynth.backends.base import Completion, Request
from lcsynth.config import BackendSpec
from lcsynth.errors import BackendError
from lcsynth.text.chat import ChatTemplate, template_for_tokenizer
from lcsynth.text.tokens import Tokenizer, load_tokenizer

# With no model there is no context limit; documents are used whole.
UNLIMITED = 2**31 - 1


class NoModelBackend:
    """Supplies the tokenizer (`backend.tokenizer`, default the bundled GGUF's) and chat template; never generates."""

    def __init__(self, spec: BackendSpec) -> None:
        from lcsynth.backends.llamacpp import bundled_gguf

        self.tokenizer: Tokenizer = load_tokenizer(spec.tokenizer or str(bundled_gguf()))
        self.chat_template: ChatTemplate = template_for_tokenizer(self.tokenizer)
        self.model_id = f"none:{self.tokenizer.name.rsplit('/', 1)[-1]}"
        self.context_length = spec.context_length or UNLIMITED
        self.max_concurrency = spec.max_concurrency

    @classmethod
    def from_spec(cls, spec: BackendSpec) -> NoModelBackend:
        """Build from a recipe's backend section (only `tokenizer` and `context_length` matter)."""
        return cls(spec)

    async def start(self) -> None:
        """Nothing to start."""

    async def complete(self, request: Request) -> Completion:
        """Refuse: a method asked for generation, which this backend cannot do."""
        raise BackendError("backend 'none' runs no model, but a method asked for a completion; "
                           "choose llamacpp, openai or vllm")

    async def aclose(self) -> None:
        """Nothing to release."""
