"""LongPO: short-to-long preference pairs for DPO.

From a contiguous span x_S of a document the model writes numbered questions; one is kept, behind a
lead-in that points at the text. The model answers it twice: from the span alone (chosen) and from the
whole document x_L (rejected). The DPO row's `prompt` is the long context, and `short_prompt` the short
one, for LongPO's short-to-long reference term.
"""

from __future__ import annotations

import random
import re

from pydantic import BaseModel, ConfigDict, Field

from lcsynth.backends.base import Completion
from lcsynth.config import TokenCount
from lcsynth.corpus.readers import Document
from lcsynth.corpus.store import segment_counts, segment_text
from lcsynth.errors import Reject
from lcsynth.methods.base import Method, MethodContext, Record
from lcsynth.methods.mixing import checked_answer, first_passing, token_span
from lcsynth.prompts.templates import template_request

_MARKUP_TOKENS = 64
_NUMBERED = re.compile(r"^\s*(\d+)\s*[:.)]\s*(.+?)\s*$", re.M)
_BULLETED = re.compile(r"^\s*[*\-\u2022]\s+(.+?\?)[\"\u201d']?\s*$", re.M)
LEAD_INS = (
    "Based on the text above, ",
    "Using the document above, ",
    "According to the material above, ",
    "Drawing on the text you were given, ",
    "From what the document says, ",
    "With the passage above in mind, ",
)


class LongPOParams(BaseModel):
    """Parameters of the `longpo` method."""

    model_config = ConfigDict(extra="forbid")
    samples_per_document: int = Field(default=1, ge=1)
    chunk_tokens: TokenCount = 16384
    questions: int = Field(default=4, ge=1)
    instruction_template: str = "longpo/instruction"
    answer_template: str = "longpo/answer"
    instruction_max_tokens: int = Field(default=512, gt=0)
    answer_max_tokens: int = Field(default=1024, gt=0)
    temperature: float | None = Field(default=None, ge=0)
    max_repetition: float = Field(default=0.5, gt=0, le=1)
    # one question is kept: a list shorter than `questions` still serves when it holds this many real ones
    min_questions: int = Field(default=1, ge=1)
    # a question list with too few questions, or an answer cut off, empty or looping, is asked again with
    # another seed, up to this many times in all
    attempts: int = Field(default=2, ge=1, le=16)


def numbered_questions(text: str) -> list[str]:
    r"""Questions written as `1: …`, `2: …` (or `1.`/`1)`), in order; failing those, bulleted lines that ask.

    Small models often bullet their list (`* "Why …?"`) whatever the instruction says; a bulleted line counts
    only when it is a question (ends with `?`), and surrounding quotes are dropped.

    >>> numbered_questions("1: Why?\n2) How so?\nnoise")
    ['Why?', 'How so?']
    >>> numbered_questions('Here they are:\n* "Why does it fail?"\n- How is it fixed?\n- A statement.')
    ['Why does it fail?', 'How is it fixed?']
    """
    numbered = [m.group(2) for m in _NUMBERED.finditer(text)]
    if numbered:
        return numbered
    return [m.group(1).lstrip("\"\u201c'").strip() for m in _BULLETED.finditer(text)]


class LongPOMethod(Method):
    """DPO rows: the answer from a short span preferred to the answer from the whole document."""

    name = "longpo"
    kind = "dpo"
    Params = LongPOParams
    params: LongPOParams

    def questions(self, written: Completion) -> list[str]:
        """The numbered (or bulleted) questions of 3+ words in `written`, or a Reject when under `min_questions`."""
        questions = [q for q in numbered_questions(written.text) if len(re.findall(r"[^\W\d_]{2,}", q)) >= 3]
        if len(questions) < self.params.min_questions:
            raise Reject("wrong_question_count", f"{len(questions)} questions of 3+ words, want at least "
                         f"{self.params.min_questions} (of {self.params.questions} asked)", raw=written.text)
        return questions

    def reserved_tokens(self) -> int:
        """Question and answer budgets plus chat markup."""
        return self.params.instruction_max_tokens + self.params.answer_max_tokens + _MARKUP_TOKENS

    async def run(self, doc: Document, sample: int, ctx: MethodContext, rng: random.Random) -> list[Record]:
        """Cut the span, ask for questions, answer one from the span and from the document, check, lay out."""
        seed = rng.randrange(2**31)
        rng = random.Random(seed)
        tokenizer = ctx.backend.tokenizer
        segments = segment_text(doc.text)
        counts = segment_counts(tokenizer, segments)
        if sum(counts) <= self.params.chunk_tokens:
            raise Reject("document_too_short", f"{sum(counts)} tokens, not more than chunk_tokens "
                                                f"{self.params.chunk_tokens}")
        first, last, tokens = token_span(counts, self.params.chunk_tokens, rng)
        chunk = "".join(segments[first:last]).strip()
        start = sum(counts[:first])

        asking = ctx.template(self.params.instruction_template)
        asked = ctx.render(asking, passage=chunk, count=self.params.questions, meta=doc.meta)
        questions, written, _ = await first_passing(
            ctx, lambda s: template_request(asking, asked, s, self.params.instruction_max_tokens,
                                            self.params.temperature),
            rng.randrange(2**31), self.params.attempts, self.questions)
        question = rng.choice(questions[: self.params.questions])  # extra questions are surplus, not a fault
        if question[1:2].islower():  # "What is…" reads on after the lead-in as "what is…"
            question = question[0].lower() + question[1:]
        instruction = rng.choice(LEAD_INS) + question
        ctx.check({"instruction": instruction}, asking.schema() or "longpo_instruction", "invalid_instruction")

        answering = ctx.template(self.params.answer_template)
        short = ctx.render(answering, document=chunk, instruction=instruction, meta=doc.meta)
        long = ctx.render(answering, document=doc.text, instruction=instruction, meta=doc.meta)
        answer_seed = rng.randrange(2**31)  # the same first seed for both: only the context differs
        chosen, from_span, chosen_tries = await first_passing(
            ctx, lambda s: template_request(answering, short, s, self.params.answer_max_tokens,
                                            self.params.temperature),
            answer_seed, self.params.attempts, lambda c: checked_answer(c, "chosen", self.params.max_repetition))
        rejected, from_document, rejected_tries = await first_passing(
            ctx, lambda s: template_request(answering, long, s, self.params.answer_max_tokens,
                                            self.params.temperature),
            answer_seed, self.params.attempts, lambda c: checked_answer(c, "rejected", self.params.max_repetition))
        if " ".join(chosen.split()) == " ".join(rejected.split()):
            raise Reject("identical_answers", raw=chosen)
        meta = {
            "method": self.name, "model": ctx.model_id, "seed": seed, "doc_id": doc.id, "sample": sample,
            "templates": [f"{t.name}@{t.version}" for t in (asking, answering)],
            "chunk_span": [start, start + tokens], "chunk_tokens": tokens, "document_tokens": sum(counts),
            "question": instruction, "prompt_tokens": from_document.usage.prompt_tokens,
            "chosen_tokens": from_span.usage.completion_tokens,
            "rejected_tokens": from_document.usage.completion_tokens,
            **({"attempts": {"chosen": chosen_tries, "rejected": rejected_tries}}
               if max(chosen_tries, rejected_tries) > 1 else {}),
        }
        row = {"prompt": long.messages, "chosen": [{"role": "assistant", "content": chosen}],
               "rejected": [{"role": "assistant", "content": rejected}], "short_prompt": short.messages}
        return [Record(self.kind, row, meta)]
