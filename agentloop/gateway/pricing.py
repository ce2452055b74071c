"""Anthropic list prices per million tokens, for the cost on spans and the cost budget.

Matched by the longest model-name prefix. Cache writes cost 1.25× input and
cache reads 0.1× input (5-minute cache). A model not listed is priced like
Sonnet — a budget should rather stop a little early than never — and its spans
say so (`llm.cost.estimated`). Update the table when prices change.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True)
class Price:
    input: Decimal
    output: Decimal
    known: bool = True

    @property
    def cache_write(self) -> Decimal:
        return self.input * Decimal("1.25")

    @property
    def cache_read(self) -> Decimal:
        return self.input * Decimal("0.1")


def _p(input_usd: str, output_usd: str) -> Price:
    return Price(Decimal(input_usd), Decimal(output_usd))


PRICES: dict[str, Price] = {
    "claude-opus-4-5": _p("5", "25"),
    "claude-opus-4-1": _p("15", "75"),
    "claude-opus-4": _p("15", "75"),
    "claude-3-opus": _p("15", "75"),
    "claude-sonnet-4": _p("3", "15"),
    "claude-3-7-sonnet": _p("3", "15"),
    "claude-3-5-sonnet": _p("3", "15"),
    "claude-haiku-4-5": _p("1", "5"),
    "claude-3-5-haiku": _p("0.80", "4"),
    "claude-3-haiku": _p("0.25", "1.25"),
}
DEFAULT = Price(Decimal("3"), Decimal("15"), known=False)


def price_of(model: str) -> Price:
    best = ""
    for prefix in PRICES:
        if model.startswith(prefix) and len(prefix) > len(best):
            best = prefix
    return PRICES[best] if best else DEFAULT
