"""Request and token counts of a run, and what they cost: counted by methods, shown and recorded by the run."""

from __future__ import annotations

from dataclasses import dataclass

from lcsynth.config import PriceSpec


@dataclass
class RunCounters:
    """Request and token counts: live for the whole run, or of one unit (added to the run's when it commits)."""

    requests: int = 0
    cache_hits: int = 0
    in_flight: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def add(self, other: RunCounters) -> None:
        """Add another set of counts (in_flight excepted) to these."""
        self.requests += other.requests
        self.cache_hits += other.cache_hits
        self.prompt_tokens += other.prompt_tokens
        self.completion_tokens += other.completion_tokens


def cost_of(counters: RunCounters, price: PriceSpec | None) -> float | None:
    """Estimated spend for the tokens counted so far, from a price table per million tokens.

    >>> cost_of(RunCounters(prompt_tokens=2_000_000, completion_tokens=500_000), PriceSpec(prompt=0.5, completion=2))
    2.0
    """
    if price is None:
        return None
    return (counters.prompt_tokens * price.prompt + counters.completion_tokens * price.completion) / 1e6
