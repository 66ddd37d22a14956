"""Building n-gram language models from text: a pure-Python Kneser-Ney estimator, or KenLM's tools.

``build_lm`` turns text files into an ARPA (or KenLM binary) model. It runs KenLM's ``lmplz`` (and
``build_binary`` for a binary output) when they are on ``PATH`` or in ``$KENLM_BIN`` (see
``tools/build_kenlm.sh``); otherwise :func:`estimate_kneser_ney` estimates the model here:
interpolated modified Kneser-Ney (Chen & Goodman 1998, as ``lmplz`` does it):

* the highest order keeps raw counts; a lower-order n-gram's count is its number of distinct
  left extensions (its continuation count), except that n-grams starting with ``<s>`` keep raw counts;
* three discounts per order, ``D_k = k - (k + 1) Y t_{k+1} / t_k`` with ``Y = t_1 / (t_1 + 2 t_2)``
  and ``t_k`` the number of n-grams with count ``k``; a discount that cannot be computed (tiny text)
  or falls outside ``(0, k]`` takes the fallback ``(0.5, 1.0, 1.5)[k - 1]``;
* ``p(w | h) = (a(hw) - D(a(hw))) / a(h.) + gamma(h) p(w | h')`` where ``h'`` drops the oldest word;
  unigrams interpolate with the uniform distribution over the vocabulary (``<unk>`` and ``</s>``
  included, ``<s>`` excluded), so ``<unk>`` gets the uniform share;
* pruning (``prune[n - 1]`` is the threshold of order ``n``, lmplz's ``--prune``): n-grams whose raw
  count is at most the threshold are dropped and their mass moves into ``gamma(h)``, so every
  conditional distribution still sums to 1. Thresholds must not decrease with the order, which keeps
  every prefix and suffix of a kept n-gram in the model (ARPA requires it).

In the ARPA file ``gamma(h)`` is ``h``'s backoff weight. Text is normalized with
:func:`asr.text.normalize_text`, the policy of the transcripts, one sentence per line. A
character-level model (``units="chars"``, for lexicon-free decoding with a character tokenizer)
spells each sentence as its characters with ``|`` for the space.

Example:
    >>> lm = estimate_kneser_ney([["a", "b"], ["a", "c"], ["a", "b"]], order=2)
    >>> round(sum(10 ** lm.log10_prob(w, ["a"]) for w in lm.predictable_words()), 6)
    1.0
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import subprocess
import tempfile
import typing
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from asr.lm import BOS, EOS, KENLM_MAX_ORDER, UNK, WORD_BOUNDARY, LMError, NgramModel, is_lm_file
from asr.manifest import manifest_as_text_error
from asr.outputs import atomic_output, check_output
from asr.paths import path_list
from asr.text import read_normalized_lines

logger = logging.getLogger(__name__)

FALLBACK_DISCOUNTS = (0.5, 1.0, 1.5)
Units = Literal["words", "chars"]
Backend = Literal["auto", "kenlm", "python"]


def sentence_units(text: str, units: Units = "words") -> list[str]:
    """The LM units of one normalized sentence.

    >>> sentence_units("the cat"), sentence_units("the cat", "chars")
    (['the', 'cat'], ['t', 'h', 'e', '|', 'c', 'a', 't'])
    """
    if units == "chars":
        return [WORD_BOUNDARY if c == " " else c for c in text]
    return text.split()


def read_sentences(paths: Iterable[str | Path], units: Units = "words") -> Iterator[list[str]]:
    """Normalized sentences (one per non-empty line) of text files, as lists of units."""
    for text in read_normalized_lines(paths, LMError):
        yield sentence_units(text, units)


def _check_text(path: str | Path) -> None:
    """Refuse an input that is not text to model although it reads as text: an n-gram LM, or a
    manifest (its JSON keys, paths and durations would become the LM's words). An unreadable file
    is left to the reading, which names it.

    Raises:
        LMError: ``path`` holds an LM or a manifest.
    """
    try:
        is_lm = is_lm_file(Path(path))
    except OSError:
        return
    if is_lm:
        raise LMError(f"{path}: an n-gram LM, not text")
    error = manifest_as_text_error(path)
    if error:
        raise LMError(error)


def _discounts(counts: Iterable[int], order: int, fallbacks: list[str]) -> tuple[float, float, float]:
    """Modified Kneser-Ney discounts (D1, D2, D3+) from the adjusted counts of one order; a discount
    that takes its fallback is noted in ``fallbacks``."""
    t = Counter(c for c in counts if c <= 4)
    if t[1] == 0 or t[2] == 0:
        fallbacks.append(f"order {order}: all three (no n-gram seen {'once' if t[1] == 0 else 'twice'})")
        return FALLBACK_DISCOUNTS
    y = t[1] / (t[1] + 2 * t[2])
    discounts = []
    for k in (1, 2, 3):
        d = k - (k + 1) * y * t[k + 1] / t[k] if t[k] else float("nan")
        if not 0.0 < d <= k:
            fallbacks.append(f"order {order}: D{k}={d:.3f}")
            d = FALLBACK_DISCOUNTS[k - 1]
        discounts.append(d)
    return discounts[0], discounts[1], discounts[2]


def _thresholds(prune: Sequence[int], order: int) -> list[int]:
    """lmplz's --prune: one threshold per order, the last repeated; 0 for unigrams, non-decreasing."""
    if not prune:
        return [0] * order
    if len(prune) > order:
        raise LMError(f"prune={list(prune)}: {len(prune)} thresholds for an order-{order} model (one per order at most)")
    values = [int(p) for p in prune] + [int(prune[-1])] * max(0, order - len(prune))
    if values[0] != 0 or any(b < a for a, b in zip(values, values[1:])) or min(values) < 0:
        raise LMError(f"prune={list(prune)}: thresholds must start at 0 (unigrams are never pruned) "
                         "and must not decrease with the order")
    return values[:order]


def estimate_kneser_ney(
    sentences: Iterable[Sequence[str]], order: int, prune: Sequence[int] = ()
) -> NgramModel:
    """Estimate an interpolated modified Kneser-Ney model (see the module docstring).

    Args:
        sentences: lists of units (words), without ``<s>``/``</s>``.
        order: the n-gram order N >= 1.
        prune: raw-count thresholds per order (lmplz's ``--prune``, e.g. ``(0, 0, 1)`` drops singleton
            trigrams and above); empty: no pruning.

    Returns:
        The model, with log10 probabilities and backoffs.

    Raises:
        ValueError: order < 1.
        LMError: bad thresholds, or no sentence with at least one unit.
    """
    if order < 1:
        raise ValueError(f"order={order}: must be >= 1")
    thresholds = _thresholds(prune, order)
    raw: list[Counter[tuple[str, ...]]] = [Counter() for _ in range(order)]  # raw[n - 1]: n-grams
    for sentence in sentences:
        units = (BOS, *sentence, EOS)
        for n in range(1, order + 1):
            raw[n - 1].update(units[i:i + n] for i in range(len(units) - n + 1))
    if sum(raw[0].values()) <= 2 * raw[0][(BOS,)]:  # only "<s> </s>"
        raise LMError("no text to estimate a language model from (all sentences empty)")
    # adjusted counts: raw for the top order and for n-grams starting with <s>, else continuation
    adjusted: list[dict[tuple[str, ...], int]] = [{} for _ in range(order)]
    adjusted[order - 1] = dict(raw[order - 1])
    for n in range(order - 1, 0, -1):
        left_extensions = Counter(g[1:] for g in raw[n])
        adjusted[n - 1] = {g: (c if g[0] == BOS else left_extensions[g]) for g, c in raw[n - 1].items()}
    del adjusted[0][(BOS,)]

    ngrams: list[dict[tuple[str, ...], tuple[float, float]]] = [{} for _ in range(order)]
    probs: list[dict[tuple[str, ...], float]] = [{} for _ in range(order)]
    # unigrams, interpolated with the uniform distribution over the vocabulary (with <unk>, no <s>)
    fallbacks: list[str] = []
    d1 = _discounts(adjusted[0].values(), 1, fallbacks)
    total = sum(adjusted[0].values())
    gamma = sum(d1[min(a, 3) - 1] for a in adjusted[0].values()) / total
    vocab_size = len(adjusted[0]) + (0 if (UNK,) in adjusted[0] else 1)
    probs[0] = {g: (a - d1[min(a, 3) - 1]) / total + gamma / vocab_size for g, a in adjusted[0].items()}
    probs[0].setdefault((UNK,), gamma / vocab_size)
    backoffs: list[dict[tuple[str, ...], float]] = [{} for _ in range(order)]
    for n in range(2, order + 1):
        discounts = _discounts(adjusted[n - 1].values(), n, fallbacks)
        kept = {g for g in adjusted[n - 1] if raw[n - 1][g] > thresholds[n - 1]}
        context_total: defaultdict[tuple[str, ...], float] = defaultdict(float)
        freed: defaultdict[tuple[str, ...], float] = defaultdict(float)  # discounts + pruned counts
        for g, a in adjusted[n - 1].items():
            context_total[g[:-1]] += a
            freed[g[:-1]] += discounts[min(a, 3) - 1] if g in kept else a
        gammas = {h: freed[h] / context_total[h] for h in context_total}
        for g in kept:
            a = adjusted[n - 1][g]
            lower = probs[n - 2][g[1:]]
            probs[n - 1][g] = (a - discounts[min(a, 3) - 1]) / context_total[g[:-1]] + gammas[g[:-1]] * lower
        backoffs[n - 2] = gammas
        logger.info("order=%d ngrams=%d pruned=%d discounts=%s", n, len(kept),
                    len(adjusted[n - 1]) - len(kept), ",".join(f"{d:.3f}" for d in discounts))
    if fallbacks:  # one line: a tiny text, or a character model's few and frequent unigrams
        logger.warning("discounts out of range or not computable from this text, fallback %s used (as lmplz "
                       "--discount_fallback): %s", FALLBACK_DISCOUNTS, "; ".join(fallbacks))
    for n in range(1, order + 1):
        table = ngrams[n - 1]
        for g, p in probs[n - 1].items():
            table[g] = (math.log10(p), _log10(backoffs[n - 1].get(g, 1.0)))
        if n == 1:
            table[(BOS,)] = (-99.0, _log10(backoffs[0].get((BOS,), 1.0)))
    return NgramModel(order=order, ngrams=ngrams)


def _log10(x: float) -> float:
    return math.log10(x) if x > 0 else -99.0


def find_kenlm() -> tuple[Path, Path | None] | None:
    """Paths of KenLM's ``lmplz`` and ``build_binary`` (``$KENLM_BIN``, then ``PATH``), or None."""
    where = os.environ.get("KENLM_BIN")
    lmplz = shutil.which("lmplz", path=where) if where else shutil.which("lmplz")
    if lmplz is None:
        return None
    build_binary = shutil.which("build_binary", path=str(Path(lmplz).parent)) or shutil.which("build_binary")
    return Path(lmplz), Path(build_binary) if build_binary else None


def is_binary_path(path: str | Path) -> bool:
    """Whether ``path`` names a KenLM binary by its suffix (``.bin``, ``.binary``, ``.klm``, in any
    case).

    Example:
        >>> is_binary_path("lm.klm"), is_binary_path("LM.BIN"), is_binary_path("lm.arpa")
        (True, True, False)
    """
    return Path(path).suffix.lower() in (".bin", ".binary", ".klm")


@dataclass
class BuildReport:
    """What ``build_lm`` did: the output file, the tool used, sentence count and n-gram counts."""

    path: Path
    backend: Literal["kenlm", "python"]
    sentences: int
    ngram_counts: list[int]


def build_lm(
    texts: Sequence[str | Path] | str | Path, order: int, out: str | Path, prune: Sequence[int] = (),
    units: Units = "words", backend: Backend = "auto",
) -> BuildReport:
    """Build an n-gram LM from text files and write it to ``out`` (ARPA, or KenLM binary by suffix).

    Args:
        texts: text files, one sentence per line (normalized here); a single path is one file.
        order: n-gram order.
        out: ``*.arpa`` for ARPA text; ``*.bin``/``*.binary``/``*.klm`` for a KenLM binary (needs
            ``build_binary``).
        prune: lmplz-style thresholds per order (see :func:`estimate_kneser_ney`).
        units: ``"words"``, or ``"chars"`` for a character-level model (lexicon-free decoding).
        backend: ``"kenlm"`` needs ``lmplz``; ``"python"`` uses the estimator here; ``"auto"`` prefers KenLM.

    Raises:
        LMError: an order outside 1..``KENLM_MAX_ORDER`` (beam search could not load the model),
            unknown ``units`` or ``backend``, unreadable or empty text, an LM or a manifest given as
            text, bad thresholds, a missing KenLM tool, or a KenLM failure.
    """
    for name, value, allowed in (("units", units, typing.get_args(Units)),
                                 ("backend", backend, typing.get_args(Backend))):
        if value not in allowed:
            raise LMError(f"{name}={value!r}: must be one of {', '.join(allowed)}")
    texts = path_list(texts)
    if not 1 <= order <= KENLM_MAX_ORDER:
        raise LMError(f"order {order}: must be from 1 to {KENLM_MAX_ORDER} (the highest order KenLM loads)")
    out = Path(out)
    tools = find_kenlm() if backend != "python" else None
    if backend == "kenlm" and tools is None:
        raise LMError("lmplz not found on PATH or in $KENLM_BIN (build it with tools/build_kenlm.sh)")
    if is_binary_path(out) and (tools is None or tools[1] is None):
        raise LMError(f"{out}: a binary LM needs KenLM's build_binary (tools/build_kenlm.sh); "
                      "write an .arpa file instead")
    _thresholds(prune, order)  # fail before reading the text
    for text in texts:
        _check_text(text)
    out = check_output(out, is_lm_file, "an n-gram LM (ARPA or KenLM binary)")
    arpa = check_output(out.with_suffix(".arpa"), is_lm_file, "an ARPA LM") if is_binary_path(out) else out
    out.parent.mkdir(parents=True, exist_ok=True)
    sentences = list(read_sentences(texts, units))
    if not any(sentences):  # the estimator's own error names no file (nor does lmplz's)
        raise LMError(f"{', '.join(map(str, texts))}: no text to estimate a language model from (no line holds a "
                      "word once normalized)")
    with atomic_output(arpa) as arpa_tmp:  # renamed into place once complete
        if tools is None:
            model = estimate_kneser_ney(sentences, order, prune)
            model.write_arpa(arpa_tmp)
            counts, used = [len(t) for t in model.ngrams], "python"
        else:
            _run_lmplz(tools[0], sentences, order, prune, arpa_tmp)
            counts, used = _arpa_counts(arpa_tmp), "kenlm"
        if is_binary_path(out):
            with atomic_output(out) as binary_tmp:
                _run([str(tools[1]), str(arpa_tmp), str(binary_tmp)], f"{out}: build_binary")
    return BuildReport(path=out, backend=used, sentences=len(sentences), ngram_counts=counts)


def _run_lmplz(lmplz: Path, sentences: list[list[str]], order: int, prune: Sequence[int], arpa: Path) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".txt", encoding="utf-8", delete=False) as f:
        f.writelines(" ".join(s) + "\n" for s in sentences)
    try:
        cmd = [str(lmplz), "-o", str(order), "--text", f.name, "--arpa", str(arpa), "--discount_fallback",
               "-S", "20%", "-T", tempfile.gettempdir()]
        if prune:
            cmd += ["--prune", *map(str, prune)]
        _run(cmd, f"{arpa}: lmplz")
    finally:
        os.unlink(f.name)


def _run(cmd: list[str], what: str) -> None:
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
        raise LMError(f"{what} failed (exit {result.returncode}): {lines[-1] if lines else 'no message'}")


def _arpa_counts(path: Path) -> list[int]:
    counts = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.startswith("ngram "):
                counts.append(int(line.split("=")[1]))
            elif line.startswith("\\1-grams"):
                break
    return counts
