"""CTC beam search with an optional KenLM n-gram LM, through flashlight-text.

* lexicon decoding: only words of a lexicon are emitted; the lexicon is a file, a word list, or the
  LM's vocabulary, spelled with the tokenizer's units. The LM scores words; ``lm_weight`` (alpha)
  scales its log10-probability and ``word_score`` (beta) is added per word.
* lexicon-free decoding: any unit sequence; the LM, if any, is a token-level model (a character
  model from ``asr build-lm --units chars``: ``|`` stands for the space).

With a character tokenizer the space ends a word: a lexicon spelling is the word's characters plus
the space, and one extra frame in which only the space is possible is appended to each utterance so
that the last word (which the model ends without a space) can finish. SentencePiece words start
with a "▁" piece and need no separator; the blank serves as flashlight's silence token then.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import numbers
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import torch

from asr.decode import (DecodeError, Hypothesis, check_batch, ctc_collapse, distinct_texts, separator_id, spell,
                        token_units, tokens_to_text)
from asr.lm import LMError, lm_vocabulary
from asr.text import read_error_cause
from asr.tokenizer import CharTokenizer, Tokenizer

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class BeamSearchConfig:
    """Beam-search settings (flashlight-text's decoder options)."""

    beam_size: int = 50  # hypotheses kept after each frame
    beam_size_token: int = 0  # most likely tokens tried per frame (0: all of them)
    beam_threshold: float = 25.0  # drop hypotheses scoring this much (natural log) below the best
    lm_weight: float = 2.0  # alpha: weight of the LM log10-probability
    word_score: float = 0.0  # beta: added per word (lexicon-free: per frame of the char model's space)
    unk_score: float = -math.inf  # score of a word outside the lexicon (-inf: never emitted)
    nbest: int = 1  # hypotheses (distinct texts) returned per utterance by ``decode_nbest``
    # A hypothesis's acoustic score: True sums the probabilities of its CTC alignments (the
    # probability of the text); False keeps its best alignment only (Viterbi: without an LM, beam
    # search then gives greedy decoding's text). Summing gained 1.3 WER points in
    # recipes/mini_librispeech/RESULTS.md.
    log_add: bool = True

    def __post_init__(self) -> None:
        """Raises ``ValueError`` as ``"<field>=<value>: must be ..."``, for the first bad field."""
        for name, least in (("beam_size", 1), ("beam_size_token", 0), ("nbest", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):  # numpy integers pass
                raise ValueError(f"{name}={value!r}: must be a whole number")
            object.__setattr__(self, name, int(value))
            if getattr(self, name) < least:
                raise ValueError(f"{name}={getattr(self, name)}: must be >= {least}")
        if self.nbest > self.beam_size:  # it would return beam_size hypotheses without a word
            raise ValueError(f"nbest={self.nbest}: must be at most the beam size ({self.beam_size}), the hypotheses "
                             "a beam search keeps")
        if not self.beam_threshold > 0:  # NaN too; inf keeps every hypothesis the beam size allows
            raise ValueError(f"beam_threshold={self.beam_threshold:g}: must be positive")
        for name in ("lm_weight", "word_score"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name}={getattr(self, name):g}: must be a finite number")
        if math.isnan(self.unk_score) or self.unk_score == math.inf:
            raise ValueError(f"unk_score={self.unk_score:g}: must be a finite number or -inf")


def read_lexicon(path: str | Path) -> dict[str, list[list[str]]]:
    """Read a lexicon file: ``word [unit unit ...]`` per line; a word may repeat with other spellings.

    A line with only the word leaves its spelling to the tokenizer. Units are the tokenizer's (see
    :func:`token_units`); a character model's trailing ``|`` is optional.

    Raises:
        DecodeError: unreadable file or no words in it.
    """
    lexicon: dict[str, list[list[str]]] = {}
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                fields = line.split()
                if fields:
                    spellings = lexicon.setdefault(fields[0], [])
                    if len(fields) > 1:
                        spellings.append(fields[1:])
    except (OSError, UnicodeDecodeError) as e:
        raise DecodeError(f"{path}: cannot read the lexicon ({read_error_cause(e)})") from None
    if not lexicon:
        raise DecodeError(f"{path}: the lexicon has no words")
    return lexicon


@contextlib.contextmanager
def _captured_stderr() -> Iterator[list[str]]:
    """Send file descriptor 2 (KenLM's progress bars) to a buffer; its lines land in the list."""
    lines: list[str] = []
    with tempfile.TemporaryFile(mode="w+b") as buffer:
        saved = os.dup(2)
        os.dup2(buffer.fileno(), 2)
        try:
            yield lines
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            buffer.seek(0)
            lines.extend(buffer.read().decode("utf-8", "replace").splitlines())


def _check_lm_file(path: Path) -> None:
    if not path.is_file():
        raise DecodeError(f"{path}: {'a folder, not a' if path.is_dir() else 'no such'} language model file")


def _load_kenlm(path: Path, dictionary):
    from flashlight.lib.text.decoder.kenlm import KenLM

    _check_lm_file(path)
    try:
        with _captured_stderr():
            return KenLM(str(path), dictionary)
    except RuntimeError as e:
        cause = [line for line in str(e).splitlines() if line.strip()]
        raise DecodeError(f"{path}: KenLM cannot load it ({cause[-1] if cause else 'no message'})") from None


class BeamSearchDecoder:
    """CTC beam search with an optional n-gram LM (flashlight-text; see the module docstring).

    Args:
        tokenizer: the model's tokenizer (label ids <-> text).
        lm: a KenLM model, ARPA or binary; None: no LM.
        lexicon: a lexicon file (:func:`read_lexicon`) or a list of words; None: the LM's words for a
            word LM (ARPA, or a KenLM binary's stored vocabulary), lexicon-free for a token-level LM (its words are all token units)
            or without an LM.
        lexicon_free: force lexicon-free decoding (then ``lm`` must be token-level, if given: a word LM is refused).
        config: beam size, weights, thresholds, N-best.

    Raises:
        DecodeError: missing or unloadable LM or lexicon, a binary LM without vocabulary or lexicon, a
            lexicon none of whose words the tokenizer can spell, or a word LM for lexicon-free decoding.

    Example:
        >>> from asr.tokenizer import CharTokenizer
        >>> dec = BeamSearchDecoder(CharTokenizer(), lexicon=["ab", "ba"])
        >>> log_probs = torch.full((1, 3, 29), -10.0)  # (B, T, V); frames: a, b, blank
        >>> log_probs[0, 0, 3] = log_probs[0, 1, 4] = log_probs[0, 2, 0] = 0.0
        >>> dec(log_probs, torch.tensor([3]))[0].text
        'ab'
    """

    def __init__(
        self, tokenizer: Tokenizer, lm: str | Path | None = None, lexicon: str | Path | Sequence[str] | None = None,
        lexicon_free: bool = False, config: BeamSearchConfig = BeamSearchConfig(),
    ) -> None:
        if not isinstance(config, BeamSearchConfig):
            raise TypeError(f"config: expected a BeamSearchConfig, got {type(config).__name__}")
        try:
            from flashlight.lib.text import decoder as fl
            from flashlight.lib.text.dictionary import Dictionary
        except ImportError:
            raise DecodeError("beam search needs flashlight-text (pip install flashlight-text)") from None
        self.tokenizer, self.config, self._fl = tokenizer, config, fl
        self.units = token_units(tokenizer)
        self.lm_path = Path(lm) if lm is not None else None
        self.separator = separator_id(tokenizer)
        vocab = self._lm_vocabulary() if lm is not None and lexicon is None and not lexicon_free else None
        if vocab is not None and self._is_token_lm(vocab):
            lexicon_free = True
        if lexicon_free and lexicon is not None:
            raise DecodeError("give either a lexicon or lexicon-free decoding, not both")
        if lexicon_free and vocab is None and lm is not None:
            self._check_unit_lm()
        self.mode: Literal["lexicon", "lexicon-free"] = "lexicon-free" if lexicon_free or (
            lexicon is None and lm is None) else "lexicon"
        self.sil = self.separator if self.separator is not None else tokenizer.blank_id
        if self.mode == "lexicon-free":
            self.word_dict = None
            self.lm = self._make_lm(self.units)
            self.trie = None
        else:
            spellings = self._spellings(lexicon if lexicon is not None else vocab)
            self.word_dict = Dictionary()
            self.words = ["<unk>", *spellings]
            for word in self.words:
                self.word_dict.add_entry(word)
            self.word_dict.set_default_index(0)
            self.lm = self._make_lm(self.words)
            self.trie = fl.Trie(tokenizer.vocab_size, self.sil)
            start = self.lm.start(False)
            for index, word in enumerate(self.words[1:], start=1):
                score = self.lm.score(start, index)[1]
                for ids in spellings[word]:
                    self.trie.insert(ids, index, score)
            self.trie.smear(fl.SmearingMode.MAX)
        self._build()

    # ------------------------------------------------------------------------------ construction
    def _lm_vocabulary(self, required: bool = True) -> list[str]:
        """The LM's words. One that lists none (a KenLM binary that stores no vocabulary, or an LM
        without words) is a DecodeError, or gives [] when not ``required``."""
        assert self.lm_path is not None
        _check_lm_file(self.lm_path)
        try:
            vocab = lm_vocabulary(self.lm_path)
        except LMError as e:
            if not required:
                return []
            raise DecodeError(str(e)) from None
        if not vocab and required:
            raise DecodeError(f"{self.lm_path}: the LM has no words")
        return vocab

    def _check_unit_lm(self) -> None:
        """Refuse a word LM for lexicon-free decoding, which asks the LM for units: most of its
        words are not units (a KenLM binary that stores no vocabulary cannot be checked)."""
        vocab = self._lm_vocabulary(required=False)
        units = set(self.units)
        others = [w for w in vocab if w not in units]
        if len(others) > len(vocab) / 2:
            raise DecodeError(f"{self.lm_path}: a word LM ({len(others)} of its {len(vocab)} words, e.g. "
                              f"{', '.join(map(repr, others[:3]))}, are not the model's units); --lexicon-free needs "
                              "an LM of the units (asr build-lm --units chars), a word LM a lexicon (its own words "
                              "without --lexicon-free)")

    def _is_token_lm(self, vocab: list[str]) -> bool:
        """Whether an LM's words are all token units: a character LM (one built from one-word lines
        has no ``|``), or a piece LM with a word-start piece (pieces without "▁" can be words too)."""
        if not set(vocab) <= set(self.units):
            return False
        return isinstance(self.tokenizer, CharTokenizer) or any(v.startswith("\u2581") for v in vocab)

    def _spellings(self, lexicon: str | Path | Sequence[str]) -> dict[str, list[list[int]]]:
        """word -> spellings in label ids (with the separator appended for character models)."""
        source = str(lexicon) if isinstance(lexicon, (str, Path)) else "lexicon"
        entries = read_lexicon(lexicon) if isinstance(lexicon, (str, Path)) else {w: [] for w in lexicon}
        index = {u: i for i, u in enumerate(self.units) if i != self.tokenizer.blank_id}
        spellings: dict[str, list[list[int]]] = {}
        skipped = []
        for word, unit_lists in entries.items():
            if unit_lists:
                ids = [[index.get(u, -1) for u in units] for units in unit_lists]
                ids = [s for s in ids if s and -1 not in s]
            else:
                ids = [s for s in [spell(self.tokenizer, word)] if s is not None]
            if self.separator is not None:
                ids = [s if s[-1] == self.separator else [*s, self.separator] for s in ids]
            if ids:
                spellings[word] = ids
            else:
                skipped.append(word)
        if skipped:
            logger.warning("%s: skipped %d words the tokenizer cannot spell (e.g. %s)", source,
                           len(skipped), ", ".join(map(repr, skipped[:5])))
        if not spellings:
            raise DecodeError(f"{source}: none of its {len(entries)} words can be spelled by the tokenizer")
        return spellings

    def _make_lm(self, entries: list[str]):
        if self.lm_path is None:
            return self._fl.ZeroLM()
        from flashlight.lib.text.dictionary import Dictionary

        dictionary = Dictionary()
        for entry in entries:
            dictionary.add_entry(entry)
        dictionary.set_default_index(0)
        self._lm_dictionary = dictionary  # the KenLM wrapper keeps a reference
        return _load_kenlm(self.lm_path, dictionary)

    def _build(self) -> None:
        fl, cfg, blank = self._fl, self.config, self.tokenizer.blank_id
        token_beam = cfg.beam_size_token or self.tokenizer.vocab_size
        if self.mode == "lexicon":
            options = fl.LexiconDecoderOptions(
                beam_size=cfg.beam_size, beam_size_token=token_beam, beam_threshold=cfg.beam_threshold,
                lm_weight=cfg.lm_weight, word_score=cfg.word_score, unk_score=cfg.unk_score, sil_score=0.0,
                log_add=cfg.log_add, criterion_type=fl.CriterionType.CTC)
            self._decoder = fl.LexiconDecoder(options, self.trie, self.lm, self.sil, blank, 0, [], False)
        else:
            sil_score = cfg.word_score if self.separator is not None else 0.0
            options = fl.LexiconFreeDecoderOptions(
                beam_size=cfg.beam_size, beam_size_token=token_beam, beam_threshold=cfg.beam_threshold,
                lm_weight=cfg.lm_weight, sil_score=sil_score, log_add=cfg.log_add,
                criterion_type=fl.CriterionType.CTC)
            self._decoder = fl.LexiconFreeDecoder(options, self.lm, self.sil, blank, [])

    def with_weights(self, lm_weight: float, word_score: float) -> BeamSearchDecoder:
        """A decoder sharing this one's LM and lexicon, with other alpha and beta (cheap)."""
        other = copy.copy(self)
        other.config = replace(self.config, lm_weight=lm_weight, word_score=word_score)
        other._build()
        return other

    # ---------------------------------------------------------------------------------- decoding
    def decode_nbest(self, log_probs: torch.Tensor, lengths: torch.Tensor) -> list[list[Hypothesis]]:
        """Up to ``config.nbest`` hypotheses per utterance, best first, no two of the same text.

        Args:
            log_probs: (B, T, V) CTC log-probabilities.
            lengths: (B,) valid frames per utterance.
        """
        check_batch(log_probs, lengths)
        emissions = log_probs.detach().float().cpu()  # (B, T, V)
        pad = self.mode == "lexicon" and self.separator is not None
        results = []
        for b, length in enumerate(lengths.tolist()):
            frames = emissions[b, :length]  # (T_b, V)
            if pad:  # one frame where only the separator fits, so the last word can end
                end = torch.full((1, frames.size(1)), -1e4)
                end[0, self.separator] = 0.0
                frames = torch.cat([frames, end])  # (T_b + 1, V)
            frames = frames.contiguous()
            decoded = self._decoder.decode(frames.data_ptr(), frames.size(0), frames.size(1))
            # paths that differ only in spaces (or in the units of the same words) make one text, kept once
            results.append(distinct_texts((self._hypothesis(r, length) for r in decoded), self.config.nbest))
        return results

    def __call__(self, log_probs: torch.Tensor, lengths: torch.Tensor) -> list[Hypothesis]:
        """The best hypothesis per utterance (same arguments as :meth:`decode_nbest`)."""
        return [nbest[0] if nbest else Hypothesis(text="") for nbest in self.decode_nbest(log_probs, lengths)]

    def _hypothesis(self, result, length: int) -> Hypothesis:
        path = list(result.tokens)[1:length + 1]  # drop the start state and the padding/end frames
        tokens, frames = ctc_collapse(path, self.tokenizer.blank_id)
        if self.mode == "lexicon":
            words = [self.words[i] for i in result.words if i >= 0]
            text = " ".join(words)
        else:
            text = tokens_to_text(self.tokenizer, tokens)
            words = text.split()
        return Hypothesis(text=text, tokens=tokens, frames=frames, score=float(result.score),
                          am_score=float(result.emittingModelScore),
                          lm_score=float(result.lmScore) if self.lm_path is not None else None, words=words)
