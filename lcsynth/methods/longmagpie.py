"""LongMagpie: the model reads a document, writes the user's question itself, then answers it.

Variants from the paper's code: several documents in one context behind a banner line (`documents`),
short samples mixed in among the long ones (`long_fraction`, p-Mix), and dialogues where every further
user turn is self-written too (`turns`).
"""

from __future__ import annotations

import functools
import random
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from lcsynth.backends.base import Completion
from lcsynth.config import TokenCount
from lcsynth.corpus.readers import Document
from lcsynth.corpus.store import segment_counts, segment_text
from lcsynth.errors import Reject
from lcsynth.methods.base import Method, MethodContext, Record
from lcsynth.methods.mixing import DOCUMENT_BANNER, first_passing, mixed_documents, token_span
from lcsynth.prompts.templates import RenderedPrompt, template_request
from lcsynth.text.quality import copies_source, question_line, repeated_ngram_ratio

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
    # a self-query that asks nothing usable is asked again with another seed, up to this many times in all
    query_attempts: int = Field(default=3, ge=1, le=16)
    # an answer cut at answer_max_tokens, empty or looping is asked again with another seed, up to this many in all
    answer_attempts: int = Field(default=2, ge=1, le=16)
    keep_truncated_answers: bool = False
    turns: int = Field(default=1, ge=1, le=16)
    documents: int = Field(default=1, ge=1, le=32)  # a context holds n ~ U{1..documents} documents
    long_fraction: float = Field(default=1.0, ge=0, le=1)  # below 1: p-Mix, the rest are short samples
    short_tokens: TokenCount = 1024  # the context of a short sample: a span of at most this many tokens


class LongMagpieMethod(Method):
    """Self-query SFT data (one conversation per unit)."""

    name = "longmagpie"
    kind = "sft"
    Params = LongMagpieParams
    params: LongMagpieParams

    def __init__(self, params: BaseModel) -> None:
        super().__init__(params)
        self.needs_store = self.params.documents > 1  # companion documents come from the store

    def reserved_tokens(self) -> int:
        """The query and answer budgets of every turn plus chat markup."""
        per_turn = self.params.query_max_tokens + self.params.answer_max_tokens + _MARKUP_TOKENS
        return self.params.turns * per_turn

    async def run(self, doc: Document, sample: int, ctx: MethodContext, rng: random.Random) -> list[Record]:
        """Build the context, then per turn: ask for a query at the user-turn prefix, clean it, answer it."""
        query_seed, answer_seed = rng.randrange(2**31), rng.randrange(2**31)
        seed = query_seed
        text, layout = self.context(doc, ctx, rng)
        query_template = ctx.template(self.params.query_template)
        answer_template = ctx.template(self.params.answer_template)
        context = ctx.render(query_template, document=text, meta=doc.meta).messages or []
        # only the first line of the query is kept, so generation stops there
        stop = ("\n",) if self.params.query_filter != "none" else ()
        turns: list[tuple[str, str]] = []
        answer_messages: list[dict[str, str]] = []
        answer_tokens, attempts, answer_attempts = 0, 1, 1
        for turn in range(self.params.turns):
            if turn:
                query_seed, answer_seed = rng.randrange(2**31), rng.randrange(2**31)
            history = [m for q, a in turns for m in ({"role": "user", "content": q},
                                                      {"role": "assistant", "content": a})]
            prompt = ctx.backend.chat_template.self_query_prompt([*context, *history])
            query, raw, tries = await self.self_query(ctx, query_template, prompt, query_seed, stop, text)
            attempts = max(attempts, tries)
            ctx.check({"query": query}, query_template.schema() or "longmagpie_query", "invalid_query", raw.text)
            if any(query == earlier for earlier, _ in turns):
                raise Reject("repeated_query", f"turn {turn + 1} asks turn {[q for q, _ in turns].index(query) + 1}'s "
                             "question again", raw=raw.text)
            if turn == 0:
                answer_messages = ctx.render(answer_template, document=text, query=query, meta=doc.meta).messages or []
            else:
                answer_messages = [*answer_messages, {"role": "user", "content": query}]
            asked = RenderedPrompt(messages=answer_messages)
            answer, answered, tries = await first_passing(
                ctx, functools.partial(self.answer_request, answer_template, asked), answer_seed,
                self.params.answer_attempts, self.clean_answer)
            answer_attempts = max(answer_attempts, tries)
            ctx.check({"answer": answer}, answer_template.schema() or "longmagpie_answer", "invalid_answer")
            answer_messages = [*answer_messages, {"role": "assistant", "content": answer}]
            answer_tokens += answered.usage.completion_tokens
            turns.append((query, answer))

        row_template = ctx.template(self.params.row_template)
        (query, answer), later = turns[0], turns[1:]
        conversation = ctx.render(row_template, document=text, query=query, answer=answer, meta=doc.meta).messages
        conversation = [*(conversation or []), *(m for q, a in later for m in (
            {"role": "user", "content": q}, {"role": "assistant", "content": a}))]
        meta = {
            "method": self.name,
            "templates": [f"{t.name}@{t.version}" for t in (query_template, answer_template, row_template)],
            "model": ctx.model_id,
            "seed": seed,
            "doc_id": doc.id,
            "sample": sample,
            "document_tokens": doc.meta.get("tokens"),
            "document_truncated": doc.meta.get("truncated", False),
            "prompt_tokens": answered.usage.prompt_tokens,
            "answer_tokens": answer_tokens,
            **({"turns": len(turns)} if self.params.turns > 1 else {}),
            **({"query_attempts": attempts} if attempts > 1 else {}),
            **({"answer_attempts": answer_attempts} if answer_attempts > 1 else {}),
            **layout,
        }
        return [Record(self.kind, {"messages": conversation}, meta)]

    def answer_request(self, template: Any, asked: RenderedPrompt, seed: int) -> Any:
        """The request for an answer to `asked` with `seed`."""
        return template_request(template, asked, seed, self.params.answer_max_tokens, self.params.temperature)

    async def self_query(self, ctx: MethodContext, template: Any, prompt: str, seed: int, stop: tuple[str, ...],
                         document: str) -> tuple[str, Completion, int]:
        """The cleaned self-query, its completion and the attempts it took; a retry only changes the seed.

        Every attempt must pass the same checks (`clean_query`); the last attempt's reject is raised.
        """
        return await first_passing(
            ctx, lambda s: template_request(template, RenderedPrompt(prompt=prompt), s, self.params.query_max_tokens,
                                            self.params.temperature, stop),
            seed, self.params.query_attempts, lambda raw: self.clean_query(raw.text, document))

    def context(self, doc: Document, ctx: MethodContext, rng: random.Random) -> tuple[str, dict[str, object]]:
        """The text the model reads, and how it was laid out (for meta).

        A short sample (p-Mix) is a span of `short_tokens` tokens of the document. A long one is the
        document, shuffled among up to `documents - 1` other corpus documents that fit the context.
        """
        if self.params.long_fraction < 1 and rng.random() >= self.params.long_fraction:
            segments = segment_text(doc.text)
            first, last, tokens = token_span(segment_counts(ctx.backend.tokenizer, segments),
                                             self.params.short_tokens, rng)
            return "".join(segments[first:last]).strip(), {"mix": "short", "span_tokens": tokens}
        layout: dict[str, object] = {"mix": "long"} if self.params.long_fraction < 1 else {}
        if self.params.documents == 1:
            return doc.text, layout
        banner = len(ctx.backend.tokenizer.encode(DOCUMENT_BANNER)) + 2
        parts = mixed_documents(doc, ctx, rng, self.params.documents, joiner_tokens=banner)
        return DOCUMENT_BANNER.join(text.strip() for _, text in parts), {**layout, "documents": [i for i, _ in parts]}

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
