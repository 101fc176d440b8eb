import pytest

from accounts.credit_code import check_character, credit_code_problem

# Real codes as printed on business licences (Huawei, Tencent, Alibaba, Xiaomi).
REAL_CODES = [
    "914403001922038216",
    "91440300708461136T",
    "91330100716105852F",
    "91110108551385082Q",
]


@pytest.mark.parametrize("code", REAL_CODES)
def test_real_credit_codes_pass_the_gb32100_check(code):
    assert credit_code_problem(code) is None


@pytest.mark.parametrize("code", REAL_CODES)
def test_a_corrupted_check_character_is_rejected(code):
    wrong = "0" if code[-1] != "0" else "1"
    assert "check character" in credit_code_problem(code[:-1] + wrong)


def test_a_swapped_pair_of_digits_is_caught():
    code = "914403001922038216"
    swapped = code[:9] + code[10] + code[9] + code[11:]
    assert credit_code_problem(swapped) is not None


@pytest.mark.parametrize(
    ("code", "why"),
    [
        ("91440300192203821", "18 characters"),
        ("9144030019220382166", "18 characters"),
        ("91440300192203821I", "not allowed"),
        ("B14403001922038216", "registration authority"),
        ("9144AB001922038216", "region code"),
    ],
)
def test_malformed_codes_explain_what_is_wrong(code, why):
    assert why in credit_code_problem(code)


def test_check_character_31_maps_to_zero():
    # Σ ≡ 0 (mod 31) gives 31 − 0 = 31, which the standard writes as '0'.
    assert check_character("10000000000000000") == "Y"  # 1×1 → 31−1 = 30 → 'Y'
    assert check_character("00000000000000000") == "0"
