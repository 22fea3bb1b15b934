"""Row filters applied as rows commit, in plan order: each drop is a reject that says which filter and why.

Filters see rows in the same order every run, so near-duplicate removal keeps the same first copy, and a
resumed run rebuilds their state from the rows already written.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lcsynth.config import TokenCount, format_validation_error
from lcsynth.errors import ConfigError
from lcsynth.text.context_gain import mean, scored_text, short_view
from lcsynth.text.quality import repeated_ngram_ratio
from lcsynth.text.tokens import Tokenizer

if TYPE_CHECKING:
    from lcsynth.methods.base import MethodContext, Record

Part = Literal["assistant", "user", "all"]
_WORD = re.compile(r"\w+")


def row_text(kind: str, row: dict[str, Any], part: Part = "all") -> str:
    """The text of a row a filter looks at: `text` for pretraining rows, else the chosen message roles."""
    if kind == "pretrain":
        return row.get("text", "")
    messages = list(row.get("messages") or []) + list(row.get("prompt") or []) + list(row.get("chosen") or [])
    roles = {"assistant": {"assistant"}, "user": {"user", "system"}, "all": {"assistant", "user", "system"}}[part]
    return "\n".join(m["content"] for m in messages if m.get("role") in roles)


class RowFilter(BaseModel):
    """Base of filters: parameters come from the recipe's `filters:` entry."""

    model_config = ConfigDict(extra="forbid")
    name: str
    label: ClassVar[str]
    needs_scores: ClassVar[bool] = False  # True: the backend must return log-probs (`score`)

    def check(self, kind: str, row: dict[str, Any], tokenizer: Tokenizer) -> str | None:
        """None to keep the row, or why it is dropped."""
        raise NotImplementedError

    def observe(self, kind: str, row: dict[str, Any]) -> None:
        """Remember a kept row (for filters that compare rows)."""

    async def annotate(self, record: Record, ctx: MethodContext) -> None:
        """Measure what `check` needs from the model, into the record's meta (runs in the unit, in parallel)."""


class LengthFilter(RowFilter):
    """Keep rows whose text is within [min_tokens, max_tokens] tokens of the model's tokenizer."""

    label = "length"
    min_tokens: TokenCount | None = None
    max_tokens: TokenCount | None = None
    part: Part = "all"

    def check(self, kind: str, row: dict[str, Any], tokenizer: Tokenizer) -> str | None:
        """Count tokens and compare with the bounds."""
        count = len(tokenizer.encode(row_text(kind, row, self.part)))
        if self.min_tokens is not None and count < self.min_tokens:
            return f"{count} tokens < min_tokens {self.min_tokens}"
        if self.max_tokens is not None and count > self.max_tokens:
            return f"{count} tokens > max_tokens {self.max_tokens}"
        return None


class RepetitionFilter(RowFilter):
    """Drop rows whose generated text repeats its own word n-grams too much (loops, stutter)."""

    label = "repetition"
    max_ratio: float = Field(default=0.3, gt=0, le=1)
    n: int = Field(default=3, ge=1)
    part: Part = "assistant"

    def check(self, kind: str, row: dict[str, Any], tokenizer: Tokenizer) -> str | None:
        """Share of repeated n-grams against the limit."""
        ratio = repeated_ngram_ratio(row_text(kind, row, self.part), self.n)
        return f"repeated {self.n}-gram ratio {ratio} > {self.max_ratio}" if ratio > self.max_ratio else None


class MinHashDedupFilter(RowFilter):
    """Drop a row whose text is a near-duplicate (estimated Jaccard ≥ threshold) of an earlier kept row."""

    label = "minhash"
    threshold: float = Field(default=0.85, gt=0, le=1)
    num_perm: int = Field(default=128, ge=16)
    shingle_words: int = Field(default=5, ge=1)
    part: Part = "assistant"

    def model_post_init(self, context: Any) -> None:
        """Create the LSH index (datasketch) that remembers kept rows."""
        from datasketch import MinHashLSH

        self._lsh = MinHashLSH(threshold=self.threshold, num_perm=self.num_perm)
        self._seen = 0

    def _signature(self, kind: str, row: dict[str, Any]) -> Any:
        from datasketch import MinHash

        words = _WORD.findall(row_text(kind, row, self.part).lower())
        k = self.shingle_words
        signature = MinHash(num_perm=self.num_perm, seed=1)
        for i in range(max(len(words) - k + 1, 1)):
            signature.update(" ".join(words[i : i + k]).encode())
        return signature

    def check(self, kind: str, row: dict[str, Any], tokenizer: Tokenizer) -> str | None:
        """Query the index for an earlier row this one nearly repeats."""
        matches = self._lsh.query(self._signature(kind, row))
        return f"near-duplicate of an earlier row (estimated Jaccard >= {self.threshold})" if matches else None

    def observe(self, kind: str, row: dict[str, Any]) -> None:
        """Index a kept row under its position among kept rows."""
        self._lsh.insert(f"{kind}:{self._seen:09d}", self._signature(kind, row))
        self._seen += 1


class LanguageFilter(RowFilter):
    """Keep rows whose text is detected (langdetect, seeded) as one of `languages` with enough confidence."""

    label = "language"
    languages: list[str] = Field(default_factory=lambda: ["en"], min_length=1)
    min_probability: float = Field(default=0.8, gt=0, le=1)
    part: Part = "assistant"

    def check(self, kind: str, row: dict[str, Any], tokenizer: Tokenizer) -> str | None:
        """Detect the language of the chosen text."""
        from langdetect import DetectorFactory, detect_langs
        from langdetect.lang_detect_exception import LangDetectException

        DetectorFactory.seed = 0  # langdetect samples; a fixed seed makes its verdicts repeatable
        try:
            best = detect_langs(row_text(kind, row, self.part))[0]
        except LangDetectException:
            return "no language detected (no letters)"
        if best.lang not in self.languages or best.prob < self.min_probability:
            return f"detected {best.lang} ({best.prob:.2f}), want {'/'.join(self.languages)} >= {self.min_probability}"
        return None


class ContextGainFilter(RowFilter):
    """Keep rows whose text the long context helps predict: LongFilter's information gain, from log-probs.

    The answer (SFT, DPO chosen) or the last `tail_tokens` of a text (pretrain) is scored with all of its
    context and with only the `short_window` tokens before it; rows gaining less than `min_gain` nats per
    token are dropped. The gain is kept in `meta.context_gain` whether or not the row passes.
    """

    label = "context_gain"
    needs_scores: ClassVar[bool] = True
    short_window: TokenCount = 1024
    min_gain: float = 0.0
    tail_tokens: TokenCount = 1024

    async def annotate(self, record: Record, ctx: MethodContext) -> None:
        """Score the row twice (long and short context) and store the gain."""
        backend = ctx.backend
        text = scored_text(record.kind, record.to_row(), backend.tokenizer, backend.chat_template, self.tail_tokens)
        if text is None or text.start < 1 or text.start >= len(text.tokens):
            return
        long = await ctx.score(text.tokens, text.start)
        short_text = short_view(text, self.short_window)
        short = await ctx.score(short_text.tokens, short_text.start) if short_text else long
        record.meta["context_gain"] = {"gain": round(mean(long) - mean(short), 4), "long": round(mean(long), 4),
                                       "short": round(mean(short), 4), "tokens": len(long),
                                       "short_window": self.short_window}

    def check(self, kind: str, row: dict[str, Any], tokenizer: Tokenizer) -> str | None:
        """Compare the measured gain with `min_gain` (rows with nothing to score pass)."""
        measured = row.get("meta", {}).get("context_gain")
        if measured is None or measured["gain"] >= self.min_gain:
            return None
        return (f"context gain {measured['gain']} nats/token < min_gain {self.min_gain} "
                f"(window {self.short_window} tokens)")


FILTERS: dict[str, type[RowFilter]] = {cls.label: cls for cls in (LengthFilter, RepetitionFilter, MinHashDedupFilter,
                                                                  LanguageFilter, ContextGainFilter)}


def create_filters(specs: list[dict[str, Any]]) -> list[RowFilter]:
    """Build the recipe's `filters:` list; unknown names and bad parameters are one-line errors."""
    built = []
    for position, spec in enumerate(specs):
        name = spec.get("name")
        if name not in FILTERS:
            raise ConfigError(f"filters.{position}.name: unknown filter '{name}'; known: {', '.join(sorted(FILTERS))}")
        try:
            built.append(FILTERS[name].model_validate(spec))
        except ValidationError as err:
            raise ConfigError(format_validation_error(err, f"filters.{position} ({name})")) from None
    return built


def check_scoring(specs: list[dict[str, Any]], backend: Any) -> None:
    """Fail in one line when a filter needs log-probs the backend cannot give."""
    from lcsynth.backends.base import can_score

    for position, spec in enumerate(specs):
        if FILTERS[spec["name"]].needs_scores and not can_score(backend):
            raise ConfigError(f"filters.{position} ({spec['name']}): backend {backend.model_id} returns no "
                              "log-probs; use llamacpp, vllm, or an openai endpoint that echoes prompt log-probs")
