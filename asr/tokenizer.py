"""Tokenizers (characters or SentencePiece) that map normalized text to CTC label ids; id 0 is the blank.

Characters outside a tokenizer's vocabulary are skipped by ``encode`` and counted in its
``oov_counts`` (see :func:`oov_report`), never raised on. Text is normalized first by
:func:`asr.text.normalize_text`.

Example:
    >>> tok = CharTokenizer()
    >>> tok.encode("it's")
    [11, 22, 2, 21]
    >>> tok.decode(tok.encode("it's"))
    "it's"
"""

from __future__ import annotations

import base64
import binascii
import io
import logging
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import sentencepiece as spm

from asr.config import ConfigError
from asr.text import normalize_text

logger = logging.getLogger(__name__)


class TokenizerError(ConfigError):
    """The tokenizer settings do not fit the training text (e.g. a vocabulary larger than it
    allows); the message names ``tokenizer.vocab_size``. A ``ConfigError``, so a ``ValueError``."""


@runtime_checkable
class Tokenizer(Protocol):
    """Maps normalized text to CTC label ids and back; id ``blank_id`` (0) is the CTC blank."""

    blank_id: int
    vocab_size: int  # number of labels including the blank
    oov_counts: Counter[str]  # characters skipped by encode, over this object's lifetime

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Sequence[int]) -> str: ...

    def to_dict(self) -> dict[str, Any]: ...


def _check_ids(ids: Sequence[int], vocab_size: int) -> list[int]:
    """Ids as plain ints without blanks; raises ValueError on an id outside [0, vocab_size)."""
    out = []
    for i in ids:
        i = int(i)
        if not 0 <= i < vocab_size:
            raise ValueError(f"decode: label id {i} is outside [0, {vocab_size})")
        if i != 0:
            out.append(i)
    return out


class CharTokenizer:
    """Characters of normalized English text: ``["<blank>", " ", "'", "a", ..., "z"]`` (29 labels).

    Example:
        >>> tok = CharTokenizer()
        >>> tok.vocab_size, tok.blank_id
        (29, 0)
        >>> tok.encode("a b1é")
        [3, 1, 4]
        >>> oov_report(tok)
        "skipped 2 characters outside the vocabulary: '1'×1, 'é'×1"
    """

    VOCAB: tuple[str, ...] = ("<blank>", " ", "'", *"abcdefghijklmnopqrstuvwxyz")

    def __init__(self) -> None:
        self.blank_id = 0
        self.vocab_size = len(self.VOCAB)
        self.oov_counts: Counter[str] = Counter()
        self._ids = {c: i for i, c in enumerate(self.VOCAB) if i != self.blank_id}

    def encode(self, text: str) -> list[int]:
        """Label ids of ``text`` (normalized); unknown characters are skipped and counted."""
        ids = [self._ids.get(c, 0) for c in text]
        self.oov_counts.update(c for c, i in zip(text, ids) if i == 0)
        return [i for i in ids if i != 0]

    def decode(self, ids: Sequence[int]) -> str:
        """Text of label ids (blanks dropped, no CTC collapsing); raises ValueError on a bad id."""
        return "".join(self.VOCAB[i] for i in _check_ids(ids, self.vocab_size))

    def to_dict(self) -> dict[str, Any]:
        return {"type": "char", "vocab": list(self.VOCAB)}


class SentencePieceTokenizer:
    """SentencePiece pieces (BPE or unigram) as CTC labels.

    Id mapping: the model is trained with ``<unk>`` at id 0 and no bos/eos/pad pieces, so the
    sentencepiece ids are the label ids unchanged and id 0 (``<unk>``) serves as the CTC blank.
    ``encode`` never emits 0: characters that no piece covers are removed before segmentation and
    counted in ``oov_counts``. A model trained elsewhere is accepted if its ``<unk>`` is id 0.

    Args:
        model_proto: the serialized sentencepiece model.
        source: where the bytes came from (a file name), for error messages.

    Raises:
        ValueError: the bytes are not a sentencepiece model, or its ``<unk>`` is not id 0.
    """

    def __init__(self, model_proto: bytes, source: str = "sentencepiece model") -> None:
        try:
            sp = spm.SentencePieceProcessor(model_proto=model_proto)
        except RuntimeError as e:
            raise ValueError(f"{source}: not a valid sentencepiece model ({e})") from None
        if sp.unk_id() != 0:
            raise ValueError(f"{source}: <unk> has id {sp.unk_id()}, expected 0 (the CTC blank)")
        self._proto = bytes(model_proto)
        self._sp = sp
        self.blank_id = 0
        self.vocab_size = sp.get_piece_size()
        self.oov_counts: Counter[str] = Counter()
        self._chars = set()  # characters some piece covers; "▁" stands for the space
        for i in range(self.vocab_size):
            if not (sp.is_unknown(i) or sp.is_control(i)):
                self._chars.update(sp.id_to_piece(i).replace("\u2581", " "))

    @classmethod
    def train(
        cls, texts: Iterable[str], vocab_size: int, model_type: Literal["bpe", "unigram"] = "bpe"
    ) -> SentencePieceTokenizer:
        """Train a model in memory on ``texts`` (normalized here with :func:`normalize_text`).

        All characters of the texts plus ``'`` and a-z are in the vocabulary (coverage 1.0);
        training is deterministic for a given input.

        Args:
            texts: transcripts; empty ones after normalization are ignored.
            vocab_size: number of labels including the blank (sentencepiece's ``<unk>``).
            model_type: ``"bpe"`` or ``"unigram"``.

        Returns:
            The trained tokenizer.

        Raises:
            ValueError: bad model_type or no text.
            TokenizerError: sentencepiece refuses the vocabulary size (too large for the text,
                or too small for its characters) or fails otherwise.
        """
        if model_type not in ("bpe", "unigram"):
            raise ValueError(f"model_type={model_type!r}: expected 'bpe' or 'unigram'")
        sentences = [s for s in (normalize_text(t) for t in texts) if s]
        if not sentences:
            raise ValueError("SentencePieceTokenizer.train: no non-empty text to train on")
        model = io.BytesIO()
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=iter(sentences), model_writer=model, vocab_size=vocab_size,
                model_type=model_type, character_coverage=1.0,
                required_chars="'abcdefghijklmnopqrstuvwxyz",
                normalization_rule_name="identity",  # the text is already normalized
                unk_id=0, bos_id=-1, eos_id=-1, pad_id=-1,  # <unk> = CTC blank, no other specials
                max_sentence_length=1 << 20,  # bytes; longer sentences would be dropped silently
                num_threads=1, minloglevel=2,
            )  # fmt: skip
        except (RuntimeError, ValueError, OverflowError) as e:  # ValueError: a size beyond 32 bits
            key = f"tokenizer.vocab_size={vocab_size}"
            if m := re.search(r"Vocabulary size too high .*?<= (\d+)", str(e)):
                raise TokenizerError(f"{key}: too large for the training text "
                                     f"(sentencepiece {model_type} allows at most {m[1]})") from None
            if m := re.search(r"smaller than required_chars\. \d+ vs (\d+)", str(e)):
                raise TokenizerError(f"{key}: too small for the characters of the training text "
                                     f"(sentencepiece {model_type} needs at least {m[1]})") from None
            raise TokenizerError(f"{key}: sentencepiece {model_type} training on {len(sentences)} "
                                 f"sentences failed: {str(e).strip()}") from None
        tok = cls(model.getvalue())
        logger.info("sentencepiece trained model_type=%s vocab_size=%d sentences=%d",
                    model_type, tok.vocab_size, len(sentences))  # fmt: skip
        return tok

    def save(self, path: str | Path) -> None:
        """Write the sentencepiece model file (readable by any sentencepiece tool)."""
        Path(path).write_bytes(self._proto)

    @classmethod
    def load(cls, path: str | Path) -> SentencePieceTokenizer:
        """Read a model file written by :meth:`save`; raises ValueError naming an invalid file."""
        return cls(Path(path).read_bytes(), source=str(path))

    def encode(self, text: str) -> list[int]:
        """Label ids of ``text`` (normalized); uncovered characters are skipped and counted."""
        self.oov_counts.update(c for c in text if c not in self._chars)
        ids = self._sp.encode("".join(c for c in text if c in self._chars), out_type=int)
        if 0 in ids:  # cannot happen with models trained here; never pass the blank through
            self.oov_counts["<unk>"] += ids.count(0)
            ids = [i for i in ids if i != 0]
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        """Text of label ids (blanks dropped, no CTC collapsing); raises ValueError on a bad id."""
        return self._sp.decode(_check_ids(ids, self.vocab_size))

    def id_to_piece(self, i: int) -> str:
        """The piece of label id ``i`` as sentencepiece writes it ("▁" marks a word start)."""
        return self._sp.id_to_piece(int(i))

    def to_dict(self) -> dict[str, Any]:
        return {"type": "sentencepiece", "model": base64.b64encode(self._proto).decode("ascii")}

    def __getstate__(self) -> dict[str, Any]:  # for DataLoader workers
        return {"proto": self._proto, "oov_counts": dict(self.oov_counts)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["proto"], source="pickled sentencepiece model")
        self.oov_counts.update(state["oov_counts"])


def tokenizer_from_dict(d: dict[str, Any]) -> Tokenizer:
    """Rebuild a tokenizer from its ``to_dict()`` (e.g. from a checkpoint).

    Raises:
        ValueError: unknown ``type``, a char vocabulary that differs from ``CharTokenizer.VOCAB``,
            or a sentencepiece model that is not valid base64 / not a model.

    Example:
        >>> tokenizer_from_dict(CharTokenizer().to_dict()).vocab_size
        29
    """
    kind = d.get("type")
    if kind == "char":
        vocab = d.get("vocab", list(CharTokenizer.VOCAB))
        if list(vocab) != list(CharTokenizer.VOCAB):
            raise ValueError(f"tokenizer dict: char vocabulary {vocab!r} != CharTokenizer.VOCAB")
        return CharTokenizer()
    if kind == "sentencepiece":
        try:
            proto = base64.b64decode(d["model"], validate=True)
        except (KeyError, TypeError, binascii.Error) as e:
            raise ValueError(f"tokenizer dict: bad sentencepiece 'model' entry ({e})") from None
        return SentencePieceTokenizer(proto, source="tokenizer dict")
    raise ValueError(f"tokenizer dict: unknown type {kind!r} (expected 'char' or 'sentencepiece')")


def encode_apart(tokenizer: Tokenizer, text: str) -> tuple[list[int], Counter[str]]:
    """``tokenizer.encode(text)`` and what it skipped, with the tokenizer's ``oov_counts`` left as
    they were: for a lookup or a check, not text the model is trained on.

    >>> tok = CharTokenizer()
    >>> encode_apart(tok, "a1"), tok.oov_counts
    (([3], Counter({'1': 1})), Counter())
    """
    saved = Counter(tokenizer.oov_counts)
    try:
        ids = tokenizer.encode(text)
        return ids, tokenizer.oov_counts - saved
    finally:
        tokenizer.oov_counts.clear()
        tokenizer.oov_counts.update(saved)


def oov_report(tokenizer: Tokenizer, max_items: int = 20) -> str:
    """One line summarising what ``tokenizer.encode`` skipped so far, most frequent first.

    Example:
        >>> tok = CharTokenizer()
        >>> oov_report(tok)
        'no characters outside the vocabulary'
        >>> _ = tok.encode("éa1é")
        >>> oov_report(tok)
        "skipped 3 characters outside the vocabulary: 'é'×2, '1'×1"
    """
    counts = tokenizer.oov_counts
    total = sum(counts.values())
    if not total:
        return "no characters outside the vocabulary"
    common = counts.most_common(max_items)
    items = ", ".join(f"{c!r}×{n}" for c, n in common)
    if len(counts) > len(common):
        items += f", ... ({len(counts) - len(common)} more)"
    noun = "character" if total == 1 else "characters"
    return f"skipped {total} {noun} outside the vocabulary: {items}"
