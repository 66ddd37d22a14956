"""Word and character error rates (through jiwer) and per-utterance aligned reports."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import jiwer


@dataclass(frozen=True)
class ErrorCounts:
    """Edit-distance counts over a set of utterances.

    ``rate`` is (substitutions + deletions + insertions) / reference units; it can exceed 1.
    """

    substitutions: int
    deletions: int
    insertions: int
    hits: int

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def ref_units(self) -> int:
        return self.substitutions + self.deletions + self.hits

    @property
    def rate(self) -> float:
        return self.errors / self.ref_units if self.ref_units else float(self.errors > 0)

    def summary(self, name: str) -> str:
        """One line, e.g. ``WER 12.50 % [ 5 / 40, 1 ins, 2 del, 2 sub ]`` (Kaldi-style)."""
        return (
            f"{name} {100 * self.rate:.2f} % [ {self.errors} / {self.ref_units}, "
            f"{self.insertions} ins, {self.deletions} del, {self.substitutions} sub ]"
        )


@dataclass(frozen=True)
class ErrorReport:
    """WER and CER of a set of hypotheses, plus one aligned REF/HYP block per utterance."""

    words: ErrorCounts
    chars: ErrorCounts
    alignments: list[str]

    @property
    def wer(self) -> float:
        return self.words.rate

    @property
    def cer(self) -> float:
        return self.chars.rate


def error_report(refs: Sequence[str], hyps: Sequence[str], ids: Sequence[str] | None = None) -> ErrorReport:
    """Score hypotheses against references (both already normalized).

    Args:
        refs: reference transcripts, one string per utterance.
        hyps: hypotheses, same length and order.
        ids: utterance names for the aligned report, same length (default: their index).

    Raises:
        TypeError: ``refs``, ``hyps`` or ``ids`` is a single string (a string is not a list of
            utterances), or holds something else than strings.
        ValueError: if the lists differ in length or are empty.

    >>> r = error_report(["the cat sat"], ["the cat sit down"])
    >>> r.words.summary("WER")
    'WER 66.67 % [ 2 / 3, 1 ins, 0 del, 1 sub ]'
    >>> error_report("the cat", "the hat")
    Traceback (most recent call last):
    ...
    TypeError: refs: expected a list of transcripts (one string per utterance), got a string: 'the cat'
    """
    refs, hyps = _texts("refs", refs, "transcripts"), _texts("hyps", hyps, "transcripts")
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    if not refs:
        raise ValueError("nothing to score: no references")
    ids = [str(i) for i in range(len(refs))] if ids is None else _texts("ids", ids, "names")
    if len(ids) != len(refs):  # zip() below would drop the extra ones, or the utterances without one
        raise ValueError(f"{len(ids)} utterance ids for {len(refs)} references")
    words = jiwer.process_words(refs, hyps)
    chars = jiwer.process_characters(refs, hyps)
    alignments = [
        _align_block(name, ref, hyp, chunks)
        for name, ref, hyp, chunks in zip(ids, words.references, words.hypotheses, words.alignments)
    ]
    return ErrorReport(words=_counts(words), chars=_counts(chars), alignments=alignments)


def _texts(name: str, texts: Sequence[str], what: str) -> list[str]:
    """``texts`` as a list, once checked to be strings, one per utterance; TypeError naming ``name``."""
    if isinstance(texts, str):
        raise TypeError(f"{name}: expected a list of {what} (one string per utterance), got a string: {texts!r}")
    texts = list(texts)
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"{name}[{i}]: expected a string, got {type(text).__name__} {text!r}")
    return texts


def _counts(output) -> ErrorCounts:
    return ErrorCounts(
        substitutions=output.substitutions, deletions=output.deletions,
        insertions=output.insertions, hits=output.hits,
    )


def _align_block(name: str, ref: list[str], hyp: list[str], chunks) -> str:
    """Three aligned lines: REF, HYP, and the edit marks (S, D, I), words padded to equal width."""
    ref_row, hyp_row, ops = [], [], []
    for chunk in chunks:
        r = ref[chunk.ref_start_idx:chunk.ref_end_idx]
        h = hyp[chunk.hyp_start_idx:chunk.hyp_end_idx]
        mark = {"equal": "", "substitute": "S", "delete": "D", "insert": "I"}[chunk.type]
        for i in range(max(len(r), len(h))):
            rw = r[i] if i < len(r) else "*" * len(h[i])
            hw = h[i] if i < len(h) else "*" * len(r[i])
            width = max(len(rw), len(hw), len(mark))
            ref_row.append(rw.ljust(width))
            hyp_row.append(hw.ljust(width))
            ops.append(mark.ljust(width))
    return f"{name}\nREF: {' '.join(ref_row)}\nHYP: {' '.join(hyp_row)}\n     {' '.join(ops)}".rstrip()
