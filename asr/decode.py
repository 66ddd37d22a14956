"""CTC decoding: turn the model's per-frame scores into text.

Greedy (best-path) decoding, the CTC collapse shared by every decoder, the units a tokenizer's
labels stand for (as an LM or a lexicon writes them), and :func:`decode_utterances`, which runs
any decoder over a set of utterances on several processes, and the joining of the hypotheses of a
recording's consecutive pieces (:func:`join_hypotheses`, :func:`join_nbest`). Beam search with an
n-gram LM is :mod:`asr.beam_search`.
"""

from __future__ import annotations

import heapq
import itertools
import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import torch

from asr.lm import WORD_BOUNDARY
from asr.tokenizer import CharTokenizer, SentencePieceTokenizer, Tokenizer, encode_apart


@dataclass
class Hypothesis:
    """One decoded utterance.

    Attributes:
        text: the decoded text.
        tokens: label ids after CTC collapsing (no blanks, no repeats).
        frames: for each token, the output frame index where it was emitted (first frame of its run;
            beam search: of the alignment the search kept).
        score: total log-probability of the chosen path (greedy) or the search score.
    """

    text: str
    tokens: list[int] = field(default_factory=list)
    frames: list[int] = field(default_factory=list)
    score: float = 0.0
    # beam search: the acoustic part of the search score (flashlight's emitting-model score). With
    # log_add=False it is the log-probability of the hypothesis's best alignment; with log_add=True
    # (the default) the merging of alignments adds to ``score`` only, so it is neither that nor the
    # text's CTC log-probability (measured: up to 7 nats from either)
    am_score: float | None = None
    lm_score: float | None = None  # beam search with an LM: unweighted LM log10-probability
    words: list[str] = field(default_factory=list)  # beam search: the words (lexicon decoding)


class DecodeError(Exception):
    """Decoding cannot go on: a missing or unusable LM or lexicon (the message names the file), or
    nothing to decode."""


def ctc_collapse(path: list[int], blank_id: int, previous: int | None = None) -> tuple[list[int], list[int]]:
    """Collapse a best path: merge repeats, then drop blanks.

    ``previous`` is the label of the frame before ``path`` (default: a blank), so that a path
    given in consecutive pieces collapses as the whole would: a run that goes on across the
    boundary is not emitted again.

    Returns:
        (tokens, frames): the labels and the frame (index into ``path``) at which each label's run starts.

    >>> ctc_collapse([0, 3, 3, 0, 3, 4, 4, 0], blank_id=0)
    ([3, 3, 4], [1, 4, 5])
    >>> ctc_collapse([4, 4, 0, 5], blank_id=0, previous=4)  # the 4 began in the previous piece
    ([5], [3])
    """
    tokens: list[int] = []
    frames: list[int] = []
    previous = blank_id if previous is None else previous
    for t, label in enumerate(path):
        if label != previous and label != blank_id:
            tokens.append(label)
            frames.append(t)
        previous = label
    return tokens, frames


def check_batch(log_probs: torch.Tensor, lengths: torch.Tensor) -> None:
    """Raise ``ValueError`` unless ``log_probs`` is a (B, T, V) tensor and ``lengths`` a (B,)
    integer tensor of lengths from 0 to T, the form every decoder here takes."""
    if not isinstance(log_probs, torch.Tensor) or log_probs.dim() != 3:
        shape = tuple(log_probs.shape) if isinstance(log_probs, torch.Tensor) else type(log_probs).__name__
        raise ValueError(f"log_probs: expected a (B, T, V) tensor, got {shape}")
    if (not isinstance(lengths, torch.Tensor) or lengths.shape != log_probs.shape[:1]
            or lengths.dtype.is_floating_point or lengths.dtype.is_complex):
        shape = tuple(lengths.shape) if isinstance(lengths, torch.Tensor) else type(lengths).__name__
        raise ValueError(f"lengths: expected a ({log_probs.size(0)},) integer tensor, got {shape}")
    if len(lengths) and not (0 <= int(lengths.min()) and int(lengths.max()) <= log_probs.size(1)):
        raise ValueError(f"lengths: each must be from 0 to the {log_probs.size(1)} frames given, "
                         f"got {lengths.tolist()}")


def tokens_to_text(tokenizer: Tokenizer, tokens: Sequence[int]) -> str:
    """The text of collapsed label ids, its words separated by single spaces (a model may emit the
    space twice, or at either end, which would count as character errors).

    >>> tokens_to_text(CharTokenizer(), [1, 3, 1, 1, 4, 1])  # " a  b "
    'a b'
    """
    return " ".join(tokenizer.decode(tokens).split())


def greedy_decode(log_probs: torch.Tensor, lengths: torch.Tensor, tokenizer: Tokenizer) -> list[Hypothesis]:
    """Best-path CTC decoding of a padded batch.

    Args:
        log_probs: (B, T, V) log-probabilities (or logits: the argmax is the same; the score is
            then not a log-probability).
        lengths: (B,) valid output frames per utterance.
        tokenizer: maps label ids back to text; its ``blank_id`` is the CTC blank.

    Returns:
        One ``Hypothesis`` per utterance, in batch order.

    Raises:
        ValueError: ``log_probs`` is not (B, T, V), or ``lengths`` is not (B,) lengths within 0..T.
    """
    check_batch(log_probs, lengths)
    best, best_ids = log_probs.detach().float().max(dim=-1)  # (B, T), (B, T)
    hyps = []
    for b, length in enumerate(lengths.tolist()):
        path = best_ids[b, :length].tolist()
        tokens, frames = ctc_collapse(path, tokenizer.blank_id)
        score = float(best[b, :length].sum())
        hyps.append(Hypothesis(text=tokens_to_text(tokenizer, tokens), tokens=tokens, frames=frames, score=score))
    return hyps


def token_units(tokenizer: Tokenizer) -> list[str]:
    """The string of each label id as an LM unit: characters with ``|`` for the space, or pieces.

    >>> token_units(CharTokenizer())[:5]
    ['<blank>', '|', "'", 'a', 'b']
    """
    if isinstance(tokenizer, SentencePieceTokenizer):
        return [tokenizer.id_to_piece(i) for i in range(tokenizer.vocab_size)]
    if isinstance(tokenizer, CharTokenizer):
        return [WORD_BOUNDARY if c == " " else c for c in tokenizer.VOCAB]
    raise TypeError(f"no units known for tokenizer {type(tokenizer).__name__}")


def separator_id(tokenizer: Tokenizer) -> int | None:
    """The label that separates words (the space of a character tokenizer), or None."""
    return tokenizer.encode(" ")[0] if isinstance(tokenizer, CharTokenizer) else None


def spell(tokenizer: Tokenizer, word: str) -> list[int] | None:
    """Label ids of ``word`` as the tokenizer writes it, or None if it cannot (unknown characters).

    Leaves the tokenizer's ``oov_counts`` as they were.

    >>> spell(CharTokenizer(), "it's"), spell(CharTokenizer(), "café")
    ([11, 22, 2, 21], None)
    """
    ids, _ = encode_apart(tokenizer, word)
    return ids if ids and tokenizer.decode(ids).strip() == word else None


def best_sums(scores: Sequence[Sequence[float]]) -> Iterator[tuple[float, tuple[int, ...]]]:
    """Every way of taking one entry of each list, best total first: ``(total, indices)``, where
    ``total`` is ``sum(scores[k][indices[k]] for k ...)`` added in list order.

    Lazy: the ``m``-th combination costs O(len(scores)) heap pushes of O(log(m len(scores))), so the
    best few of a product too large to list come cheaply. Each combination's successors raise one
    index at or after its last raised one, so each is reached from exactly one other and a heap
    hands them out in order (ties: by ``indices``). No list: one empty combination; an empty list:
    none.

    Raises:
        ValueError: a list is not best first (non-increasing).

    >>> list(best_sums([[0.0, -1.0], [0.0, -0.5, -3.0]]))[:4]
    [(0.0, (0, 0)), (-0.5, (0, 1)), (-1.0, (1, 0)), (-1.5, (1, 1))]
    """
    for k, column in enumerate(scores):
        if any(not a >= b for a, b in zip(column, column[1:])):
            raise ValueError(f"scores[{k}]: not best first (non-increasing): {list(column)}")
    if any(len(column) == 0 for column in scores):
        return

    def total(indices: tuple[int, ...]) -> float:
        return sum(column[i] for column, i in zip(scores, indices))

    start = (0,) * len(scores)
    heap = [(-total(start), start, 0)]  # (-total, indices, first list whose index may be raised)
    while heap:
        negative, indices, first = heapq.heappop(heap)
        yield -negative, indices
        for k in range(first, len(scores)):
            if indices[k] + 1 < len(scores[k]):
                child = indices[:k] + (indices[k] + 1,) + indices[k + 1:]
                heapq.heappush(heap, (-total(child), child, k))


def join_hypotheses(hyps: Sequence[Hypothesis], frame_offsets: Sequence[int], separator: int | None) -> Hypothesis:
    """One hypothesis from those of a recording's consecutive pieces, whose first output frames are
    ``frame_offsets`` of the whole: texts joined by a space (empty ones left out), tokens with
    ``separator`` (if not None) between pieces at the frame where the later begins, frames shifted,
    scores summed in order (``am_score``/``lm_score``: None unless every piece has one).

    >>> join_hypotheses([Hypothesis("a b", [3, 1, 4], [0, 2, 3], -1.0), Hypothesis("", score=-0.5),
    ...                  Hypothesis("c", [5], [1], -2.0)], [0, 10, 20], separator=1)
    Hypothesis(text='a b c', tokens=[3, 1, 4, 1, 5], frames=[0, 2, 3, 20, 21], score=-3.5, am_score=None, lm_score=None, words=[])
    """
    tokens: list[int] = []
    frames: list[int] = []
    for hyp, offset in zip(hyps, frame_offsets):
        if tokens and hyp.tokens and separator is not None:
            tokens.append(separator)
            frames.append(offset)
        tokens += hyp.tokens
        frames += [f + offset for f in hyp.frames]

    def summed(values: list[float | None]) -> float | None:
        return None if any(v is None for v in values) else sum(values)

    return Hypothesis(text=" ".join(h.text for h in hyps if h.text), tokens=tokens, frames=frames,
                      score=sum(h.score for h in hyps), am_score=summed([h.am_score for h in hyps]),
                      lm_score=summed([h.lm_score for h in hyps]), words=[w for h in hyps for w in h.words])


JOINS_PER_ENTRY = 4  # join_nbest looks at most this many joins per entry it returns (for repeated texts)


def join_nbest(nbests: Sequence[Sequence[Hypothesis]], frame_offsets: Sequence[int], separator: int | None,
               n: int) -> list[Hypothesis]:
    """The ``n`` best joins (``join_hypotheses``) of one hypothesis of each piece's n-best list (best
    first; an empty one counts as one empty hypothesis), by the sum of their scores, best first. A
    join whose text an earlier one has is left out, and at most ``JOINS_PER_ENTRY * n`` joins are
    looked at, so fewer than ``n`` may come back; none when every list is empty.

    >>> pieces = [[Hypothesis("a", score=-1.0), Hypothesis("a b", score=-1.25)], [Hypothesis("b c", score=-1.0),
    ...           Hypothesis("c", score=-1.5), Hypothesis("d", score=-4.0)]]
    >>> [(h.text, h.score) for h in join_nbest(pieces, [0, 50], None, 4)]  # "a b" + "c" (-2.75): left out
    [('a b c', -2.0), ('a b b c', -2.25), ('a c', -2.5), ('a d', -5.0)]
    """
    if not any(nbests):
        return []
    lists = [list(nbest) or [Hypothesis(text="")] for nbest in nbests]
    best = itertools.islice(best_sums([[h.score for h in hyps] for hyps in lists]), JOINS_PER_ENTRY * n)
    joins = (join_hypotheses([hyps[i] for hyps, i in zip(lists, indices)], frame_offsets, separator)
             for _, indices in best)
    return distinct_texts(joins, n)


def distinct_texts(hyps: Iterable[Hypothesis], n: int) -> list[Hypothesis]:
    """The first ``n`` of ``hyps`` (taken lazily) whose texts differ: a later one with an earlier's
    text is left out.

    >>> [h.text for h in distinct_texts([Hypothesis("a"), Hypothesis("a"), Hypothesis("b"), Hypothesis("c")], 2)]
    ['a', 'b']
    """
    kept: list[Hypothesis] = []
    seen: set[str] = set()
    for hyp in hyps:
        if len(kept) == n:
            break
        if hyp.text not in seen:
            seen.add(hyp.text)
            kept.append(hyp)
    return kept


Decoder = Callable[[torch.Tensor, torch.Tensor], list[Hypothesis]]  # (B, T, V), (B,) -> hypotheses

_FORKED: tuple[Decoder, Sequence[torch.Tensor]] | None = None  # what forked decoding workers read


def _best(decoder: Decoder, lp: torch.Tensor) -> Hypothesis:
    """The best hypothesis of one utterance's (T, V) log-probs."""
    return decoder(lp[None], torch.tensor([lp.size(0)]))[0]  # lp[None]: (1, T, V)


def _decode_one(index: int) -> Hypothesis:
    decoder, log_probs = _FORKED
    return _best(decoder, log_probs[index])


def decode_utterances(decoder: Decoder, log_probs: Sequence[torch.Tensor], jobs: int = 1) -> list[Hypothesis]:
    """The best hypothesis of each utterance's (T, V) log-probs, in order, on ``jobs`` processes.

    Beam search holds the GIL, so ``jobs`` > 1 forks worker processes (where the platform can
    fork), which share the decoder, its LM and the log-probs with this one; the result is the same
    as with one job. ``jobs`` <= 0 means one per CPU core.

    Example:
        >>> lp = torch.log_softmax(torch.randn(5, 29), dim=-1)  # (T, V)
        >>> greedy = lambda x, n: greedy_decode(x, n, CharTokenizer())
        >>> [h.text for h in decode_utterances(greedy, [lp])] == [greedy(lp[None], torch.tensor([5]))[0].text]
        True
    """
    global _FORKED
    jobs = min(jobs if jobs > 0 else os.cpu_count() or 1, len(log_probs))
    if jobs <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        return [_best(decoder, lp) for lp in log_probs]
    log_probs = [lp.detach().float().cpu() for lp in log_probs]
    _FORKED = (decoder, log_probs)
    try:
        with multiprocessing.get_context("fork").Pool(jobs) as pool:
            return pool.map(_decode_one, range(len(log_probs)), chunksize=max(1, len(log_probs) // (8 * jobs)))
    finally:
        _FORKED = None
