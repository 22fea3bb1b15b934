"""The `template` method: any user template becomes an SFT generator, with no Python to write.

The prompt template is rendered with the document, its output is parsed (text, JSON or regex) and
validated against the template's response schema, and a second "row" template lays out the training
conversation from the document and the parsed `output`.
"""

from __future__ import annotations

import random
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from lcsynth.backends.base import Request
from lcsynth.corpus.readers import Document
from lcsynth.errors import ConfigError, Reject
from lcsynth.methods.base import Method, MethodContext, Record
from lcsynth.prompts.parsing import parse_output
from lcsynth.prompts.templates import template_request


class TemplateParams(BaseModel):
    """Parameters of the `template` method."""

    model_config = ConfigDict(extra="forbid")
    template: str
    row_template: str
    samples_per_document: int = Field(default=1, ge=1)
    max_tokens: int | None = Field(default=None, gt=0)
    temperature: float | None = Field(default=None, ge=0)
    variables: dict[str, Any] = Field(default_factory=dict)
    constrained: bool = True
    json_retries: int = Field(default=2, ge=0)
    prompt_overhead_tokens: int = Field(default=256, ge=0)


class TemplateMethod(Method):
    """One templated request per unit, parsed, validated, and laid out as an SFT conversation."""

    name = "template"
    kind = "sft"
    Params = TemplateParams
    params: TemplateParams

    def reserved_tokens(self) -> int:
        """Generation budget plus room for the template's own text."""
        return (self.params.max_tokens or 512) + self.params.prompt_overhead_tokens

    async def run(self, doc: Document, sample: int, ctx: MethodContext, rng: random.Random) -> list[Record]:
        """Render, generate, parse, validate, lay out."""
        template = ctx.template(self.params.template)
        rendered = ctx.render(template, document=doc.text, meta=doc.meta, **self.params.variables)
        schema = template.schema()
        for attempt in range(self.params.json_retries + 1):
            seed = rng.randrange(2**31)  # a new seed each attempt: the same request would fail the same way
            constrained = schema if schema and template.parse == "json" and self.params.constrained else None
            request = template_request(template, rendered, seed, self.params.max_tokens, self.params.temperature,
                                       json_schema=constrained)
            completion = await ctx.complete(request)
            try:
                output = self._parse(completion, request, template, schema, ctx)
                break
            except Reject as reject:
                if reject.reason not in ("invalid_json", "invalid_output") or attempt == self.params.json_retries:
                    raise
        row_template = ctx.template(self.params.row_template)
        conversation = ctx.render(row_template, document=doc.text, output=output, meta=doc.meta).messages
        if conversation is None:
            raise ConfigError(f"{row_template.path}: a row template needs `messages`, not a raw `prompt`")
        meta = {"method": self.name, "templates": [f"{t.name}@{t.version}" for t in (template, row_template)],
                "model": ctx.model_id,
                "seed": seed, "doc_id": doc.id, "sample": sample, "document_tokens": doc.meta.get("tokens"),
                "document_truncated": doc.meta.get("truncated", False),
                "prompt_tokens": completion.usage.prompt_tokens, "output_tokens": completion.usage.completion_tokens}
        return [Record(self.kind, {"messages": conversation}, meta)]

    @staticmethod
    def _parse(completion, request: Request, template, schema, ctx: MethodContext) -> Any:
        if completion.finish_reason == "length":
            raise Reject("output_truncated", f"hit max_tokens={request.max_tokens}", raw=completion.text)
        output = parse_output(completion.text, template.parse, template.pattern)
        if schema:
            ctx.check(output, schema, "invalid_output", raw=completion.text)
        return output
