"""List prices per million tokens (Anthropic, OpenAI, Gemini), for the cost on spans and budgets.

Matched by the longest model-name prefix. Anthropic cache writes cost 1.25×
input and cache reads 0.1× input (5-minute cache); OpenAI's and Gemini's cached
input is priced by its own factor (`cached`); they have no cache writes.
A model not listed is priced like Sonnet — a budget should rather stop a
little early than never — and its spans say so (`llm.cost.estimated`).
Update the table when prices change.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True)
class Price:
    input: Decimal
    output: Decimal
    known: bool = True
    cached: Decimal = Decimal("0.1")  # a cache read, as a share of input

    @property
    def cache_write(self) -> Decimal:
        return self.input * Decimal("1.25")

    @property
    def cache_read(self) -> Decimal:
        return self.input * self.cached


def _p(input_usd: str, output_usd: str, cached: str = "0.1") -> Price:
    return Price(Decimal(input_usd), Decimal(output_usd), cached=Decimal(cached))


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
    # OpenAI
    "gpt-5": _p("1.25", "10"),
    "gpt-5-codex": _p("1.25", "10"),
    "gpt-5-mini": _p("0.25", "2"),
    "gpt-5-nano": _p("0.05", "0.40"),
    "gpt-4.1": _p("2", "8", "0.25"),
    "gpt-4.1-mini": _p("0.40", "1.60", "0.25"),
    "gpt-4o": _p("2.50", "10", "0.5"),
    "gpt-4o-mini": _p("0.15", "0.60", "0.5"),
    "o3": _p("2", "8", "0.25"),
    "o4-mini": _p("1.10", "4.40", "0.25"),
    # Gemini (prompts up to 200k tokens)
    "gemini-2.5-pro": _p("1.25", "10", "0.25"),
    "gemini-2.5-flash": _p("0.30", "2.50", "0.25"),
    "gemini-2.5-flash-lite": _p("0.10", "0.40", "0.25"),
    "gemini-2.0-flash": _p("0.10", "0.40", "0.25"),
}
DEFAULT = Price(Decimal("3"), Decimal("15"), known=False)


def price_of(model: str) -> Price:
    best = ""
    for prefix in PRICES:
        if model.startswith(prefix) and len(prefix) > len(best):
            best = prefix
    return PRICES[best] if best else DEFAULT
