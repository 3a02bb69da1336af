"""Final-answer extraction and grading: a table of answer forms, and properties."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kinetics.analysis import answers
from kinetics.analysis.answers import (
    ExtractedAnswer,
    answers_match,
    compile_answer_pattern,
    extract_answer,
    normalize_answer,
)
from kinetics.errors import InputError

pytest.importorskip("math_verify")

# (answer, gold, equal by default, equal with exact=True)
TABLE = [
    # fractions and decimals
    ("\\dfrac{1}{2}", "0.5", True, False),
    ("\\frac12", "1/2", True, False),
    ("\\frac{1}{2}", "1/2", True, False),
    ("\\tfrac{3}{4}", "0.75", True, False),
    ("0.5", "\\frac{1}{2}", True, False),
    ("0.50", "0.5", True, True),
    ("0.1", "\\frac{1}{10}", True, False),
    ("\\frac{1}{3}", "0.333333", True, False),
    ("5.0", "5", True, True),
    ("5.", "5", True, True),
    # percentages
    ("50\\%", "0.5", True, False),
    ("50\\%", "\\frac{1}{2}", True, False),
    ("50%", "50\\%", True, False),
    # thousands separators, leading zeros, signs
    ("1,000", "1000", True, True),
    ("1{,}000", "1000", True, True),
    ("12,345,678", "12345678", True, True),
    ("033", "33", True, True),
    ("007", "7", True, True),
    ("-3", "-3", True, True),
    ("\u22123", "-3", True, True),
    ("+5", "5", True, True),
    ("-0", "0", True, True),
    # TeX wrappers and units
    ("\\text{5}", "5", True, True),
    ("$5$", "5", True, True),
    ("\\$5", "5", True, True),
    ("90^\\circ", "90", True, True),
    ("\\text{(B)}", "(B)", True, True),
    ("5\\text{ cm}", "5", True, False),
    # expressions, sets, tuples
    ("2\\sqrt{2}", "\\sqrt{8}", True, False),
    ("x+1", "1+x", True, False),
    ("\\{1,2\\}", "\\{2,1\\}", True, False),
    ("\\left(1,2\\right)", "(1,2)", True, True),
    ("2^{10}", "1024", True, False),
    # pairs that must NOT match
    ("-3", "3", False, False),
    ("12", "13", False, False),
    ("1,2", "12", False, False),
    ("1/2", "2", False, False),
    ("\\frac{1}{3}", "0.333", False, False),
    ("(1,2)", "(2,1)", False, False),
    ("\\pi", "3.14159", False, False),
    ("2", "2.0000001", False, False),
    ("33", "330", False, False),
    ("\\text{A}", "\\text{B}", False, False),
    ("", "5", False, False),
    ("5", "", False, False),
    ("9^{9^{9^{9}}}", "9^{9^{9^{9}}}+1", False, False),  # too large to compute: strings only
]
IDS = [f"{a!r}-{g!r}" for a, g, _, _ in TABLE]


@pytest.mark.parametrize(("answer", "gold", "equal", "exact_equal"), TABLE, ids=IDS)
def test_answer_forms(answer, gold, equal, exact_equal):
    assert answers_match(answer, gold) is equal
    assert answers_match(answer, gold, exact=True) is exact_equal


@pytest.mark.parametrize(("answer", "gold", "equal", "exact_equal"), TABLE, ids=IDS)
def test_answers_match_is_symmetric_on_the_table(answer, gold, equal, exact_equal):
    assert answers_match(gold, answer) is answers_match(answer, gold)
    assert answers_match(gold, answer, exact=True) is answers_match(answer, gold, exact=True)


def test_no_answer_matches_nothing():
    assert not answers_match(None, "5") and not answers_match(None, "")


def test_grading_works_in_threads_and_agrees_with_the_main_thread():
    expected = [answers_match(a, g) for a, g, _, _ in TABLE]
    answers._parse.cache_clear()  # parse again inside the worker threads
    with ThreadPoolExecutor(max_workers=4) as pool:
        got = list(pool.map(lambda pair: answers_match(*pair), [(a, g) for a, g, _, _ in TABLE]))
    assert got == expected == [equal for _, _, equal, _ in TABLE]


def test_without_math_verify_only_normalized_equality_counts(monkeypatch):
    monkeypatch.setattr(answers, "_math_verify", lambda: None)
    assert answers_match("033", "33") and answers_match("1,000", "1000")
    assert not answers_match("\\dfrac{1}{2}", "0.5") and not answers_match("50\\%", "1/2")


@pytest.mark.parametrize("text", ["9^{9^{9^{9}}}", "(10^{100})!", "10^{10^{7}}"])
def test_numbers_too_large_to_compute_are_not_handed_to_math_verify(text):
    assert answers._parse(text, None) == ()


@pytest.mark.parametrize("text", ["2^{10}", "5!", "10^{-3}", "2^{2^{3}}", "x^{100}"])
def test_ordinary_powers_are_parsed(text):
    assert answers._parse(text, None) != ()


def test_ingest_grades_with_answers_match():
    from kinetics.analysis.ingest import grade

    assert grade("\\frac{1}{2}", ["0.5"]) and grade("070", [70]) and not grade("71", ["70"])


# --- extraction ----------------------------------------------------------------------

@pytest.mark.parametrize(("text", "pattern", "expected", "boxed"), [
    ("so \\boxed{42}.", None, "42", True),
    ("\\boxed{\\frac{a}{b}} end", None, "\\frac{a}{b}", True),
    ("\\boxed{{1,2},{3}}", None, "{1,2},{3}", True),
    ("\\boxed{1} then \\boxed{2}", None, "2", True),
    ("\\boxed{1} then \\boxed{2", None, "1", True),  # the last complete box
    ("\\boxed {3}", None, "3", True),
    ("\\boxed{}", None, "", True),
    ("\\boxed{5", None, None, False),
    ("no answer here", None, None, False),
    ("Answer: 7. Later, Answer: 8", r"Answer:\s*(\d+)", "8", False),
    ("Answer: 7 and \\boxed{9}", r"Answer:\s*(\d+)", "9", True),  # a box beats the pattern
    ("Answer: 7 and \\boxed{9", r"Answer:\s*(\d+)", "7", False),
    ("final: 12  \nfinal:   ", r"final:(.*)", "12", False),  # blank groups are skipped
    ("the answer is x", r"answer is (\d+)", None, False),
])
def test_extract_answer(text, pattern, expected, boxed):
    found = extract_answer(text, pattern)
    if expected is None:
        assert found is None
        return
    assert found.text == expected
    last = found.end - 1 if boxed else found.end  # a box ends past its closing brace
    assert text[last - len(expected):last] == expected
    assert not boxed or text[last] == "}"


def test_extract_answer_takes_a_compiled_pattern():
    compiled = compile_answer_pattern(r"is (\d+)")
    assert extract_answer("it is 5, it is 6!", compiled) == ExtractedAnswer("6", 16)


@pytest.mark.parametrize(("pattern", "message"), [
    ("(", "not a regular expression"),
    ("abc", "exactly one capturing group"),
    ("(a)(b)", "it has 2"),
])
def test_bad_answer_patterns_are_one_line_input_errors(pattern, message):
    with pytest.raises(InputError, match=re.escape(message)) as info:
        compile_answer_pattern(pattern)
    assert "\n" not in str(info.value)
    with pytest.raises(InputError):
        extract_answer("no box", pattern)


def test_named_and_non_capturing_groups_count_once():
    assert compile_answer_pattern(r"(?:answer|result)\s*(?P<a>\d+)").groups == 1


# --- properties ----------------------------------------------------------------------

@given(st.integers(min_value=-10**12, max_value=10**12), st.integers(0, 3))
def test_an_integer_matches_its_own_string_forms(n, zeros):
    sign = "-" if n < 0 else ""
    forms = [str(n), f"{n:,}", f"{sign}{'0' * zeros}{abs(n)}", f"{n}.0", f"${n}$"]
    for form in forms:
        for exact in (False, True):
            assert answers_match(form, str(n), exact=exact), form
            assert answers_match(str(n), form, exact=exact), form
    assert normalize_answer(f"{n:,}") == str(n)


@given(st.integers(min_value=0, max_value=10**6), st.integers(1, 10**6))
def test_different_integers_do_not_match(n, delta):
    assert not answers_match(str(n), str(n + delta))
    assert not answers_match(f"{n + delta:,}", str(n), exact=True)


_PLAIN = st.text(alphabet=st.characters(blacklist_characters="{}\\"), max_size=8)
_BALANCED = st.recursive(_PLAIN, lambda inner: st.lists(inner, max_size=3).map(
    lambda parts: "{" + "".join(parts) + "}") | st.tuples(inner, inner).map("".join),
    max_leaves=12)


@given(st.text(max_size=40), _BALANCED)
def test_extract_answer_returns_a_balanced_box_and_its_end(prefix, content):
    text = prefix + f"\\boxed{{{content}}}"
    assert extract_answer(text) == ExtractedAnswer(content, len(text))
    tail = " and then some text"
    assert extract_answer(text + tail) == ExtractedAnswer(content, len(text))
