"""Word timestamps and confidences by CTC forced alignment of a transcript, and SRT subtitles.

The decoded text is aligned to the model's log-probabilities with
``torchaudio.functional.forced_align`` (Viterbi over the CTC topology). A word spans the output
frames of its tokens: it starts at ``first_frame * frame_shift_s`` and ends at
``(last_frame + 1) * frame_shift_s`` (clipped to the audio's duration), where ``frame_shift_s`` is
the feature hop times the model's time stride. Its confidence is the mean posterior probability
of its labels over the frames aligned to them (in [0, 1]); the blank frames between them are left
out, so that a word spoken slowly (few label frames among many blanks, as CTC models emit) is not
taken for an uncertain one. With a character tokenizer the spaces between words are aligned too
but belong to no word.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass

import torch
import torchaudio.functional as AF

from asr.decode import separator_id, spell
from asr.tokenizer import Tokenizer

logger = logging.getLogger(__name__)


class AlignmentError(ValueError):
    """A transcript cannot be aligned (too long for the frames, or a word the tokenizer cannot write)."""


@dataclass
class WordTiming:
    """One word with its time span in seconds from the start of the audio and its confidence."""

    word: str
    start_s: float
    end_s: float
    confidence: float

    def to_dict(self, digits: int = 3) -> dict[str, float | str]:
        return {k: round(v, digits) if isinstance(v, float) else v for k, v in asdict(self).items()}


def _targets(text: str, tokenizer: Tokenizer) -> tuple[list[str], list[int], list[int]]:
    """Words, the label ids to align, and for each label the index of its word (-1: separator)."""
    words = text.split()
    separator = separator_id(tokenizer)
    targets: list[int] = []
    owner: list[int] = []
    for index, word in enumerate(words):
        ids = spell(tokenizer, word) or [i for i in tokenizer.encode(word) if i != tokenizer.blank_id]
        if not ids:
            raise AlignmentError(f"word {word!r}: the tokenizer cannot write it")
        if index and separator is not None:
            targets.append(separator)
            owner.append(-1)
        targets.extend(ids)
        owner.extend([index] * len(ids))
    return words, targets, owner


def align_words(
    log_probs: torch.Tensor, text: str, tokenizer: Tokenizer, frame_shift_s: float,
    duration_s: float | None = None,
) -> list[WordTiming]:
    """Time each word of ``text`` in one utterance's CTC output.

    Args:
        log_probs: (T, V) log-probabilities of the utterance's valid frames.
        text: the transcript (normalized words separated by spaces).
        tokenizer: the model's tokenizer.
        frame_shift_s: seconds between output frames.
        duration_s: the audio's duration; end times are clipped to it (default: T * frame_shift_s).

    Returns:
        One ``WordTiming`` per word, in order; empty for an empty text.

    Raises:
        AlignmentError: the text needs more frames than there are, or has a word the tokenizer
            cannot write.

    Example:
        >>> from asr.tokenizer import CharTokenizer
        >>> lp = torch.full((6, 29), -9.0)  # (T, V); frames: blank a blank space b b
        >>> for t, label in enumerate([0, 3, 0, 1, 4, 4]): lp[t, label] = 0.0
        >>> [(w.word, w.start_s, w.end_s) for w in align_words(lp, "a b", CharTokenizer(), 0.02)]
        [('a', 0.02, 0.04), ('b', 0.08, 0.12)]
    """
    words, targets, owner = _targets(text, tokenizer)
    if not words:
        return []
    num_frames = log_probs.size(0)
    needed = len(targets) + sum(a == b for a, b in zip(targets, targets[1:]))
    if needed > num_frames:
        raise AlignmentError(f"{len(words)} words need {needed} frames, the output has {num_frames}")
    emissions = log_probs.detach().float().cpu()[None]  # (1, T, V)
    labels = torch.tensor([targets], dtype=torch.int32)  # (1, L)
    aligned, scores = AF.forced_align(emissions, labels, blank=tokenizer.blank_id)  # (1, T), (1, T)
    spans = AF.merge_tokens(aligned[0], scores[0].exp(), blank=tokenizer.blank_id)
    duration_s = num_frames * frame_shift_s if duration_s is None else duration_s
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    mass: dict[int, float] = {}  # the posteriors of the word's label frames, summed
    label_frames: dict[int, int] = {}
    for span, word_index in zip(spans, owner):
        if word_index < 0:
            continue
        first.setdefault(word_index, span.start)
        last[word_index] = span.end
        mass[word_index] = mass.get(word_index, 0.0) + span.score * (span.end - span.start)  # score: the span's mean
        label_frames[word_index] = label_frames.get(word_index, 0) + span.end - span.start
    timings = []
    for i, word in enumerate(words):
        start_s = min(first[i] * frame_shift_s, duration_s)
        end_s = min(last[i] * frame_shift_s, duration_s)
        confidence = mass[i] / label_frames[i] if label_frames[i] else 0.0
        timings.append(WordTiming(word=word, start_s=round(start_s, 6), end_s=round(end_s, 6),
                                  confidence=float(min(1.0, confidence))))
    return timings


def _srt_time(seconds: float) -> str:
    """SRT timestamp ``HH:MM:SS,mmm``.

    >>> _srt_time(3725.5)
    '01:02:05,500'
    """
    ms = round(seconds * 1000)
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d},{ms:03d}"


def to_srt(words: list[WordTiming], max_words: int = 10, max_duration_s: float = 5.0, max_gap_s: float = 1.0,
           min_shown_s: float = 1.0) -> str:
    """SRT subtitles from word timings: a cue ends at ``max_words`` words, ``max_duration_s``, or a pause.

    A cue stays on screen ``min_shown_s`` at least, or until the next one begins: CTC times a word by
    its labels' frames, which cover a fraction of the word's sound (a quarter of a spoken digit), so
    a one-word cue would flash for a tenth of a second.

    Example:
        >>> ws = [WordTiming("hi", 0.1, 0.3, 0.9), WordTiming("there", 0.35, 0.6, 0.8),
        ...       WordTiming("again", 2.0, 2.4, 0.7), WordTiming("bye", 2.5, 2.6, 0.7)]
        >>> print(to_srt(ws, max_words=1), end="")
        1
        00:00:00,100 --> 00:00:00,350
        hi
        <BLANKLINE>
        2
        00:00:00,350 --> 00:00:01,350
        there
        <BLANKLINE>
        3
        00:00:02,000 --> 00:00:02,500
        again
        <BLANKLINE>
        4
        00:00:02,500 --> 00:00:03,500
        bye
    """
    cues: list[list[WordTiming]] = []
    for w in words:
        cue = cues[-1] if cues else None
        if (cue is None or len(cue) >= max_words or w.end_s - cue[0].start_s > max_duration_s
                or w.start_s - cue[-1].end_s > max_gap_s):
            cues.append([w])
        else:
            cue.append(w)
    starts = [c[0].start_s for c in cues[1:]] + [math.inf]
    ends = [max(c[-1].end_s, min(c[0].start_s + min_shown_s, next_start)) for c, next_start in zip(cues, starts)]
    blocks = [f"{n}\n{_srt_time(c[0].start_s)} --> {_srt_time(end)}\n{' '.join(w.word for w in c)}\n"
              for n, (c, end) in enumerate(zip(cues, ends), start=1)]
    return "\n".join(blocks)
