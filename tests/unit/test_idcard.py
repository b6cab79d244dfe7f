import datetime as dt

import pytest

from lakehouse import idcard


def test_standard_example_number_is_valid():
    # the worked example of GB 11643-1999
    assert idcard.check_char("11010519491231002") == "X"
    assert idcard.is_valid("11010519491231002X")


@pytest.mark.parametrize("number, reason", [
    (None, "id_card_missing"),
    ("", "id_card_missing"),
    ("11010519491231002", "id_card_bad_format"),
    ("1101051949123100AX", "id_card_bad_format"),
    ("110105194902300021", "id_card_bad_birth_date"),   # 30 February
    ("110105194912310021", "id_card_bad_check_digit"),
])
def test_invalid_numbers_get_a_reason(number, reason):
    assert idcard.invalid_reason(number) == reason


def test_made_numbers_are_valid_and_encode_sex_and_birth():
    birth = dt.date(1958, 3, 7)
    for seq in range(0, 1000, 37):
        female = idcard.make("350921", birth, seq, female=True)
        male = idcard.make("350921", birth, seq, female=False)
        assert idcard.is_valid(female) and idcard.is_valid(male)
        assert int(female[16]) % 2 == 0 and int(male[16]) % 2 == 1
        assert female[6:14] == "19580307"


def test_normalise_folds_case_width_and_upgrades_15_digits():
    assert idcard.normalise(" 11010519491231002x ") == "11010519491231002X"
    assert idcard.normalise("１１０１０５１９４９１２３１００２Ｘ") == "11010519491231002X"
    assert idcard.normalise("110105491231002") == "11010519491231002X"
    assert idcard.normalise("   ") is None
