"""Manifests, the speech dataset, duration-bucketed batching and collation.

A manifest is a JSON-lines file, one utterance per line, with NeMo's keys::

    {"audio_filepath": "wav/a.flac", "duration": 3.21, "text": "hello world"}
    {"audio_filepath": "/abs/b.wav", "duration": 2.0, "text": "hi", "offset": 7.5, "speaker": "s1"}

``audio_filepath`` is absolute or relative to the manifest's own folder; ``offset`` (seconds,
default 0) and ``speaker`` are optional; other keys are ignored. Blank lines are skipped.

Example:
    >>> utts = [Utterance("/a.wav", 2.0, "hi"), Utterance("/b.wav", 9.0, "hello there")]
    >>> sampler = DurationBatchSampler([u.duration for u in utts], max_batch_s=10.0)
    >>> list(sampler)  # epoch 0, SortaGrad: shortest first, B * longest <= 10 s
    [[0], [1]]
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from asr.audio import AudioError, load_audio
from asr.outputs import atomic_output
from asr.text import normalize_text

if TYPE_CHECKING:
    from asr.text import Tokenizer

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Utterance:
    """One manifest entry.

    Attributes:
        audio_filepath: absolute path of the audio file.
        duration: length of the utterance in seconds (of the segment when ``offset`` is set).
        text: raw transcript (normalized later, by the dataset).
        offset: start of the utterance in the file, in seconds.
        speaker: speaker label, if the manifest gives one.
    """

    audio_filepath: str
    duration: float
    text: str
    offset: float = 0.0
    speaker: str | None = None


class ManifestError(ValueError):
    """A manifest line (or the whole file) is unusable; message ``manifest.jsonl:LINE: cause``."""

    def __init__(self, path: str | os.PathLike, line: int | None, cause: str):
        super().__init__(f"{path}{'' if line is None else f':{line}'}: {cause}")
        self.path, self.line, self.cause = str(path), line, cause

    def __reduce__(self):  # keep it picklable despite the custom __init__
        return type(self), (self.path, self.line, self.cause)


def _field(entry: dict[str, Any], key: str, kinds: tuple[type, ...], what: str) -> Any:
    """``entry[key]`` if it is one of ``kinds`` (never a bool); raises ValueError with the cause."""
    value = entry[key]
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise ValueError(f"'{key}' must be {what}, got {type(value).__name__} {value!r}")
    if what == "a number" and (not math.isfinite(value) or value < 0):
        raise ValueError(f"'{key}' must be finite and >= 0, got {value!r}")
    return value


def _parse_entry(entry: Any, base: str, check_audio: bool) -> Utterance:
    """One decoded JSON value to an ``Utterance``; raises ValueError with the cause."""
    if not isinstance(entry, dict):
        raise ValueError(f"expected a JSON object, got {type(entry).__name__}")
    for key in ("audio_filepath", "duration", "text"):
        if key not in entry:
            raise ValueError(f"missing key '{key}'")
    path = _field(entry, "audio_filepath", (str,), "a string")
    if not path:
        raise ValueError("'audio_filepath' is empty")
    text = _field(entry, "text", (str,), "a string")
    duration = float(_field(entry, "duration", (int, float), "a number"))
    has = {key: entry.get(key) is not None for key in ("offset", "speaker")}
    offset = float(_field(entry, "offset", (int, float), "a number")) if has["offset"] else 0.0
    speaker = _field(entry, "speaker", (str, int), "a string") if has["speaker"] else None
    path = os.path.normpath(os.path.join(base, os.path.expanduser(path)))
    if check_audio and not os.path.isfile(path):
        raise ValueError(f"audio file not found: {path}")
    return Utterance(path, duration, text, offset, None if speaker is None else str(speaker))


def read_manifest_report(
    path: str | os.PathLike, check_audio: bool = True
) -> tuple[list[Utterance], list[ManifestError]]:
    """Like ``read_manifest`` but never raises for a bad line: returns ``(utterances, problems)``,
    one ``ManifestError`` (``manifest.jsonl:LINE: cause``) per bad line; raises ``ManifestError``
    only when the file itself cannot be read.
    """
    base = os.path.dirname(os.path.abspath(path))
    try:
        with open(path, "rb") as f:
            raw_lines = f.read().splitlines()
    except OSError as e:
        raise ManifestError(path, None, f"cannot read manifest: {e.strerror or e}") from None
    utts: list[Utterance] = []
    problems: list[ManifestError] = []
    for lineno, raw in enumerate(raw_lines, start=1):
        if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):  # UTF-8 byte-order mark
            raw = raw[3:]
        if not raw.strip():
            continue
        try:
            try:
                entry = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as e:
                raise ValueError(f"not valid UTF-8 (byte {e.start + 1})") from None
            except json.JSONDecodeError as e:
                raise ValueError(f"invalid JSON: {e.msg} (column {e.colno})") from None
            utts.append(_parse_entry(entry, base, check_audio))
        except ValueError as e:
            problems.append(ManifestError(path, lineno, str(e)))
    return utts, problems


def read_manifest(
    path: str | os.PathLike, skip_bad: bool = False, check_audio: bool = True
) -> list[Utterance]:
    """Read a JSON-lines manifest (see the module docstring for the format).

    Args:
        path: the manifest; relative audio paths resolve against its folder.
        skip_bad: log each bad line and the total skipped (``logger.warning``) and return the
            good ones, instead of raising on the first bad line.
        check_audio: check that each audio file exists (a missing one is a bad line).

    Returns:
        The utterances, in file order, with absolute audio paths.

    Raises:
        ManifestError: ``manifest.jsonl:LINE: cause`` for the first bad line (unless
            ``skip_bad``), or ``manifest.jsonl: cause`` when the file cannot be read.
    """
    utts, problems = read_manifest_report(path, check_audio=check_audio)
    if problems and not skip_bad:
        raise problems[0]
    for problem in problems:
        logger.warning("%s", problem)
    if problems:
        logger.warning("%s: skipped %d of %d lines", path, len(problems), len(problems) + len(utts))
    hours = sum(u.duration for u in utts) / 3600
    logger.info("manifest=%s utterances=%d hours=%.3f", path, len(utts), hours)
    return utts


def write_manifest(path: str | os.PathLike, utts: Iterable[Utterance]) -> None:
    """Write utterances as a JSON-lines manifest, atomically.

    The lines go to a temporary file in the same folder, which then replaces ``path``; on any
    failure ``path`` is left as it was. Audio paths inside the manifest's folder are written
    relative to it, others absolute; ``offset`` is written only when non-zero and ``speaker``
    only when set.

    Args:
        path: the manifest to write (its folder is created if needed).
        utts: the utterances (relative audio paths are taken relative to the working directory).

    Raises:
        ValueError: an utterance has a negative or non-finite duration or offset.
        OSError: the file cannot be written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    folder = os.path.abspath(path.parent)
    with atomic_output(path, durable=True) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for i, utt in enumerate(utts):
            for name, value in (("duration", utt.duration), ("offset", utt.offset)):
                if not math.isfinite(value) or value < 0:
                    raise ValueError(f"{path}: utterance {i} ({utt.audio_filepath}): "
                                     f"{name} must be finite and >= 0, got {value!r}")
            audio = os.path.abspath(utt.audio_filepath)
            if os.path.commonpath([folder, audio]) == folder:
                audio = os.path.relpath(audio, folder)
            entry: dict[str, Any] = {"audio_filepath": audio, "duration": utt.duration,
                                     "text": utt.text}
            if utt.offset:
                entry["offset"] = utt.offset
            if utt.speaker is not None:
                entry["speaker"] = utt.speaker
            f.write(json.dumps(entry, ensure_ascii=False) + "\n")


def iter_waves(utts: Iterable[Utterance], sample_rate: int = 16000) -> Iterator[np.ndarray]:
    """Yield each utterance's waveform, float32 (S,), one at a time (e.g. for ``compute_cmvn``)."""
    for utt in utts:
        yield _load(utt, sample_rate)


def _load(utt: Utterance, sample_rate: int) -> np.ndarray:
    """The utterance's samples (S,) float32: ``duration`` seconds from ``offset``, as NeMo reads.

    The manifest duration bounds the read (so segments at offset 0 work); a duration past the end
    of the file stops at the end, and a zero duration reads the whole file.
    """
    duration_s = utt.duration if utt.duration > 0 else None
    return load_audio(utt.audio_filepath, sample_rate, offset_s=utt.offset, duration_s=duration_s)


class AudioCache:
    """Decoded waveforms held in memory, so that each file is decoded once per run, not once per epoch.

    Worth it when decoding is slow next to training (Opus or MP3 audio, a fast GPU): ``preload``
    decodes on ``threads`` threads, and DataLoader workers forked afterwards share the samples.
    Memory: 4 bytes a sample, 230 MB per hour of 16 kHz audio.

    Args:
        sample_rate: rate the audio is resampled to, in Hz.

    Example:
        >>> cache = AudioCache(16000)
        >>> cache.preload([])  # decodes nothing, returns the seconds of audio now held
        0.0
    """

    def __init__(self, sample_rate: int = 16000):
        self.sample_rate = sample_rate
        self._waves: dict[Utterance, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self._waves)

    @property
    def nbytes(self) -> int:
        return sum(w.nbytes for w in self._waves.values())

    def preload(self, utts: Iterable[Utterance], threads: int = 1) -> float:
        """Decode the utterances not yet held. An unreadable file is left out (logged once here;
        ``load`` then reads it again and raises, as without a cache). Returns the seconds held."""
        todo = list(dict.fromkeys(u for u in utts if u not in self._waves))

        def decode(utt: Utterance) -> tuple[Utterance, np.ndarray | None]:
            try:
                return utt, _load(utt, self.sample_rate)
            except AudioError as e:
                logger.warning("not cached, unreadable audio: %s", e)
                return utt, None

        with ThreadPoolExecutor(max(1, threads)) as pool:  # libsndfile decodes outside the GIL
            for utt, wave in pool.map(decode, todo):
                if wave is not None:
                    self._waves[utt] = wave
        return sum(len(w) for w in self._waves.values()) / self.sample_rate

    def load(self, utt: Utterance) -> np.ndarray:
        """The utterance's samples (S,) float32: a copy of the cached ones, or decoded now.

        Raises:
            AudioError: the file is not cached and cannot be read.
        """
        wave = self._waves.get(utt)
        return _load(utt, self.sample_rate) if wave is None else wave.copy()


@dataclass(frozen=True)
class Example:
    """One dataset item: ``wave`` (S,) float32, ``tokens`` (L,) int64, ``index`` in the dataset."""

    wave: torch.Tensor
    tokens: torch.Tensor
    index: int


class SpeechDataset(Dataset):
    """Utterances as (waveform, token ids) pairs, audio loaded on access.

    Args:
        utts: the utterances (e.g. from ``read_manifest``).
        tokenizer: encodes ``normalize_text(utt.text)``.
        sample_rate: rate the audio is resampled to, in Hz.
        wave_transform: applied to each loaded waveform (S,) -> (S',), e.g. training augmentation.
        skip_unreadable: an unreadable file is logged (file and cause) and its item is ``None``,
            which ``collate`` drops, instead of raising ``AudioError``.
        cache: decoded waveforms to read from (``AudioCache`` at ``sample_rate``); utterances it
            does not hold are decoded on access.
    """

    def __init__(self, utts: Sequence[Utterance], tokenizer: Tokenizer, sample_rate: int = 16000,
                 wave_transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 skip_unreadable: bool = False, cache: AudioCache | None = None):
        if sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {sample_rate}")
        if cache is not None and cache.sample_rate != sample_rate:
            raise ValueError(f"cache holds {cache.sample_rate} Hz audio, the dataset reads {sample_rate} Hz")
        self.cache = cache
        self.utts = list(utts)
        self.tokenizer = tokenizer
        self.sample_rate = sample_rate
        self.wave_transform = wave_transform
        self.skip_unreadable = skip_unreadable

    def __len__(self) -> int:
        return len(self.utts)

    @property
    def durations(self) -> list[float]:
        """Manifest durations in seconds, for ``DurationBatchSampler``."""
        return [u.duration for u in self.utts]

    def __getitem__(self, index: int) -> Example | None:
        """Load utterance ``index``; raises ``asr.audio.AudioError`` naming the file (or, with
        ``skip_unreadable``, logs it and returns ``None``)."""
        utt = self.utts[index]
        try:
            samples = self.cache.load(utt) if self.cache is not None else _load(utt, self.sample_rate)
            wave = torch.from_numpy(np.ascontiguousarray(samples, np.float32))
        except AudioError as e:
            if not self.skip_unreadable:
                raise
            logger.warning("skipped unreadable audio: %s", e)
            return None
        if self.wave_transform is not None:
            wave = self.wave_transform(wave)
        ids = self.tokenizer.encode(normalize_text(utt.text))
        return Example(wave, torch.tensor(ids, dtype=torch.int64), index)  # (S,), (L,)


class DurationBatchSampler(Sampler[list[int]]):
    """Batches of similar-duration utterances with at most ``max_batch_s`` padded seconds each.

    Utterances are sorted by duration and cut greedily into batches with
    ``len(batch) * max(duration) <= max_batch_s`` (and ``len(batch) <= max_batch_size``); an
    utterance longer than ``max_batch_s`` forms a batch of its own. Epoch 0 with ``sortagrad``
    (or any epoch without ``shuffle``) yields the batches shortest first. Other epochs sort by
    duration plus a uniform jitter of ``±jitter_s`` (so batches differ between epochs) and then
    shuffle the batches; both draw from a generator seeded with ``(seed, epoch)``.

    For an exact resume, ``state_dict()`` records the epoch and the batches yielded so far.
    A DataLoader with workers draws batches ahead of the training loop: a trainer using workers
    should store its own count of consumed batches as ``"batches_done"``.

    Args:
        durations: duration of each utterance in seconds (index = dataset index).
        max_batch_s: cap on batch size × longest duration, in seconds.
        max_batch_size: optional cap on the number of utterances per batch.
        shuffle: shuffle the batches (and jitter their membership) after epoch 0.
        seed: non-negative seed; the order is a function of (seed, epoch) only.
        sortagrad: epoch 0 goes shortest first even when ``shuffle``.
        jitter_s: half-width of the uniform noise added to durations before sorting, in seconds.
        rank, world_size: for data-parallel training, this process yields every ``world_size``-th
            batch starting at ``rank`` (the epoch's batch list is cut to a multiple of
            ``world_size`` so every process runs the same number of steps).
    """

    def __init__(
        self,
        durations: Sequence[float],
        max_batch_s: float,
        max_batch_size: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
        sortagrad: bool = True,
        jitter_s: float = 0.0,
        rank: int = 0,
        world_size: int = 1,
    ):
        self.durations = np.asarray(durations, dtype=np.float64)  # (N,)
        if self.durations.ndim != 1 or not np.all(np.isfinite(self.durations)) \
                or np.any(self.durations < 0):
            raise ValueError("durations must be a sequence of finite numbers >= 0")
        if not max_batch_s > 0:
            raise ValueError(f"max_batch_s must be positive, got {max_batch_s}")
        if max_batch_size is not None and max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1 or None, got {max_batch_size}")
        if seed < 0 or jitter_s < 0:
            raise ValueError(f"seed and jitter_s must be >= 0, got seed={seed} jitter_s={jitter_s}")
        self.max_batch_s, self.max_batch_size = float(max_batch_s), max_batch_size
        self.shuffle, self.seed, self.sortagrad, self.jitter_s = shuffle, seed, sortagrad, jitter_s
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, world_size={world_size})")
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self._yielded = 0  # batches yielded so far in this epoch
        self._resume_from = 0  # where the next iteration starts (set by load_state_dict)
        self._cache: tuple[int, list[list[int]]] | None = None
        long = np.flatnonzero(self.durations > self.max_batch_s)
        if len(long):
            worst = int(long[np.argmax(self.durations[long])])
            logger.warning("utterances=%d longer than max_batch_s=%g form batches of their own; "
                           "longest index=%d duration_s=%.2f", len(long), self.max_batch_s,
                           worst, self.durations[worst])

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch the next iteration yields; a new epoch starts from its first batch."""
        if epoch != self.epoch:
            self.epoch, self._yielded, self._resume_from = epoch, 0, 0

    def _batches(self) -> list[list[int]]:
        """All batches of the current epoch, in the order they are yielded."""
        if self._cache is not None and self._cache[0] == self.epoch:
            return self._cache[1]
        sorted_order = not self.shuffle or (self.sortagrad and self.epoch == 0)
        rng = np.random.default_rng([self.seed, self.epoch])
        keys = self.durations
        if not sorted_order and self.jitter_s > 0:
            keys = keys + rng.uniform(-self.jitter_s, self.jitter_s, size=len(keys))
        batches: list[list[int]] = []
        batch: list[int] = []
        longest = 0.0  # of the open batch, seconds
        for i in np.argsort(keys, kind="stable").tolist():
            d = float(self.durations[i])
            full = self.max_batch_size is not None and len(batch) >= self.max_batch_size
            if batch and (full or (len(batch) + 1) * max(longest, d) > self.max_batch_s):
                batches.append(batch)
                batch, longest = [], 0.0
            batch.append(i)
            longest = max(longest, d)
        if batch:
            batches.append(batch)
        if not sorted_order:
            batches = [batches[j] for j in rng.permutation(len(batches)).tolist()]
        if self.world_size > 1:
            usable = len(batches) // self.world_size * self.world_size
            batches = batches[self.rank:usable:self.world_size]
        self._cache = (self.epoch, batches)
        return batches

    def __len__(self) -> int:
        """Number of batches in the current epoch (including any already yielded)."""
        return len(self._batches())

    def __iter__(self) -> Iterator[list[int]]:
        batches = self._batches()
        start, self._resume_from = self._resume_from, 0
        self._yielded = start
        for batch in batches[start:]:
            self._yielded += 1
            yield list(batch)

    def state_dict(self) -> dict[str, int]:
        """``{"epoch", "batches_done", "num_utterances"}`` (plain ints)."""
        return {"epoch": self.epoch, "batches_done": self._yielded,
                "num_utterances": len(self.durations)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Resume: the next iteration yields the batches of ``state["epoch"]`` not yet done.

        Raises:
            ValueError: the state belongs to a sampler over a different number of utterances,
                or its position is out of range.
        """
        n, have = state.get("num_utterances", len(self.durations)), len(self.durations)
        if n != have:
            raise ValueError(f"sampler state is for {n} utterances, this sampler has {have}")
        self.epoch, done = int(state["epoch"]), int(state["batches_done"])
        if not 0 <= done <= len(self):
            raise ValueError(f"batches_done={done} out of range: epoch {self.epoch} "
                             f"has {len(self)} batches")
        self._yielded = self._resume_from = done


@dataclass
class Batch:
    """A padded batch.

    Attributes:
        waves: (B, S) float32, zero after each ``wave_lens[b]``.
        wave_lens: (B,) int64 samples.
        tokens: (B, L) int64, padded with 0 (the blank id).
        token_lens: (B,) int64.
        indices: (B,) int64 dataset indices.
    """

    waves: torch.Tensor
    wave_lens: torch.Tensor
    tokens: torch.Tensor
    token_lens: torch.Tensor
    indices: torch.Tensor

    def _map(self, fn) -> Batch:
        return Batch(*(fn(t) for t in (self.waves, self.wave_lens, self.tokens, self.token_lens,
                                       self.indices)))

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        """A copy on ``device``."""
        return self._map(lambda t: t.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> Batch:
        """A copy in pinned memory (called by ``DataLoader(pin_memory=True)``)."""
        return self._map(lambda t: t.pin_memory())


def collate(examples: Sequence[Example | None]) -> Batch | None:
    """Pad examples into a ``Batch``; ``None`` items (unreadable audio) are dropped.

    Returns:
        The batch, or ``None`` when every item was ``None``.
    Raises:
        ValueError: ``examples`` is empty.
    """
    if not examples:
        raise ValueError("collate: no examples")
    examples = [e for e in examples if e is not None]
    if not examples:
        return None
    wave_lens = torch.tensor([e.wave.shape[0] for e in examples], dtype=torch.int64)  # (B,)
    token_lens = torch.tensor([e.tokens.shape[0] for e in examples], dtype=torch.int64)  # (B,)
    waves = torch.zeros(len(examples), int(wave_lens.max()), dtype=torch.float32)  # (B, S)
    tokens = torch.zeros(len(examples), int(token_lens.max()), dtype=torch.int64)  # (B, L)
    for b, e in enumerate(examples):
        waves[b, : e.wave.shape[0]] = e.wave
        tokens[b, : e.tokens.shape[0]] = e.tokens
    indices = torch.tensor([e.index for e in examples], dtype=torch.int64)  # (B,)
    return Batch(waves, wave_lens, tokens, token_lens, indices)
