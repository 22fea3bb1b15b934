"""LongMagpie: the model reads a document, writes the user's question itself, then answers it."""

from __future__ import annotations

import random
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from lcsynth.backends.base import Completion
from lcsynth.corpus import Document
from lcsynth.errors import Reject
from lcsynth.methods.base import Method, MethodContext, Record
from lcsynth.quality import copies_source, question_line, repeated_ngram_ratio
from lcsynth.templates import RenderedPrompt, template_request

# Chat markup a raw prompt adds around the document (role headers, end-of-turn tokens), with margin.
_MARKUP_TOKENS = 64


class LongMagpieParams(BaseModel):
    """Parameters of the `longmagpie` method."""

    model_config = ConfigDict(extra="forbid")
    samples_per_document: int = Field(default=1, ge=1)
    query_template: str = "longmagpie/query"
    answer_template: str = "longmagpie/answer"
    row_template: str = "longmagpie/sft_row"
    query_max_tokens: int = Field(default=128, gt=0)
    answer_max_tokens: int = Field(default=512, gt=0)
    temperature: float | None = Field(default=None, ge=0)
    query_filter: Literal["question_line", "first_line", "none"] = "question_line"
    min_query_chars: int = Field(default=8, ge=1)
    max_query_chars: int = Field(default=1500, ge=1)
    max_repetition: float = Field(default=0.5, gt=0, le=1)
    keep_truncated_answers: bool = False


class LongMagpieMethod(Method):
    """Self-query SFT data (one conversation per unit)."""

    name = "longmagpie"
    kind = "sft"
    Params = LongMagpieParams
    params: LongMagpieParams

    def reserved_tokens(self) -> int:
        """The query and answer budgets plus chat markup."""
        return self.params.query_max_tokens + self.params.answer_max_tokens + _MARKUP_TOKENS

    async def run(self, doc: Document, sample: int, ctx: MethodContext, rng: random.Random) -> list[Record]:
        """Ask for a query at the user-turn prefix, clean it, answer it, and lay out the SFT row."""
        query_seed, answer_seed = rng.randrange(2**31), rng.randrange(2**31)
        query_template = ctx.template(self.params.query_template)
        context = ctx.render(query_template, document=doc.text, meta=doc.meta).messages or []
        prompt = ctx.backend.chat_template.self_query_prompt(context)
        # only the first line of the query is kept, so generation stops there
        stop = ("\n",) if self.params.query_filter != "none" else ()
        raw = await ctx.complete(template_request(query_template, RenderedPrompt(prompt=prompt), query_seed,
                                                  self.params.query_max_tokens, self.params.temperature, stop))
        query = self.clean_query(raw.text, doc.text)
        ctx.check({"query": query}, query_template.schema() or "longmagpie_query", "invalid_query", raw.text)

        answer_template = ctx.template(self.params.answer_template)
        rendered = ctx.render(answer_template, document=doc.text, query=query, meta=doc.meta)
        answered = await ctx.complete(template_request(answer_template, rendered, answer_seed,
                                                       self.params.answer_max_tokens, self.params.temperature))
        answer = self.clean_answer(answered)
        ctx.check({"answer": answer}, answer_template.schema() or "longmagpie_answer", "invalid_answer")

        row_template = ctx.template(self.params.row_template)
        conversation = ctx.render(row_template, document=doc.text, query=query, answer=answer, meta=doc.meta).messages
        meta = {
            "method": self.name,
            "templates": [f"{t.name}@{t.version}" for t in (query_template, answer_template, row_template)],
            "model": ctx.model_id,
            "seed": query_seed,
            "doc_id": doc.id,
            "sample": sample,
            "document_tokens": doc.meta.get("tokens"),
            "document_truncated": doc.meta.get("truncated", False),
            "prompt_tokens": answered.usage.prompt_tokens,
            "answer_tokens": answered.usage.completion_tokens,
        }
        return [Record(self.kind, {"messages": conversation}, meta)]

    def clean_query(self, text: str, document: str) -> str:
        """Keep the question LongMagpie keeps, or raise Reject saying why there is none."""
        if not text.strip():
            raise Reject("empty_query", raw=text)
        query = {
            "question_line": question_line,
            "first_line": lambda t: t.strip().split("\n", 1)[0].strip(),
            "none": str.strip,
        }[self.params.query_filter](text)
        if query is None:
            raise Reject("no_question", "the first line asks no question", raw=text)
        if len(query) < self.params.min_query_chars:
            raise Reject("query_too_short", f"{len(query)} characters", raw=text)
        if len(query) > self.params.max_query_chars:
            raise Reject("query_too_long", f"{len(query)} characters", raw=text)
        if copies_source(query, document):
            raise Reject("query_copies_document", raw=text)
        if repeated_ngram_ratio(query) > self.params.max_repetition:
            raise Reject("repetitive_query", raw=text)
        return query

    def clean_answer(self, completion: Completion) -> str:
        """Strip the answer, or raise Reject if it is empty, cut off or looping."""
        answer = completion.text.strip()
        if not answer:
            raise Reject("empty_answer", raw=completion.text)
        if completion.finish_reason == "length" and not self.params.keep_truncated_answers:
            raise Reject("answer_truncated", f"hit max_tokens={self.params.answer_max_tokens}", raw=answer)
        if repeated_ngram_ratio(answer) > self.params.max_repetition:
            raise Reject("repetitive_answer", raw=answer)
        return answer
