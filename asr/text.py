"""Transcript normalization: the one policy for training targets, references, hypotheses and LM text.

Normalization policy (:func:`normalize_text`), for English ASR targets:

* Unicode is NFKC-folded, then lower-cased (``casefold``: "ß" → "ss"); diacritics are removed
  ("café" → "cafe") and "æ", "œ", "ø", "ł", "đ" become "ae", "oe", "o", "l", "d". Letters of
  other scripts are kept, so a tokenizer reports them as out of vocabulary instead of losing them.
* Apostrophes: typographic variants (’ ‘ ʼ ` ´ ′) become ``'``; an apostrophe between two letters is
  kept ("don't", "o'clock"), any other one is a quote and is dropped ("'tis", "the boys' toys").
* Hyphens, dashes, quotes and all other punctuation and symbols become a space, except
  "%" → "percent" and "&" → "and". Whitespace is collapsed; no leading or trailing space.
* Digits are spelled out in English words (American style, no "and"; hyphens become spaces):

  - cardinals: "42" → "forty two", "1,000,000" → "one million" (commas as thousands separators);
    supported up to 10^36 - 1, longer numbers are read digit by digit;
  - numbers with a leading zero are read digit by digit: "007" → "zero zero seven";
  - decimals: "3.14" → "three point one four" (fraction digit by digit), ".5" → "point five";
  - a "-" or "−" directly before a number, not after a letter, digit, "." or "-", is a minus:
    "-5" → "minus five" (but "1990-1995" is a range: "... ninety ... ninety five");
  - ordinals with suffix: "1st" → "first", "23rd" → "twenty third", "100th" → "one hundredth";
  - plurals: "1990s" and "90's" → "one thousand nine hundred nineties" and "nineties";
  - years, times, currencies and fractions get no special reading: "1990" → "one thousand nine
    hundred ninety", "$5" → "five", "1/2" → "one two".

The result is idempotent: ``normalize_text(normalize_text(s)) == normalize_text(s)``.

Tokenizers (:mod:`asr.tokenizer`) map the normalized text to label ids.

Example:
    >>> normalize_text("“Don't” — he said; it's 3.5% of the 21st-century budget!")
    "don't he said it's three point five percent of the twenty first century budget"
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Iterator
from pathlib import Path


_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = (
    "_ thousand million billion trillion quadrillion quintillion sextillion septillion octillion "
    "nonillion decillion"
).split()
_IRREGULAR_ORDINALS = {
    "one": "first", "two": "second", "three": "third", "five": "fifth",
    "eight": "eighth", "nine": "ninth", "twelve": "twelfth",
}  # fmt: skip


def _below_thousand(n: int) -> list[str]:
    """Words for 1 <= n <= 999."""
    words = []
    if n >= 100:
        words += [_ONES[n // 100], "hundred"]
        n %= 100
    if n >= 20:
        words.append(_TENS[n // 10])
        n %= 10
    if n:
        words.append(_ONES[n])
    return words


def number_to_words(n: int, ordinal: bool = False) -> str:
    """Spell out an integer in English words (American style: no "and", no hyphens).

    Args:
        n: the integer; negative numbers are read with "minus".
        ordinal: read it as an ordinal ("twenty third" instead of "twenty three").

    Returns:
        The words separated by single spaces.

    Raises:
        ValueError: if ``abs(n)`` is 10^36 or more (no scale word beyond "decillion").

    Example:
        >>> number_to_words(0), number_to_words(1_000_000_000_001)
        ('zero', 'one trillion one')
        >>> number_to_words(-1205)
        'minus one thousand two hundred five'
        >>> [number_to_words(n, ordinal=True) for n in (12, 40, 101)]
        ['twelfth', 'fortieth', 'one hundred first']
    """
    if n < 0:
        return "minus " + number_to_words(-n, ordinal)
    if n >= 1000 ** len(_SCALES):
        raise ValueError(f"number_to_words: {n} is too large (at most 10^36 - 1)")
    words: list[str] = []
    scale = 0
    rest = n
    while rest:
        rest, group = divmod(rest, 1000)
        if group:
            words = _below_thousand(group) + ([_SCALES[scale]] if scale else []) + words
        scale += 1
    words = words or ["zero"]
    if ordinal:
        last = words[-1]
        if last in _IRREGULAR_ORDINALS:
            words[-1] = _IRREGULAR_ORDINALS[last]
        elif last.endswith("y"):
            words[-1] = last[:-1] + "ieth"
        else:
            words[-1] = last + "th"
    return " ".join(words)


def _digits_to_words(digits: str) -> str:
    """Read a digit string digit by digit: "07" → "zero seven"."""
    return " ".join(_ONES[int(d)] for d in digits)


_APOSTROPHES = str.maketrans({c: "'" for c in "\u2019\u2018\u02bc\u02bb`\u00b4\u2032\u201b"})
_LETTER_FOLD = str.maketrans({"æ": "ae", "œ": "oe", "ø": "o", "ł": "l", "đ": "d", "\u2212": "-"})
_NUMBER_RE = re.compile(
    r"(?P<sign>(?<![\w.\-])-)?"  # a minus sign, not a hyphen after a word or number
    r"(?:(?P<int>\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.(?P<frac>\d+))?"  # 1,000 / 42 / 3.14
    r"|(?<!\w)\.(?P<bare>\d+))"  # .5
    r"(?:(?P<suffix>st|nd|rd|th|'?s)(?![^\W\d_]))?"  # 1st 2nd 23rd 100th / 1990s 90's
)
_QUOTE_APOSTROPHE_RE = re.compile(r"(?<![^\W\d_])'|'(?![^\W\d_])")  # not between two letters
_OTHER_RE = re.compile(r"[^\w']|_")
_SPACES_RE = re.compile(r"\s+")


def _plural(words: str) -> str:
    """ "ninety" → "nineties", "six" → "sixes", "one thousand" → "one thousands"."""
    if words.endswith("y"):
        return words[:-1] + "ies"
    return words + ("es" if words.endswith("x") else "s")


def _spell_number(m: re.Match[str]) -> str:
    digits = (m["int"] or "").replace(",", "")
    frac = m["frac"] if m["frac"] is not None else m["bare"]
    suffix = m["suffix"]
    cardinal = 0 < len(digits) <= 36 and not (len(digits) > 1 and digits[0] == "0")
    if cardinal and frac is None and suffix in ("st", "nd", "rd", "th"):
        words, suffix = number_to_words(int(digits), ordinal=True), None
    else:
        words = number_to_words(int(digits)) if cardinal else _digits_to_words(digits)
    if frac is not None:
        words += " point " + _digits_to_words(frac)
    if cardinal and frac is None and suffix in ("s", "'s"):
        words, suffix = _plural(words), None
    if m["sign"]:
        words = "minus " + words
    return f" {words} {suffix or ''} "  # an unread suffix stays: "007th" → "zero zero seven th"


def normalize_text(text: str) -> str:
    """Normalize a transcript for English ASR (policy in the module docstring).

    Args:
        text: raw transcript, any case, any Unicode.

    Returns:
        Lower-case words (letters and in-word apostrophes) separated by single spaces.

    Example:
        >>> normalize_text("The boys' 'toys' aren't O’Clock-ish, naïve & co.")
        "the boys toys aren't o'clock ish naive and co"
        >>> normalize_text("Chapter 23rd: -4.05 degrees, 1,000,000 people, 50%")
        'chapter twenty third minus four point zero five degrees one million people fifty percent'
        >>> normalize_text("  \\t ")
        ''
    """
    text = unicodedata.normalize("NFKC", text).casefold()
    text = text.translate(_APOSTROPHES).translate(_LETTER_FOLD)
    text = _NUMBER_RE.sub(_spell_number, text)
    text = text.replace("%", " percent ").replace("&", " and ")
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c))
    text = _QUOTE_APOSTROPHE_RE.sub(" ", text)
    text = _OTHER_RE.sub(" ", text)
    return _SPACES_RE.sub(" ", text).strip()


def read_normalized_lines(paths: Iterable[str | Path], error: type[Exception] = ValueError) -> Iterator[str]:
    """The non-empty lines of UTF-8 text files, each through :func:`normalize_text`.

    An unreadable or non-UTF-8 file raises ``error`` (the caller's own error type) naming it.
    """
    for path in paths:
        try:
            with open(path, encoding="utf-8") as f:
                for line in f:
                    norm = normalize_text(line)
                    if norm:
                        yield norm
        except (OSError, UnicodeDecodeError) as e:
            raise error(f"{path}: cannot read the text ({read_error_cause(e)})") from None


def read_error_cause(e: OSError | UnicodeDecodeError) -> str:
    """Why a text file could not be read, without Python's ``[Errno 2] ...: 'path'`` or codec details.

    >>> read_error_cause(FileNotFoundError(2, "No such file or directory", "x.txt"))
    'No such file or directory'
    """
    return "not UTF-8 text" if isinstance(e, UnicodeDecodeError) else str(e.strerror or e)


