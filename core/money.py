"""Money is integer minor units (fen for CNY) plus a currency code.

This module holds the one rounding rule of the exchange: a computed amount is
rounded half-even (banker's rounding) to the minor unit, once, here. Every
other module calls these helpers instead of rounding by itself.
"""

from decimal import ROUND_HALF_EVEN, Decimal

SECONDS_PER_HOUR = 3600
BASIS_POINTS = 10_000

CURRENCY_SYMBOLS = {"CNY": "¥", "USD": "$", "EUR": "€"}


def round_minor(value: Decimal) -> int:
    """Round an exact decimal amount of minor units to an integer, half-even."""
    return int(value.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def amount_for_gpu_seconds(*, gpu_seconds: int, price_amount: int) -> int:
    """Charge for `gpu_seconds` at `price_amount` minor units per GPU-hour."""
    return round_minor(Decimal(gpu_seconds) * Decimal(price_amount) / SECONDS_PER_HOUR)


def apply_basis_points(*, amount: int, basis_points: int) -> int:
    """`amount` × basis_points / 10,000, rounded by the one rule (e.g. a fee or a rate)."""
    return round_minor(Decimal(amount) * Decimal(basis_points) / BASIS_POINTS)


def minor_from_major(amount: Decimal) -> int:
    """A typed major-unit amount (e.g. Decimal('12.34') yuan) as minor units.
    Exact: an amount with more than two decimals is a caller's bug, not rounded."""
    minor = amount * 100
    if minor != minor.to_integral_value():
        raise ValueError(f"{amount} has more than two decimals")
    return int(minor)


def format_major(amount: int) -> str:
    """Minor units as a plain decimal string for files (CSV, bank batches):
    −150 → '-1.50'. Exact, no rounding, no symbol or grouping."""
    sign = "-" if amount < 0 else ""
    major, minor = divmod(abs(int(amount)), 100)
    return f"{sign}{major}.{minor:02d}"


def format_money(amount: int, currency: str = "CNY") -> str:
    """Human form, e.g. 123456 CNY → '¥1,234.56'. Display only, never for arithmetic."""
    sign = "-" if amount < 0 else ""
    major, minor = divmod(abs(int(amount)), 100)
    symbol = CURRENCY_SYMBOLS.get(currency, currency + " ")
    return f"{sign}{symbol}{major:,}.{minor:02d}"
