"""Final answers: extraction from generated text, normalization and grading.

One home for the answer logic that ``kinetics ingest`` (published traces) and
``kinetics generate`` (traces this package samples) share:

* :func:`extract_answer`: the last complete ``\\boxed{...}`` of a text, else the last
  match of a user's regular expression, with the character index just past it (from
  which a caller counts the tokens up to the answer: ``answer_pos``);
* :func:`normalize_answer`: AIME-style string normalization (``033`` = ``33``,
  ``1,000`` = ``1000``, ``\\text{5}`` = ``5``);
* :func:`answers_match`: normalized equality, else mathematical equivalence by the
  optional ``math-verify`` package (``\\dfrac{1}{2}`` = ``0.5`` = ``1/2`` = ``50\\%``,
  ``\\{1,2\\}`` = ``\\{2,1\\}``, ``2\\sqrt{2}`` = ``\\sqrt{8}``); exact string match for
  problems that declare it.

All functions are pure (math-verify's parse results are cached per string).
"""

from __future__ import annotations

import logging
import math
import re
import threading
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from kinetics.errors import InputError

_BOXED = "\\boxed"
# math-verify: answers longer than this are compared as normalized strings only (a
# final answer is short; a long one is a parse of runaway text, slow to parse)
_MAX_VERIFY_CHARS = 1000
# math-verify's timeout (whole seconds, SIGALRM: main thread only)
_VERIFY_TIMEOUT_S = 5
# an exact integer sympy might build while comparing may have at most this many bits;
# beyond it (9^{9^{9^9}}, (10^{100})!) Python's big-int arithmetic cannot be
# interrupted by any timeout, so such answers are compared as strings only
_MAX_BITS = 1 << 20


@dataclass(frozen=True)
class ExtractedAnswer:
    """A final answer found in a text: ``text`` the answer (the box's content, or the
    pattern's group without surrounding whitespace), ``end`` the character index in the
    searched text just past the answer's last character (for a box: past its closing
    brace)."""

    text: str
    end: int


def last_boxed(text: str) -> tuple[str, int] | None:
    """(content, end) of the last ``\\boxed{...}`` in ``text``; ``end`` is the index
    just past its closing brace. Nested braces are matched; None when there is no
    complete box."""
    start = text.rfind(_BOXED)
    while start >= 0:
        i = start + len(_BOXED)
        while i < len(text) and text[i] == " ":
            i += 1
        if i < len(text) and text[i] == "{":
            depth = 0
            for j in range(i, len(text)):
                if text[j] == "{":
                    depth += 1
                elif text[j] == "}":
                    depth -= 1
                    if depth == 0:
                        return text[i + 1:j], j + 1
        start = text.rfind(_BOXED, 0, start)
    return None


@lru_cache(maxsize=64)
def compile_answer_pattern(pattern: str) -> re.Pattern[str]:
    """The compiled answer regex; InputError (one line) unless it compiles and has
    exactly one capturing group (the answer)."""
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise InputError(f"answer pattern {pattern!r} is not a regular expression ({exc})"
                         ) from None
    if compiled.groups != 1:
        raise InputError(f"answer pattern {pattern!r} must have exactly one capturing group "
                         f"(the answer), it has {compiled.groups}")
    return compiled


def extract_answer(text: str, pattern: str | re.Pattern[str] | None = None
                   ) -> ExtractedAnswer | None:
    """The final answer of a generated text: the last complete ``\\boxed{...}`` (nested
    braces matched), else, when ``pattern`` (a regex with one group, see
    :func:`compile_answer_pattern`) is given, the group of its last match whose group
    is not blank; None when there is neither."""
    boxed = last_boxed(text)
    if boxed is not None:
        return ExtractedAnswer(*boxed)
    if pattern is None:
        return None
    compiled = pattern if isinstance(pattern, re.Pattern) else compile_answer_pattern(pattern)
    if compiled.groups != 1:
        compile_answer_pattern(compiled.pattern)  # raises the one-line InputError
    found = None
    for match in compiled.finditer(text):
        group = match.group(1)
        if group is not None and group.strip():
            found = match
    if found is None:
        return None
    group = found.group(1)
    return ExtractedAnswer(group.strip(), found.start(1) + len(group.rstrip()))


_THOUSANDS = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d*)?")
_PLAIN_NUMBER = re.compile(r"[+-]?\d+(?:\.\d*)?")


def normalize_answer(answer: str) -> str:
    """AIME-style normalization: strip TeX wrappers (``\\text{}``, ``\\left``, ``$``,
    thin spaces), spaces, degree signs and a trailing period; a number loses thousands
    separators (``1,000`` and ``1{,}000``; a comma elsewhere, as in the pair ``1,2``, is
    kept) and leading zeros (``033`` -> ``33``), and ``5.0`` becomes ``5``."""
    s = str(answer).strip().replace("\u2212", "-").replace("{,}", ",")
    s = re.sub(r"\\text\{([^{}]*)\}", r"\1", s)
    s = re.sub(r"\\(?:left|right|displaystyle|,|;|!|\s)", "", s)
    s = s.replace("\\$", "").replace("$", "").replace(" ", "")
    s = s.replace("^\\circ", "").replace("^{\\circ}", "").rstrip(".")
    if _PLAIN_NUMBER.fullmatch(s) or _THOUSANDS.fullmatch(s):
        digits = s.replace(",", "")
        whole, _, fraction = digits.partition(".")
        if not fraction.strip("0"):
            return str(int(whole))  # exact at any size: '-0' -> '0', '+5' -> '5'
        return repr(float(digits))
    return s


def answers_match(answer: str | None, gold: str, exact: bool = False) -> bool:
    """True when ``answer`` (an extracted final answer, None when there was none) is
    the gold answer.

    ``exact=True``: the normalized strings (:func:`normalize_answer`) are equal.
    Otherwise also true when ``math-verify`` finds them mathematically equivalent
    (each is parsed as the content of a ``\\boxed{}``, so plain ``1/2``, ``0.5``,
    ``\\frac12``, ``50\\%`` and LaTeX are understood). Without math-verify installed
    (it is in the ``ingest`` and ``generate`` extras) only normalized equality counts.
    A blank answer matches nothing. Grading works in any thread: math-verify's
    timeout (SIGALRM) is used in the main thread and left off elsewhere; answers of
    over 1000 characters, or whose parse holds an exact number too large to compute
    (an exponent tower, a huge factorial), are compared as normalized strings only.
    """
    if answer is None:
        return False
    norm_answer, norm_gold = normalize_answer(answer), normalize_answer(gold)
    if not norm_answer or not norm_gold:
        return False
    if norm_answer == norm_gold:
        return True
    if exact or max(len(answer), len(gold)) > _MAX_VERIFY_CHARS:
        return False
    return _equivalent(str(gold).strip(), str(answer).strip())


# --- math-verify ------------------------------------------------------------------------

class _DropTimeoutDisabled(logging.Filter):
    """math-verify warns once that its timeout is off; we turn it off on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Timeout is disabled")


@lru_cache(maxsize=1)
def _math_verify() -> Any | None:
    """The math_verify module (its loggers filtered), or None when not installed."""
    try:
        import math_verify
    except ImportError:
        return None
    for name in ("math_verify.parser", "math_verify.grader"):
        logging.getLogger(name).addFilter(_DropTimeoutDisabled())
    return math_verify


def _timeout_s() -> int | None:
    """math-verify's signal-based timeout works only in the main thread."""
    return _VERIFY_TIMEOUT_S if threading.current_thread() is threading.main_thread() else None


@lru_cache(maxsize=4096)
def _parse(text: str, timeout_s: int | None) -> tuple:
    """math-verify's parses of ``text`` as a boxed answer (empty when none, or when one
    holds a number too large to compare safely)."""
    mv = _math_verify()
    config = [mv.LatexExtractionConfig(boxed_match_priority=0), mv.ExprExtractionConfig()]
    parsed = mv.parse(f"{_BOXED}{{{text}}}", extraction_config=config,
                      parsing_timeout=timeout_s)
    if any(_bits(p) > _MAX_BITS for p in parsed):
        return ()
    return tuple(parsed)


def _equivalent(gold: str, answer: str) -> bool:
    mv = _math_verify()
    if mv is None:
        return False
    timeout_s = _timeout_s()
    gold_parsed, answer_parsed = _parse(gold, timeout_s), _parse(answer, timeout_s)
    if not gold_parsed or not answer_parsed:
        return False
    return bool(mv.verify(list(gold_parsed), list(answer_parsed), timeout_seconds=timeout_s))


def _bits(expr: Any) -> float:
    """An upper bound on the bits of any exact number sympy may compute from ``expr``
    (0 for strings and symbols, inf when unbounded or too deep to tell)."""
    try:
        return _bits_of(expr, 0)
    except (RecursionError, OverflowError, TypeError, ValueError):
        return math.inf


def _bits_of(expr: Any, depth: int) -> float:
    import sympy

    if depth > 200:
        return math.inf
    if isinstance(expr, str):
        return 0.0
    if isinstance(expr, sympy.Rational):  # Integer included
        return float(max(abs(int(expr.p)).bit_length(), abs(int(expr.q)).bit_length()))
    if isinstance(expr, sympy.Float):
        return 64.0
    if isinstance(expr, sympy.Pow):
        base, exponent = expr.args
        if exponent.free_symbols:  # symbolic exponent: never expanded into an integer
            return _bits_of(base, depth + 1) + _bits_of(exponent, depth + 1)
        return _power_bits(_bits_of(base, depth + 1), _bits_of(exponent, depth + 1),
                           exponent)
    if isinstance(expr, sympy.factorial):
        n_bits = _bits_of(expr.args[0], depth + 1)
        n = 2.0 ** n_bits if n_bits < 64 else math.inf
        return n * max(1.0, math.log2(max(n, 2.0)))
    args = getattr(expr, "args", None)
    if args is None and not isinstance(expr, sympy.Basic) and hasattr(expr, "__iter__"):
        args = tuple(expr)  # a mutable matrix
    return float(sum(_bits_of(a, depth + 1) for a in args or ()))


def _power_bits(base_bits: float, exponent_bits: float, exponent: Any) -> float:
    """Bits of base**exponent from the bits of each (exact for an integer exponent)."""
    import sympy

    if isinstance(exponent, sympy.Number):
        magnitude = abs(float(exponent))
    else:
        magnitude = 2.0 ** exponent_bits if exponent_bits < 1024 else math.inf
    return max(base_bits, 1.0) * magnitude
