"""Verifiable question answering: GRPO rows whose answer is a span of the document.

The model reads a span of a document and writes a question with a short answer copied from it, or
(`answers: passage`, for small models) lcsynth picks the answer in the span (an identifier, name or
number) and the model writes the question for it. The answer must occur verbatim in the document
(else the unit is rejected), so a reward function can check a policy's answer by string match
against `ground_truth`.
"""

from __future__ import annotations

import random
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from lcsynth.config import TokenCount
from lcsynth.corpus.readers import Document
from lcsynth.corpus.store import segment_counts, segment_text
from lcsynth.errors import Reject
from lcsynth.methods.base import Method, MethodContext, Record
from lcsynth.methods.mixing import token_span
from lcsynth.prompts.parsing import parse_output
from lcsynth.prompts.templates import template_request
from lcsynth.rewards import MIN_ANSWER_CHARS, normalize_answer

_MARKUP_TOKENS = 96  # the prompt's own words and chat markup


class VerifiableParams(BaseModel):
    """Parameters of the `verifiable` method."""

    model_config = ConfigDict(extra="forbid")
    samples_per_document: int = Field(default=1, ge=1)
    span_tokens: TokenCount = 512  # the passage the question is written from
    qa_template: str = "verifiable/qa"
    prompt_template: str = "verifiable/prompt"
    qa_max_tokens: int = Field(default=256, gt=0)
    temperature: float | None = Field(default=None, ge=0)
    max_answer_words: int = Field(default=12, ge=1)
    answers: Literal["model", "passage"] = "model"  # passage: lcsynth picks the answer, the model asks for it
    question_template: str = "verifiable/question"
    # answers: passage: the question must share this many content words with the text around the answer (0: off)
    min_question_overlap: int = Field(default=2, ge=0)
    unique_answers: bool = True  # the answer occurs once in the document (no boilerplate a guesser could learn)


_CANDIDATE = re.compile(
    r"\b[A-Za-z_][\w]*(?:\.[A-Za-z_]\w*)+\b"  # dotted names: os.path.join
    r"|\b[A-Za-z_]\w*(?=\()"  # called names: itermonthdates(
    r"|\b\d+(?:[.,]\d+)*\b"  # numbers
    r"|\b[A-Z][a-z]+(?: [A-Z][a-z]+)+\b"  # capitalised names: Python Software Foundation
)


_WORD = re.compile(r"[a-z][a-z0-9]{3,}")
_COMMON = frozenset("what which when where does with from that this have into there their about after before other "
                    "than them then they were will would could should also been being each more most some such only "
                    "text above below used uses using make made many much very answer exact words".split())


def question_overlap(question: str, passage: str, answer: str, window: int = 250) -> int:
    """Content words (4+ characters, not common) of `question` found within `window` characters of `answer`.

    A question written for a picked answer should name what surrounds it; one that shares nothing with the
    answer's neighbourhood asks about something else, and its "gold" would be wrong.

    >>> question_overlap("Which flag enables tracing?", "Set the TRACE flag to enable tracing of calls.", "TRACE")
    2
    """
    at = passage.find(answer)
    if at < 0:
        return 0
    near = set(_WORD.findall(passage[max(0, at - window) : at + len(answer) + window].lower()))
    asked = set(_WORD.findall(question.lower())) - _COMMON - set(_WORD.findall(answer.lower()))
    return len(asked & near)


def occurrences(answer: str, document: str, limit: int = 2) -> int:
    """How many times `answer` occurs in `document` as whole words (case and spacing aside), counted up to `limit`.

    >>> occurrences("os.path", "Use os.path or os.pathsep; OS.PATH again.")
    2
    """
    pattern = re.compile(r"(?<!\w)" + r"\s+".join(map(re.escape, answer.split())) + r"(?!\w)", re.IGNORECASE)
    count = 0
    for _ in pattern.finditer(document):
        count += 1
        if count >= limit:
            break
    return count


def answer_candidates(passage: str) -> list[str]:
    """Short answers a passage states: identifiers, capitalised names and numbers, each once, in order.

    >>> answer_candidates("Call os.path.join(a, b) or split(); Guido van Rossum wrote 3 of them. Call split() again.")
    ['os.path.join', 'split', '3']
    """
    seen: dict[str, None] = {}
    for match in _CANDIDATE.finditer(passage):
        seen.setdefault(match.group(0))
    return list(seen)


class VerifiableMethod(Method):
    """GRPO rows: a question over the whole document whose answer is checked to be a span of it."""

    name = "verifiable"
    kind = "grpo"
    Params = VerifiableParams
    params: VerifiableParams

    def reserved_tokens(self) -> int:
        """The question-writing budget plus the prompt's own words."""
        return self.params.qa_max_tokens + _MARKUP_TOKENS

    async def run(self, doc: Document, sample: int, ctx: MethodContext, rng: random.Random) -> list[Record]:
        """Write a QA pair from a span, check the answer against the document, lay out the GRPO row."""
        seed = rng.randrange(2**31)
        rng = random.Random(seed)
        segments = segment_text(doc.text)
        # sample s of n draws its passage from the s-th n-th of the document: the samples' passages never
        # overlap, so (with answers that occur once in the document) no two rows of a document share an answer
        n = self.params.samples_per_document
        low, high = len(segments) * sample // n, max(len(segments) * (sample + 1) // n, len(segments) * sample // n + 1)
        counts = segment_counts(ctx.backend.tokenizer, segments)
        first, last, tokens = token_span(counts[low:high], self.params.span_tokens, rng)
        first, last = first + low, last + low
        passage = "".join(segments[first:last]).strip()
        picked = None
        if self.params.answers == "passage":
            candidates = [c for c in answer_candidates(passage) if not self.params.unique_answers
                          or occurrences(c, doc.text) == 1]
            if not candidates:
                raise Reject("no_answer_candidate", "the passage holds no identifier, name or number that occurs "
                                                    "once in the document")
            picked = rng.choice(candidates)
        writing = ctx.template(self.params.qa_template if picked is None else self.params.question_template)
        variables = {"passage": passage, "meta": doc.meta} | ({"answer": picked} if picked else {})
        written = await ctx.complete(template_request(
            writing, ctx.render(writing, **variables), rng.randrange(2**31),
            self.params.qa_max_tokens, self.params.temperature, json_schema=writing.schema()))
        if written.finish_reason == "length":
            raise Reject("qa_truncated", f"hit max_tokens={self.params.qa_max_tokens}", raw=written.text)
        qa = parse_output(written.text, "json")
        ctx.check(qa, writing.schema() or "verifiable_qa", "invalid_qa", raw=written.text)
        question = qa["question"].strip()
        answer = self.verify(question, picked or qa["answer"].strip(), doc.text, written.text)
        if picked and question_overlap(question, passage, picked) < self.params.min_question_overlap:
            raise Reject("question_not_about_answer", f"the question shares under {self.params.min_question_overlap} "
                         "content words with the text around its answer", raw=written.text)

        prompting = ctx.template(self.params.prompt_template)
        messages = ctx.render(prompting, document=doc.text, question=question, meta=doc.meta).messages
        start = sum(len(s) for s in segments[:first])
        meta = {
            "method": self.name, "model": ctx.model_id, "seed": seed, "doc_id": doc.id, "sample": sample,
            "templates": [f"{t.name}@{t.version}" for t in (writing, prompting)],
            "question": question, "answer_char_offset": doc.text.find(answer),
            "passage_chars": [start, start + sum(len(s) for s in segments[first:last])], "passage_tokens": tokens,
            "document_tokens": doc.meta.get("tokens"),
        }
        return [Record(self.kind, {"prompt": messages, "ground_truth": [answer]}, meta)]

    def verify(self, question: str, answer: str, document: str, raw: str) -> str:
        """The document's own text for the answer, or a Reject: not in the document, too long, given away.

        Case and runs of whitespace may differ from the document; the ground truth is then the
        document's span, verbatim.
        """
        if answer not in document:
            found = re.search(r"\s+".join(map(re.escape, answer.split())), document, re.IGNORECASE)
            if found is None:
                raise Reject("answer_not_in_document", answer, raw=raw)
            answer = found.group(0)
        if len(answer.split()) > self.params.max_answer_words:
            raise Reject("answer_too_long", f"{len(answer.split())} words", raw=raw)
        if not normalize_answer(answer):
            raise Reject("answer_is_punctuation", answer, raw=raw)
        if len(normalize_answer(answer).replace(" ", "")) < MIN_ANSWER_CHARS:  # the reward never pays such answers
            raise Reject("answer_too_short", answer, raw=raw)
        if self.params.unique_answers and occurrences(answer, document) > 1:
            raise Reject("answer_not_unique", f"{answer!r} occurs more than once in the document", raw=raw)
        if normalize_answer(answer) in normalize_answer(question):
            raise Reject("answer_in_question", answer, raw=raw)
        return answer
