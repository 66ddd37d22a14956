"""Tune beam search's LM weight (alpha) and word score (beta) on a dev set.

The acoustic model runs once: :func:`dev_log_probs` keeps each utterance's log-probabilities on the
CPU (``T x V x 4`` bytes each, about 11 MB per audio hour for 29 characters at 50 frames/s), and
:func:`tune_weights` decodes them again for every (alpha, beta) of a grid, then optionally refines
around the best pair on finer grids (halving the steps each round).
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from asr.checkpoint import save_checkpoint
from asr.beam_search import BeamSearchDecoder
from asr.decode import Decoder, decode_utterances, greedy_decode
from asr.evaluate import batch_log_probs, none_readable
from asr.manifest import Utterance
from asr.metrics import error_report
from asr.outputs import check_output
from asr.paths import file_digest
from asr.recognizer import Recognizer
from asr.text import normalize_text
from asr.tokenizer import Tokenizer

logger = logging.getLogger(__name__)


@dataclass
class TuneResult:
    """The best (alpha, beta) with its WER, and every point tried as (alpha, beta, WER), in order."""

    lm_weight: float
    word_score: float
    wer: float
    tried: list[tuple[float, float, float]] = field(default_factory=list)

    def table(self) -> str:
        """One line per point tried: ``alpha beta WER%``, the best one marked with ``*``."""
        rows = [f"{'alpha':>7} {'beta':>7} {'WER %':>7}"]
        for a, b, wer in self.tried:
            mark = " *" if (a, b) == (self.lm_weight, self.word_score) else ""
            rows.append(f"{a:7.3f} {b:7.3f} {100 * wer:7.2f}{mark}")
        return "\n".join(rows)


def dev_log_probs(
    recognizer: Recognizer, utts: Sequence[Utterance], batch_s: float = 300.0
) -> tuple[list[Utterance], list[torch.Tensor]]:
    """Run the model once over ``utts``; returns the readable utterances and their (T, V) log-probs.

    Raises:
        DecodeError: no utterance could be read.
    """
    outputs: list[torch.Tensor | None] = [None] * len(utts)
    for indices, log_probs, out_lens, _ in batch_log_probs(recognizer, utts, batch_s):
        for b, index in enumerate(indices):
            outputs[index] = log_probs[b, : int(out_lens[b])].cpu().clone()  # (T_b, V)
    kept = [(u, lp) for u, lp in zip(utts, outputs) if lp is not None]
    if len(kept) < len(utts):
        logger.warning("skipped %d of %d utterances with unreadable audio", len(utts) - len(kept), len(utts))
    if not kept:
        raise none_readable(utts, "tune on")
    return [u for u, _ in kept], [lp for _, lp in kept]


@dataclass(frozen=True)
class LogProbCache:
    """A file to keep a set's log-probs in (see :func:`open_cache`) and what it held when opened."""

    path: Path
    saved: dict  # an earlier cache's {"key", "kept", "log_probs"}, or {} when there was none


def open_cache(cache: str | Path) -> LogProbCache:
    """The log-prob cache at ``cache`` (a link followed), read once, when it is certain that writing
    there loses nothing and can succeed; call it before the model is loaded, so that a bad path is
    refused before the work.

    Raises:
        OutputError: ``cache`` holds something other than a log-prob cache (a folder, another file),
            or its folder cannot be made or written (a file in its path, a folder the system refuses).
    """
    saved: dict = {}

    def is_cache(path: Path) -> bool:  # anything else at the path is the user's
        nonlocal saved
        saved = _read_cache(path) or {}
        return bool(saved)

    path = check_output(cache, is_cache, "a log-prob cache of asr tune-lm")
    return LogProbCache(path, saved)


def cached_dev_log_probs(
    recognizer: Recognizer, utts: Sequence[Utterance], cache: LogProbCache, checkpoint: str | Path,
    batch_s: float = 300.0,
) -> tuple[list[Utterance], list[torch.Tensor]]:
    """:func:`dev_log_probs`, kept in the file :func:`open_cache` opened for the next call on the
    same checkpoint and utterances: the checkpoint's bytes (a digest, not its name or time: a copy
    or a moved file still matches, another model written in its place does not) and each
    utterance's audio file (its path, size and modification time), offset and duration must match,
    else it is computed again and the file replaced.
    """
    key = {"checkpoint_blake2b": file_digest(checkpoint, "blake2b"),  # about 0.3 s for a 120 MB checkpoint
           "utts": [(u.audio_filepath, _stat_key(u.audio_filepath), u.offset, u.duration) for u in utts]}
    if cache.saved.get("key") == key:
        logger.info("log-probs of %d utterances from %s", len(cache.saved["kept"]), cache.path)
        return [utts[i] for i in cache.saved["kept"]], cache.saved["log_probs"]
    if cache.saved:
        logger.info("%s was made for another checkpoint or set; computing again", cache.path)
    kept_utts, log_probs = dev_log_probs(recognizer, utts, batch_s=batch_s)
    index = {id(u): i for i, u in enumerate(utts)}
    payload = {"key": key, "kept": [index[id(u)] for u in kept_utts], "log_probs": log_probs}
    save_checkpoint(payload, cache.path)  # atomic: a temporary file, then renamed
    return kept_utts, log_probs


def _stat_key(path: str) -> tuple[int, int] | None:
    """An audio file's (size, modification time in ns), or None for one that cannot be read (it is
    skipped, and stays skipped while it is missing)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns


def _read_cache(path: Path) -> dict | None:
    """What the log-prob cache at ``path`` holds, or None when the file is not such a cache."""
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 (any file torch cannot read is not a cache)
        return None
    return saved if isinstance(saved, dict) and {"key", "kept", "log_probs"} <= set(saved) else None


def greedy_wer(tokenizer: Tokenizer, log_probs: Sequence[torch.Tensor], refs: Sequence[str]) -> float:
    """Word error rate of greedy CTC decoding of per-utterance (T, V) log-probs."""
    greedy = lambda lp, lengths: greedy_decode(lp, lengths, tokenizer)  # noqa: E731
    return decode_wer(greedy, log_probs, [normalize_text(r) for r in refs])


def decode_wer(decoder: Decoder, log_probs: Sequence[torch.Tensor], refs: Sequence[str], jobs: int = 1) -> float:
    """Word error rate of ``decoder`` ((1, T, V), (1,) -> hypotheses) on per-utterance (T, V)
    log-probs against normalized refs, decoded on ``jobs`` processes (:func:`decode_utterances`); the
    hypotheses are normalized as the refs are (a lexicon of upper-case words writes them so)."""
    hyps = [normalize_text(h.text) for h in decode_utterances(decoder, log_probs, jobs)]
    return error_report(list(refs), hyps).wer


def tune_weights(
    decoder: BeamSearchDecoder, log_probs: Sequence[torch.Tensor], refs: Sequence[str],
    lm_weights: Sequence[float], word_scores: Sequence[float], refine_rounds: int = 0, jobs: int = 1,
) -> TuneResult:
    """Search (alpha, beta) for the lowest WER.

    Every pair of ``lm_weights`` x ``word_scores`` is decoded; then each of ``refine_rounds`` rounds
    tries the 3 x 3 pairs around the best one at half the previous step (of each grid's smallest
    spacing). Ties keep the pair found first.

    Args:
        decoder: a beam-search decoder with an LM (its weights are replaced, its LM reused).
        log_probs: per-utterance (T, V) log-probabilities (see :func:`dev_log_probs`).
        refs: the utterances' transcripts (normalized here).
        lm_weights, word_scores: the grid.
        refine_rounds: rounds of local refinement after the grid (0: grid only).
        jobs: decoding processes (<= 0: one per CPU core); the WERs do not depend on it.

    Returns:
        The best pair, its WER and every pair tried.

    Raises:
        ValueError: an empty grid, or log-probs and refs of different lengths.
    """
    if not lm_weights or not word_scores:
        raise ValueError("tune_weights: empty grid")
    if len(log_probs) != len(refs):
        raise ValueError(f"{len(log_probs)} utterances but {len(refs)} references")
    refs = [normalize_text(r) for r in refs]
    tried: dict[tuple[float, float], float] = {}

    def score(a: float, b: float) -> float:
        a, b = round(a, 6), round(b, 6)
        if (a, b) not in tried:
            start = time.perf_counter()
            tried[(a, b)] = decode_wer(decoder.with_weights(a, b), log_probs, refs, jobs)
            logger.info("lm_weight=%g word_score=%g wer=%.4f decode_s=%.1f", a, b, tried[(a, b)],
                        time.perf_counter() - start)
        return tried[(a, b)]

    for a, b in itertools.product(lm_weights, word_scores):
        score(a, b)
    steps = [_spacing(lm_weights), _spacing(word_scores)]
    for _ in range(refine_rounds):
        steps = [s / 2 for s in steps]
        best_a, best_b = min(tried, key=tried.get)
        for da, db in itertools.product((-1, 0, 1), repeat=2):
            score(best_a + da * steps[0], best_b + db * steps[1])
    (a, b), wer = min(tried.items(), key=lambda item: item[1])
    return TuneResult(lm_weight=a, word_score=b, wer=wer, tried=[(x, y, w) for (x, y), w in tried.items()])


def _spacing(values: Sequence[float]) -> float:
    """The smallest gap between distinct grid values (1.0 for a one-value grid)."""
    distinct = sorted(set(values))
    return min((b - a for a, b in zip(distinct, distinct[1:])), default=1.0)


MAX_GRID_POINTS = 1000  # values of one grid axis; each (alpha, beta) pair decodes the whole dev set


def parse_grid(spec: str) -> list[float]:
    """A grid from ``"0,0.5,1"`` (values) or ``"0:2:0.5"`` (start:stop:step, stop included).

    >>> parse_grid("0:1:0.25"), parse_grid("-1, 2")
    ([0.0, 0.25, 0.5, 0.75, 1.0], [-1.0, 2.0])

    Raises:
        ValueError: malformed text, a range with a non-positive step, a value that is not finite, no
            value (a range whose start is above its stop), or more than ``MAX_GRID_POINTS`` values
            (each is a decoding of the whole dev set).
    """
    try:
        if ":" in spec:
            if spec.count(":") != 2:
                raise ValueError("a range has three parts")
            start, stop, step = (float(x) for x in spec.split(":"))
            values = [start, stop, step]
        else:
            values = [float(x) for x in spec.split(",") if x.strip()]
        if not all(math.isfinite(v) for v in values):
            raise ValueError("the values must be finite numbers")
        if ":" not in spec:
            count = len(values)
        elif step <= 0:
            raise ValueError("the step must be positive")
        else:
            count = int(round((stop - start) / step)) + 1
    except ValueError as e:
        raise ValueError(f"grid {spec!r}: expected 'a,b,c' or 'start:stop:step' ({e})") from None
    if count > MAX_GRID_POINTS:  # e.g. a step typed as 1e-9: the search would not end
        raise ValueError(f"grid {spec!r}: {count:,} values; at most {MAX_GRID_POINTS:,} are tried")
    if count <= 0:
        raise ValueError(f"grid {spec!r}: no values" + (" (the start is above the stop)" if ":" in spec else ""))
    if ":" in spec:
        return [round(start + i * step, 6) for i in range(max(count, 0))]
    return values
