"""The weak/strong pair: what differs between the two sides of a W2SD reflection (arXiv 2502.00473, Table 7).

A side is (model, positive, negative, cfg); a field left as None means "use the sampler's". Pair nodes
stack: each takes an optional incoming pair and overrides only the fields it sets, so a LoRA split
followed by a CFG gap is the paper's cumulative setting.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

PAIR_TYPE = "W2SD_PAIR"
ROLES = ("strong", "weak")


@dataclass(frozen=True, eq=False)
class Side:
    model: Any = None
    positive: Any = None
    negative: Any = None
    cfg: float | None = None

    def is_empty(self) -> bool:
        return all(getattr(self, k) is None for k in ("model", "positive", "negative", "cfg"))

    def merged(self, other: Side) -> Side:
        """This side with every field that `other` sets taken from `other`."""
        changes = {
            k: getattr(other, k)
            for k in ("model", "positive", "negative", "cfg")
            if getattr(other, k) is not None
        }
        return replace(self, **changes)


@dataclass(frozen=True, eq=False)
class W2SDPair:
    strong: Side = field(default_factory=Side)
    weak: Side = field(default_factory=Side)
    sources: tuple[str, ...] = ()

    def stacked(self, strong: Side, weak: Side, source: str) -> W2SDPair:
        return W2SDPair(self.strong.merged(strong), self.weak.merged(weak), self.sources + (source,))

    def side(self, role: str) -> Side:
        return self.strong if role == "strong" else self.weak

    def describe(self) -> str:
        return " + ".join(self.sources) if self.sources else "empty pair"


def incoming_pair(pair: W2SDPair | None) -> W2SDPair:
    return pair if pair is not None else W2SDPair()
