"""The matching engine, entered here: `order_match` (one order placed, at once),
`orders_match` (the orders placed since the last run, in one go),
`match_round` (every waiting order, the beat's round), `order_quote` (what an
order would get, nothing written) and `order_quote_explain` (the same, with
each offer left out and why: quote.py), and `orders_preempt` (a higher bid takes interruptible
capacity back with notice: preempt.py). The rules are in engine.py's docstring;
book.py loads the book, plan.py plans one order, rebalance.py trades more GPUs
in a round, store.py locks, re-checks and writes."""

from market.matching.book import (
    HOLDING_STATUSES,
    OPEN_STATUSES,
    RoundResult,
    acceptable_model_ids,
)
from market.matching.engine import match_round, on_book, order_match, order_quote, orders_match
from market.matching.preempt import orders_preempt
from market.matching.quote import REASONS, Quote, QuoteExclusion, QuoteFill, order_quote_explain

__all__ = [
    "HOLDING_STATUSES",
    "OPEN_STATUSES",
    "REASONS",
    "Quote",
    "QuoteExclusion",
    "QuoteFill",
    "RoundResult",
    "acceptable_model_ids",
    "match_round",
    "on_book",
    "order_match",
    "order_quote",
    "orders_match",
    "orders_preempt",
    "order_quote_explain",
]
