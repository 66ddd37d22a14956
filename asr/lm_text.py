"""Language-model text that is allowed: build it from public-domain books, and prove that it keeps
the dev and test transcripts out.

An n-gram LM trained on text that holds the dev transcripts scores the dev set far better than any
unseen test set, and tuning on such a dev set (``asr tune-lm``) picks weights that do not transfer.
LibriSpeech reads Project Gutenberg books, so "some public-domain books" can hold the very
chapters of a dev set. ``lm_overlap`` measures how much of a set's transcripts an LM text holds:
exact sentence matches (after ``normalize_text``) and the fraction of the set's word n-grams
(e.g. 8-grams) found in the text. ``prepare_lm_text`` turns books into one normalized sentence per
line (the input of ``asr build-lm``) and can drop every sentence that shares an n-gram with given
manifests.

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
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from asr.manifest import ManifestError, Utterance, read_manifest
from asr.outputs import OutputError, atomic_output, check_output
from asr.text import normalize_text, read_normalized_lines

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


class LMTextError(ValueError):
    """An LM text, book or manifest cannot be read; the message names the file."""


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


def ngrams(words: Sequence[str], n: int) -> Iterator[tuple[str, ...]]:
    """The word n-grams of a sentence, in order.

    >>> list(ngrams("a b c".split(), 2))
    [('a', 'b'), ('b', 'c')]
    """
    return (tuple(words[i : i + n]) for i in range(len(words) - n + 1))


@dataclass
class OverlapReport:
    """How much of a set of transcripts an LM text holds.

    Attributes:
        order: the n-gram order ``n``.
        sentences: transcripts checked (non-empty after normalization).
        exact: (id, sentence) of the transcripts that are a line of the LM text (normalized).
        ngrams: the transcripts' n-grams, counted with repetition.
        ngrams_found: how many of them occur in the LM text.
        covered: (id, sentence) of transcripts of at least ``n`` words all of whose n-grams occur.
        partial: (id, n-grams found, n-grams) of the other transcripts with some n-gram found.
        lm_sentences: non-empty lines of the LM text read.
    """

    order: int
    sentences: int = 0
    exact: list[tuple[str, str]] = field(default_factory=list)
    ngrams: int = 0
    ngrams_found: int = 0
    covered: list[tuple[str, str]] = field(default_factory=list)
    partial: list[tuple[str, int, int]] = field(default_factory=list)
    lm_sentences: int = 0

    @property
    def ngram_rate(self) -> float:
        """Fraction of the transcripts' n-grams present in the LM text (0 when they have none)."""
        return self.ngrams_found / self.ngrams if self.ngrams else 0.0

    @property
    def clean(self) -> bool:
        """No exact match, no n-gram of the set in the LM text."""
        return not self.exact and self.ngrams_found == 0

    def summary(self) -> str:
        lines = [
            f"LM text: {self.lm_sentences} sentences; transcripts: {self.sentences}",
            f"exact sentence matches: {len(self.exact)} of {self.sentences}",
            f"{self.order}-gram overlap: {self.ngrams_found} of {self.ngrams} transcript {self.order}-grams "
            f"in the LM text ({100 * self.ngram_rate:.2f} %)",
            f"transcripts whose {self.order}-grams all occur: {len(self.covered)}",
        ]
        for uid, text in self.exact[:10]:
            lines.append(f"  exact: {uid}: {text}")
        for uid, text in [c for c in self.covered if c not in self.exact][:10]:
            lines.append(f"  covered: {uid}: {text}")
        if self.partial:
            worst = sorted(self.partial, key=lambda p: (-p[1] / p[2], p[0]))[:10]
            lines.append(f"transcripts with some {self.order}-grams in the LM text: {len(self.partial)} (" +
                         ", ".join(f"{uid} {hits}/{total}" for uid, hits, total in worst) +
                         (", ..." if len(self.partial) > len(worst) else "") + ")")
        lines.append("verdict: " + ("clean" if self.clean else "OVERLAP: the LM text holds transcript text"))
        return "\n".join(lines)


def read_lm_lines(paths: Iterable[str | Path]) -> Iterator[str]:
    """The normalized non-empty lines of text files; raises ``LMTextError`` naming an unreadable one."""
    return read_normalized_lines(paths, LMTextError)


def read_transcripts(manifest: str | Path, consequence: str) -> list[Utterance]:
    """The utterances of a dev or test manifest whose transcripts are kept out of LM text or checked
    against it (the audio is not looked at).

    Raises:
        ManifestError: the manifest cannot be read.
        LMTextError: it holds no transcript (a book or an empty file given by mistake, which would
            keep nothing out, or check nothing); ``consequence`` ends the message.
    """
    utts = read_manifest(manifest, skip_bad=True, check_audio=False)
    if not any(normalize_text(u.text) for u in utts):
        raise LMTextError(f"{manifest}: no transcripts (is it a manifest?); {consequence}")
    return utts


def lm_overlap(lm_lines: Iterable[str], transcripts: Sequence[str], ids: Sequence[str] | None = None,
               order: int = 8) -> OverlapReport:
    """Overlap between LM text lines and transcripts, both normalized with ``normalize_text``.

    The transcripts' n-grams are held in memory, the LM text is streamed, so an LM text of any
    size can be checked.

    Args:
        lm_lines: the LM text, one sentence per line (e.g. ``read_lm_lines(paths)``).
        transcripts: the dev or test transcripts, raw or normalized.
        ids: a name per transcript for the report (default: its 1-based number).
        order: the n-gram order ``n`` (>= 1).

    Example:
        >>> r = lm_overlap(["the cat sat on the mat", "a dog"], ["The cat sat.", "a bird flew"], order=2)
        >>> r.exact, r.ngrams, r.ngrams_found
        ([], 4, 2)
        >>> r.covered
        [('1', 'the cat sat')]
    """
    if order < 1:
        raise ValueError(f"n-gram order must be >= 1, got {order}")
    ids = list(ids) if ids is not None else [str(i + 1) for i in range(len(transcripts))]
    refs = [(uid, normalize_text(t)) for uid, t in zip(ids, transcripts)]
    refs = [(uid, t) for uid, t in refs if t]
    by_sentence: dict[str, list[str]] = {}
    wanted: set[tuple[str, ...]] = set()
    for uid, text in refs:
        by_sentence.setdefault(text, []).append(uid)
        wanted.update(ngrams(text.split(), order))
    report = OverlapReport(order=order, sentences=len(refs))
    found: set[tuple[str, ...]] = set()
    matched: set[str] = set()
    for line in lm_lines:
        report.lm_sentences += 1
        if line in by_sentence:
            matched.add(line)
        if wanted:
            found.update(g for g in ngrams(line.split(), order) if g in wanted)
    for uid, text in refs:
        grams = list(ngrams(text.split(), order))
        report.ngrams += len(grams)
        hits = sum(g in found for g in grams)
        report.ngrams_found += hits
        if text in matched:
            report.exact.append((uid, text))
        if grams and hits == len(grams):
            report.covered.append((uid, text))
        elif hits:
            report.partial.append((uid, hits, len(grams)))
    return report


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
