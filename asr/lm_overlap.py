"""How much of a dev or test set's transcripts an LM text holds.

An n-gram LM trained on text that holds the dev transcripts scores the dev set far better than any
unseen test set, and tuning on such a dev set (``asr tune-lm``) picks weights that do not transfer.
LibriSpeech reads Project Gutenberg books, so "some public-domain books" can hold the very
chapters of a dev set. ``lm_overlap`` measures how much of a set's transcripts an LM text holds:
exact sentence matches (after ``normalize_text``) and the fraction of the set's word n-grams
(e.g. 8-grams) found in the text. Building the LM text from books is ``asr.lm_text``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from asr.manifest import Utterance, manifest_as_text_error, read_manifest
from asr.text import normalize_text, read_normalized_lines


class LMTextError(ValueError):
    """An LM text, book or manifest cannot be read; the message names the file."""


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
    """The normalized non-empty lines of text files.

    Raises:
        LMTextError: (at once) a manifest given as text; (when read) a file that cannot be read.
    """
    paths = list(paths)
    for path in paths:
        error = manifest_as_text_error(path)
        if error:
            raise LMTextError(error)
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
