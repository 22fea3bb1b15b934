"""`lcsynth serve-local`'s server: llama-cpp-python's app plus llama.cpp's `/tokenize`, `/detokenize`, `/props`.

With those a client needs neither `backend.model` nor `backend.tokenizer`.

Run as `python -m lcsynth.backends.local_server` with `llama_cpp.server`'s own arguments.
"""

from __future__ import annotations

import argparse
from typing import Any


def add_tokenizer_routes(app: Any, gguf: str, context_length: int) -> None:
    """Add llama.cpp server's `/tokenize`, `/detokenize` and `/props` to `app`, from the GGUF's vocabulary."""
    from lcsynth.text.chat import template_from_metadata
    from lcsynth.text.tokens import LlamaCppTokenizer

    tokenizer = LlamaCppTokenizer.from_gguf(gguf)
    template = template_from_metadata(tokenizer.metadata)

    @app.post("/tokenize")
    async def tokenize(body: dict[str, Any]) -> dict[str, Any]:
        return {"tokens": tokenizer.encode(str(body.get("content", "")))}

    @app.post("/detokenize")
    async def detokenize(body: dict[str, Any]) -> dict[str, Any]:
        return {"content": tokenizer.decode([int(t) for t in body.get("tokens", [])])}

    @app.get("/props")
    async def props() -> dict[str, Any]:
        return {"chat_template": template.source, "default_generation_settings": {"n_ctx": context_length}}


def main() -> None:
    """Parse llama_cpp.server's arguments, build its app, add the tokenizer routes, serve."""
    import uvicorn
    from llama_cpp.server.app import create_app
    from llama_cpp.server.cli import add_args_from_model, parse_model_from_args
    from llama_cpp.server.settings import ModelSettings, ServerSettings, Settings

    parser = argparse.ArgumentParser(description="llama.cpp's OpenAI-compatible server, with /tokenize and /props")
    add_args_from_model(parser, Settings)
    args = parser.parse_args()
    server = parse_model_from_args(ServerSettings, args)
    model = parse_model_from_args(ModelSettings, args)
    app = create_app(server_settings=server, model_settings=[model])
    add_tokenizer_routes(app, model.model, model.n_ctx)
    uvicorn.run(app, host=server.host, port=server.port, log_level="warning")


if __name__ == "__main__":
    main()
