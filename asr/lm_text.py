"""Language-model text that is allowed: public-domain books turned into one normalized sentence
per line (the input of ``asr build-lm``), with the dev and test transcripts kept out.

``prepare_lm_text`` drops every sentence equal to a given transcript and, with ``exclude_order``,
every sentence sharing a word n-gram with one, so that ``asr.lm_overlap`` (which measures how much
of a set's transcripts an LM text holds, and why that matters) finds none.

Book formats:

* ``plain``: a plain-text book, Project Gutenberg's header and licence removed when their
  ``*** START OF`` / ``*** END OF`` lines are there; paragraphs (blank-line separated) are split
  into sentences at ``.``, ``!`` and ``?``.
* ``bible``: the output of Debian's ``bible`` program (package ``bible-kjv``, the King James
  Version, public domain): ``Book N`` chapter headings, then verses ``  N text`` wrapped over
  lines; each verse is split into sentences.
* ``gcide``: the dictd file of Debian's ``dict-gcide`` (the Collaborative International Dictionary
  of English, from Webster's 1913; ``/usr/share/dictd/gcide.dict.dz``, gzip is read as is): the
  definitions and the 19th-century quotations they cite, without headwords, pronunciations,
  etymologies, bracketed notes and ``--Author`` attributions; split at ``.!?;:``. A large
  vocabulary of the books' period, for lexicon decoding.
* ``manifest``: a JSON-lines manifest (``asr.manifest``): its transcripts, one sentence each (the
  training set's own text; its audio need not be there).

Example:
    >>> list(book_sentences("Genesis 1\\n\\n  1 In the beginning God created the heaven and the earth.\\n"
    ...                     "  2 And the earth was without form.\\n", "bible"))
    ['in the beginning god created the heaven and the earth', 'and the earth was without form']
"""

from __future__ import annotations

import gzip
import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from asr.lm_overlap import LMTextError, ngrams
from asr.manifest import ManifestError, manifest_as_text_error, read_manifest
from asr.outputs import OutputError, atomic_output, check_output
from asr.text import normalize_text

logger = logging.getLogger(__name__)

BookFormat = Literal["plain", "bible", "gcide", "manifest"]
TEXT_FORMATS = ("plain", "bible", "gcide")  # formats of a book's text (``book_sentences``)
BOOK_FORMATS = (*TEXT_FORMATS, "manifest")  # a manifest is read as a file, by ``prepare_lm_text``

_PG_START = re.compile(r"^\*\*\*\s*START OF (THE|THIS) PROJECT GUTENBERG", re.I | re.M)
_PG_END = re.compile(r"^\*\*\*\s*END OF (THE|THIS) PROJECT GUTENBERG", re.I | re.M)
_SENTENCE_END = re.compile(r"([.!?][\"'”’)\]]*)\s+")  # the end mark and closing quotes are kept
_BIBLE_HEADING = re.compile(r"^(?:[1-3] )?[A-Z][A-Za-z ]+ \d+$")
_BIBLE_VERSE = re.compile(r"^\s+\d+ (.*)$")
_GCIDE_NOTE_LINE = re.compile(r"^\s*\[[^\]]*\]\s*$")  # "[1913 Webster]", "[PJC]" source lines
_GCIDE_DROP = [re.compile(r) for r in (
    r"\[[^\]\s]{1,5}\]",  # special letters ([-e], ['e]) and short notes ([Obs.], [U.S.])
    r"\\[^\\]*\\",  # \pro*nun"ci*a*tion\
    r"\[[^\]]*\]",  # etymologies and other bracketed notes
    r"\([^)]*\)",  # parentheses: pronunciations, cross references
    r"--\s?[A-Z][^.;:]{0,40}(?:\.|$)",  # quotation attributions: --Milton.
)]
_GCIDE_HEADWORD = re.compile(r"^[^\\]*\\[^\\]*\\")  # Affect \\Af*fect"\\
_GCIDE_SPLIT = re.compile(r"[;:]\s+")


def strip_gutenberg(text: str) -> str:
    """The body of a Project Gutenberg e-text: what lies between its START and END lines (the
    whole text when they are absent).

    >>> strip_gutenberg("licence\\n*** START OF THE PROJECT GUTENBERG EBOOK X ***\\nbody\\n*** END OF THE PROJECT GUTENBERG EBOOK X ***\\nmore")
    'body'
    """
    start = _PG_START.search(text)
    if start:
        newline = text.find("\n", start.start())
        text = text[newline + 1 :] if newline >= 0 else ""
    end = _PG_END.search(text)
    if end:
        text = text[: end.start()]
    return text.strip()


def split_sentences(paragraph: str) -> list[str]:
    """Split running text at ``.``, ``!`` or ``?`` followed by white space (closing quotes kept).

    >>> split_sentences('He said "Go!" Then he went. Why? No.')
    ['He said "Go!"', 'Then he went.', 'Why?', 'No.']
    """
    parts = _SENTENCE_END.split(" ".join(paragraph.split()))  # text, end mark, text, end mark, ..., text
    sentences = [parts[i] + (parts[i + 1] if i + 1 < len(parts) else "") for i in range(0, len(parts), 2)]
    return [s.strip() for s in sentences if s.strip()]


def _plain_paragraphs(text: str) -> Iterator[str]:
    block: list[str] = []
    for line in strip_gutenberg(text).splitlines():
        if line.strip():
            block.append(line.strip())
        elif block:
            yield " ".join(block)
            block = []
    if block:
        yield " ".join(block)


def _bible_verses(text: str) -> Iterator[str]:
    verse: list[str] = []
    for line in text.splitlines():
        m = _BIBLE_VERSE.match(line)
        if m or not line.strip() or _BIBLE_HEADING.match(line):
            if verse:
                yield " ".join(verse)
            verse = [m.group(1)] if m else []
        elif verse:
            verse.append(line.strip())  # a wrapped verse goes on
    if verse:
        yield " ".join(verse)


def _gcide_units(text: str) -> Iterator[str]:
    paragraph: list[str] = []
    for line in text.splitlines() + [""]:
        if line.strip() and not _GCIDE_NOTE_LINE.match(line):
            if not paragraph and not line[0].isspace():  # an entry's first line: drop the headword
                line = _GCIDE_HEADWORD.sub("", line)
            paragraph.append(line.strip())
            continue
        if paragraph and not paragraph[0].startswith("00-database"):
            joined = " ".join(paragraph)
            for pattern in _GCIDE_DROP:
                joined = pattern.sub(" ", joined)
            yield from _GCIDE_SPLIT.split(joined.replace("{", "").replace("}", ""))
        paragraph = []


def book_sentences(text: str, fmt: BookFormat = "plain", min_words: int = 1) -> Iterator[str]:
    """Normalized sentences (``normalize_text``) of a book, those of at least ``min_words`` words.

    >>> list(book_sentences('Affect \\\\Af*fect"\\\\, v. t. [L. affectus.]\\n   1. To act upon; to move.\\n'
    ...                     '      [1913 Webster]\\n\\n            As might affect the earth with cold heat. --Milton.\\n',
    ...                     "gcide", min_words=2))
    ['to act upon', 'to move', 'as might affect the earth with cold heat']
    """
    if fmt not in TEXT_FORMATS:
        raise ValueError(f"unknown book format {fmt!r} ({', '.join(TEXT_FORMATS)})")
    units = {"bible": _bible_verses, "gcide": _gcide_units}.get(fmt, _plain_paragraphs)(text)
    for unit in units:
        for sentence in split_sentences(unit):
            norm = normalize_text(sentence)
            if norm and len(norm.split()) >= min_words:
                yield norm


@dataclass
class PrepareReport:
    """What ``prepare_lm_text`` read and wrote."""

    path: Path
    sentences: int = 0  # sentences read from the books (after min_words)
    written: int = 0  # lines written
    dropped_exact: int = 0  # sentences equal to an excluded transcript
    dropped_ngram: int = 0  # sentences sharing an n-gram with an excluded transcript

    def summary(self) -> str:
        return (f"{self.path}: {self.written} sentences written of {self.sentences} read; dropped "
                f"{self.dropped_exact} equal to and {self.dropped_ngram} sharing an n-gram with excluded transcripts")


def _file_sentences(book: str | Path, fmt: BookFormat, min_words: int) -> Iterator[str]:
    """The normalized sentences of one book file (``book_sentences``) or manifest."""
    if fmt == "manifest":
        try:
            utts = read_manifest(book, check_audio=False)
        except ManifestError as e:
            raise LMTextError(str(e)) from None
        texts = (normalize_text(u.text) for u in utts)
        return (t for t in texts if t and len(t.split()) >= min_words)
    error = manifest_as_text_error(book)
    if error:
        raise LMTextError(error)
    try:
        raw = Path(book).read_bytes()
        raw = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
        text = raw.decode("utf-8", errors="replace" if fmt == "gcide" else "strict")  # GCIDE mixes in cp1252
    except (OSError, UnicodeDecodeError, EOFError, gzip.BadGzipFile) as e:
        raise LMTextError(f"{book}: cannot read the book ({e})") from None
    return book_sentences(text, fmt, min_words=min_words)


def is_lm_text(path: Path, max_lines: int = 1000) -> bool:
    """Whether a file looks like an output of ``prepare_lm_text``: UTF-8 lines (the first
    ``max_lines`` are checked) each already normalized (``normalize_text``); an empty file is one.
    A book, a manifest or other text of the user's is not.
    """
    try:
        with open(path, encoding="utf-8") as f:
            for i, line in enumerate(f):
                if i >= max_lines:
                    break
                line = line.rstrip("\n")
                if not line or normalize_text(line) != line:
                    return False
    except (OSError, UnicodeDecodeError):
        return False
    return True


def check_lm_text_output(out: str | Path, inputs: Sequence[str | Path] = ()) -> Path:
    """The path to write an LM text at, once it is certain that nothing of the user's is lost:
    ``out`` is none of ``inputs`` (books, manifests) and holds nothing or an earlier LM text
    (:func:`is_lm_text`), and its folder can be written.

    Raises:
        asr.outputs.OutputError: ``out`` is an input, a folder, a file of another kind, or below a file.
    """
    for path in inputs:
        if Path(out).exists() and Path(path).exists() and Path(out).samefile(path):
            raise OutputError(f"{out}: is also an input ({path}); not overwritten (choose another --out)")
    return check_output(out, is_lm_text, "an LM text (one normalized sentence per line)")


def prepare_lm_text(books: Sequence[str | Path], out: str | Path, fmt: BookFormat = "plain",
                    exclude: Sequence[str] = (), exclude_order: int = 0, min_words: int = 3) -> PrepareReport:
    """Write the normalized sentences of ``books`` to ``out``, one per line, for ``asr build-lm``.

    Args:
        books: text files (UTF-8) in format ``fmt``, or manifests for ``manifest``.
        out: the output text file (written atomically: a temporary file, then renamed).
        fmt: ``plain``, ``bible``, ``gcide`` or ``manifest`` (see the module docstring).
        exclude: transcripts to keep out (e.g. the dev and test manifests' texts); a sentence equal
            to one of them (normalized) is dropped.
        exclude_order: when > 0, also drop every sentence sharing an n-gram of this order with an
            excluded transcript, so ``lm_overlap(..., order=exclude_order)`` finds none.
        min_words: shorter sentences are skipped.

    Raises:
        LMTextError: a book or manifest cannot be read (the message names the file, and the line
            of a bad manifest line).
        asr.outputs.OutputError: ``out`` would lose something (:func:`check_lm_text_output`).
    """
    out = check_lm_text_output(out, books)
    report = PrepareReport(path=out)
    excluded = {normalize_text(t) for t in exclude} - {""}
    banned: set[tuple[str, ...]] = set()
    if exclude_order > 0:
        for text in excluded:
            banned.update(ngrams(text.split(), exclude_order))
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(out) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for book in books:
            for sentence in _file_sentences(book, fmt, min_words):
                report.sentences += 1
                if sentence in excluded:
                    report.dropped_exact += 1
                elif banned and any(g in banned for g in ngrams(sentence.split(), exclude_order)):
                    report.dropped_ngram += 1
                else:
                    f.write(sentence + "\n")
                    report.written += 1
    logger.info("lm_text=%s sentences=%d written=%d", out, report.sentences, report.written)
    return report
