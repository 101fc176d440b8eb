"""Unified social credit code (统一社会信用代码), GB 32100-2015.

18 characters from a 31-character alphabet (digits and capitals without
I, O, Z, S, V). The last character is a check character: with the weights
3^(i) mod 31 for positions 1..17, check = 31 − (Σ value × weight mod 31),
where 31 maps to 0.
"""

from django.utils.translation import gettext as _

ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
LENGTH = 18
# Position 1: the registering authority (1 organ, 5 civil affairs, 9 industry and commerce, ...).
REGISTRATION_AUTHORITIES = set("123456789ANY")


def check_character(first17: str) -> str:
    """The GB 32100-2015 check character for the first 17 characters."""
    total = sum(
        ALPHABET.index(char) * weight for char, weight in zip(first17, WEIGHTS, strict=True)
    )
    return ALPHABET[(31 - total % 31) % 31]


def credit_code_problem(code: str) -> str | None:
    """Why `code` is not a valid unified social credit code, or None if it is."""
    if len(code) != LENGTH:
        return _("A unified social credit code has %(length)d characters; this one has %(n)d.") % {
            "length": LENGTH,
            "n": len(code),
        }
    bad = sorted({char for char in code if char not in ALPHABET})
    if bad:
        return _("Characters not allowed in a credit code: %(chars)s.") % {"chars": ", ".join(bad)}
    if code[0] not in REGISTRATION_AUTHORITIES:
        return _("The first character must name a registration authority (1-9, A, N or Y).")
    if not code[2:8].isdigit():
        return _("Characters 3 to 8 must be the digits of an administrative region code.")
    expected = check_character(code[:17])
    if code[17] != expected:
        return _(
            "The check character does not match (GB 32100-2015); please check the code for a typo."
        )
    return None


def normalise(code: str) -> str:
    return code.strip().upper().replace(" ", "")
