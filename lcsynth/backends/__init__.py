"""The models behind every request, one async contract (`base.Backend`), and the request cache in front of them.

Owns `base` (Request, Completion, the Backend protocol and registry), one module per backend (`llamacpp`,
`openai_compat` with its HTTP/1.1 client `http1` and rate `limits`, `vllm`, `none`), `cache` (the sqlite request
cache) and `batch` (OpenAI batch rounds through the cache).
May import `lcsynth.text` and the base modules; never corpus, prompts, methods, out, run or cli.
"""

from lcsynth.backends.base import Backend, Completion, Request, Usage, create_backend

__all__ = ["Backend", "Completion", "Request", "Usage", "create_backend"]
