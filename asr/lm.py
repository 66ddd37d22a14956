"""N-gram language models for beam search: the ARPA format, KenLM binaries, their vocabularies.

:class:`NgramModel` holds a backoff model in memory (written and read as ARPA text, scored in
Python); :func:`lm_vocabulary` reads the words of an ARPA file or of a KenLM binary, which beam
search needs for its lexicon. Building a model from text is :mod:`asr.lm_build`.
"""

from __future__ import annotations

import mmap
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from asr.outputs import starts_with

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
WORD_BOUNDARY = "|"  # the space, as a unit of character-level models


class LMError(Exception):
    """A language model or its text cannot be built or read (the message names the file)."""


@dataclass
class NgramModel:
    """A backoff n-gram model: ``ngrams[n - 1][(w1, ..., wn)] = (log10 p, log10 backoff)``."""

    order: int
    ngrams: list[dict[tuple[str, ...], tuple[float, float]]] = field(default_factory=list)

    def predictable_words(self) -> list[str]:
        """The vocabulary a model can predict: every unigram but ``<s>``."""
        return [g[0] for g in self.ngrams[0] if g[0] != BOS]

    def log10_prob(self, word: str, history: Sequence[str]) -> float:
        """log10 p(word | history) by ARPA backoff (unknown words score as ``<unk>``).

        Example:
            >>> from asr.lm_build import estimate_kneser_ney
            >>> lm = estimate_kneser_ney([["a", "b"]], order=2)
            >>> lm.log10_prob("b", ["a"]) > lm.log10_prob("a", ["a"])
            True
        """
        context = tuple(history)[-(self.order - 1):] if self.order > 1 else ()
        if (word,) not in self.ngrams[0]:
            word = UNK
        backoff = 0.0
        while True:
            entry = self.ngrams[len(context)].get(context + (word,))
            if entry is not None:
                return backoff + entry[0]
            backoff += self.ngrams[len(context) - 1].get(context, (0.0, 0.0))[1]
            context = context[1:]

    def write_arpa(self, path: str | Path) -> None:
        """Write the ARPA text format (``<unk>``, ``<s>``, ``</s>`` first among the unigrams)."""
        special = {UNK: 0, BOS: 1, EOS: 2}
        with open(path, "w", encoding="utf-8") as f:
            f.write("\\data\\\n")
            for n, table in enumerate(self.ngrams, start=1):
                f.write(f"ngram {n}={len(table)}\n")
            for n, table in enumerate(self.ngrams, start=1):
                f.write(f"\n\\{n}-grams:\n")
                keys = sorted(table, key=lambda g: (special.get(g[0], 3), g)) if n == 1 else sorted(table)
                for g in keys:
                    logp, bow = table[g]
                    tail = f"\t{bow:.7g}" if n < self.order and bow != 0.0 else ""
                    f.write(f"{logp:.7g}\t{' '.join(g)}{tail}\n")
            f.write("\n\\end\\\n")

    @classmethod
    def read_arpa(cls, path: str | Path) -> NgramModel:
        """Read an ARPA file; raises ``LMError`` naming the file and line on malformed input."""
        path = Path(path)
        ngrams: list[dict[tuple[str, ...], tuple[float, float]]] = []
        section = -1  # -1: before \data\, 0: in \data\, n: in \n-grams:
        try:
            with open(path, encoding="utf-8") as f:
                for line_no, line in enumerate(f, start=1):
                    line = line.strip()
                    if not line:
                        continue
                    if line == "\\data\\":
                        section = 0
                    elif line == "\\end\\":
                        break
                    elif line.startswith("\\") and line.endswith("-grams:"):
                        section = int(line[1:-7])
                        while len(ngrams) < section:
                            ngrams.append({})
                    elif section > 0:
                        parts = line.split()
                        words = tuple(parts[1:section + 1])
                        if len(words) != section or len(parts) > section + 2:
                            raise ValueError(f"expected a {section}-gram line, got {line[:60]!r}")
                        bow = float(parts[-1]) if len(parts) == section + 2 else 0.0
                        ngrams[section - 1][words] = (float(parts[0]), bow)
        except (OSError, UnicodeDecodeError) as e:
            raise LMError(f"{path}: cannot read the ARPA file ({e})") from None
        except ValueError as e:
            raise LMError(f"{path}:{line_no}: not a valid ARPA file ({e})") from None
        if not ngrams or not ngrams[0]:
            raise LMError(f"{path}: not an ARPA file (no \\1-grams: section)")
        if (UNK,) not in ngrams[0]:
            ngrams[0][(UNK,)] = (-100.0, 0.0)  # KenLM's convention for a model without <unk>
        return cls(order=len(ngrams), ngrams=ngrams)


def arpa_vocabulary(path: str | Path) -> list[str]:
    """The unigrams of an ARPA file (without ``<s>``, ``</s>``, ``<unk>``), read without the n-grams.

    Raises:
        LMError: the file is unreadable or has no ``\\1-grams:`` section (e.g. a KenLM binary).
    """
    path = Path(path)
    words: list[str] = []
    try:
        with open(path, encoding="utf-8") as f:
            in_unigrams = False
            for line in f:
                line = line.strip()
                if line == "\\1-grams:":
                    in_unigrams = True
                elif in_unigrams and line.startswith("\\"):
                    break
                elif in_unigrams and line:
                    parts = line.split()
                    if len(parts) >= 2 and parts[1] not in (BOS, EOS, UNK):
                        words.append(parts[1])
    except UnicodeDecodeError:
        raise LMError(f"{path}: neither an ARPA text file nor a KenLM binary") from None
    except OSError as e:
        raise LMError(f"{path}: cannot read the language model ({e})") from None
    if not in_unigrams:
        raise LMError(f"{path}: not an ARPA file (no \\1-grams: section) nor a KenLM binary")
    return words


KENLM_MAGIC = b"mmap lm http://kheafield.com/code"  # how a KenLM binary file begins
KENLM_MAX_ORDER = 6  # KenLM's default KENLM_MAX_ORDER, which flashlight-text's KenLM is built with


def lm_vocabulary(path: str | Path) -> list[str]:
    """The words of an ARPA file or a KenLM binary (without ``<s>``, ``</s>``, ``<unk>``).

    ``build_binary`` stores the vocabulary at the end of the file, NUL-separated, ``<unk>`` first;
    it is read from there through a memory map (only the file's tail is touched).

    Raises:
        LMError: unreadable file, no ``\\1-grams:`` section, or a binary without a vocabulary.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            if f.read(len(KENLM_MAGIC)) != KENLM_MAGIC:
                return arpa_vocabulary(path)
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
                start = data.rfind(b"<unk>\0")
                tail = data[start:] if start >= 0 else b""
    except OSError as e:
        raise LMError(f"{path}: cannot read the language model ({e})") from None
    try:
        words = [w.decode("utf-8") for w in tail.split(b"\0") if w]
    except UnicodeDecodeError:
        words = []
    if not words or any(not w.strip() or len(w.split()) != 1 for w in words):
        raise LMError(f"{path}: no vocabulary found in the KenLM binary; give a lexicon (--lexicon)")
    return [w for w in words if w not in (BOS, EOS, UNK)]


def is_lm_file(path: Path) -> bool:
    """Whether ``path`` holds an n-gram LM: ARPA text (``\\data\\`` first) or a KenLM binary."""
    return starts_with(path, b"\\data\\") or starts_with(path, KENLM_MAGIC)
