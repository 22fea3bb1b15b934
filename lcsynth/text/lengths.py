"""Target lengths in tokens (a list or a weighted mixture) and where evidence sits in a context (depth)."""

from __future__ import annotations

import math
import random
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from lcsynth.config import TokenCount, parse_token_count


class LengthSpec(BaseModel):
    """Which lengths samples are built to: `targets: [32k, 128k]` (uniform) or `{32k: 0.7, 128k: 0.3}`.

    Each sample lands within `tolerance` of its target: the larger of `relative` × target and `tokens`.
    """

    model_config = ConfigDict(extra="forbid")
    targets: dict[TokenCount, float] = Field(default_factory=lambda: {32768: 1.0})
    relative: float = Field(default=0.01, ge=0, lt=0.5)
    tokens: int = Field(default=64, ge=0)

    @field_validator("targets", mode="before")
    @classmethod
    def _list_means_uniform(cls, value: object) -> object:
        if isinstance(value, (list, tuple)):
            return {parse_token_count(v): 1.0 for v in value}
        if isinstance(value, (int, str)):
            return {parse_token_count(value): 1.0}
        return value

    @model_validator(mode="after")
    def _weights_positive(self) -> LengthSpec:
        if not self.targets or any(w <= 0 for w in self.targets.values()):
            raise ValueError("targets need at least one length, each with a positive weight")
        return self

    def pick(self, rng: random.Random) -> int:
        """Draw a target length."""
        lengths = sorted(self.targets)
        return rng.choices(lengths, weights=[self.targets[n] for n in lengths])[0]

    def tolerance(self, target: int) -> int:
        """Tokens a sample may differ from `target`.

        >>> LengthSpec().tolerance(32768), LengthSpec().tolerance(1000)
        (328, 64)
        """
        return max(math.ceil(self.relative * target), self.tokens)


class DepthSpec(BaseModel):
    """Where evidence goes, as a fraction of the context (0 = start, 1 = end).

    `uniform` draws anywhere; `fixed` draws one of `depths` (equally often, in expectation); `gaussian`
    draws around `centre` with spread `sigma`, clipped to [0, 1].
    """

    model_config = ConfigDict(extra="forbid")
    kind: Literal["uniform", "fixed", "gaussian"] = "uniform"
    depths: list[float] = Field(default_factory=lambda: [0.0, 0.25, 0.5, 0.75, 1.0])
    centre: float = Field(default=0.5, ge=0, le=1)
    sigma: float = Field(default=0.3, gt=0)

    @field_validator("depths")
    @classmethod
    def _in_range(cls, value: list[float]) -> list[float]:
        if not value or any(not 0 <= d <= 1 for d in value):
            raise ValueError("depths are fractions between 0 and 1")
        return value

    def pick(self, rng: random.Random) -> float:
        """Draw a depth.

        >>> DepthSpec(kind="fixed", depths=[0.25]).pick(random.Random(0))
        0.25
        """
        if self.kind == "fixed":
            return rng.choice(self.depths)
        if self.kind == "gaussian":
            return min(max(rng.gauss(self.centre, self.sigma), 0.0), 1.0)
        return rng.random()
