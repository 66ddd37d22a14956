"""The speech dataset, duration-bucketed batching (SortaGrad) and collation, over the utterances
of a manifest (``asr.manifest``).

Example:
    >>> utts = [Utterance("/a.wav", 2.0, "hi"), Utterance("/b.wav", 9.0, "hello there")]
    >>> sampler = DurationBatchSampler([u.duration for u in utts], max_batch_s=10.0)
    >>> list(sampler)  # epoch 0, SortaGrad: shortest first, B * longest <= 10 s
    [[0], [1]]
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from asr.audio import AudioError, load_audio
from asr.manifest import Utterance
from asr.read_notes import Note, collecting
from asr.text import normalize_text

if TYPE_CHECKING:
    from asr.tokenizer import Tokenizer

logger = logging.getLogger(__name__)


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


def seed_of(*keys: int) -> int:
    """A 64-bit seed mixed from non-negative ``keys`` (numpy's SeedSequence): nearby keys give
    unrelated streams, e.g. ``seed_of(seed, epoch, index)`` for one utterance's augmentation.

    >>> seed_of(0, 1, 2) == seed_of(0, 1, 2) != seed_of(0, 2, 1)
    True
    """
    return int(np.random.SeedSequence(keys).generate_state(1, np.uint64)[0])


def available_memory_gb() -> float | None:
    """MemAvailable of /proc/meminfo in GB, or None where there is no such file."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024 / 1e9
    except OSError:
        pass
    return None


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
                logger.warning("not cached, unreadable audio: %s", utt.located(str(e)))
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
    """One dataset item: ``wave`` (S,) float32, ``tokens`` (L,) int64, ``index`` in the dataset;
    ``notes``: the warnings logged while it was read (``SpeechDataset(skip_unreadable=True)``)."""

    wave: torch.Tensor
    tokens: torch.Tensor
    index: int
    notes: tuple[Note, ...] = ()


@dataclass(frozen=True)
class Unreadable:
    """The item of an utterance whose audio cannot be read (``SpeechDataset(skip_unreadable=True)``):
    ``message`` names the manifest line, the file and the cause; ``notes`` as ``Example``'s."""

    index: int
    message: str
    notes: tuple[Note, ...] = ()


class SpeechDataset(Dataset):
    """Utterances as (waveform, token ids) pairs, audio loaded on access.

    Args:
        utts: the utterances (e.g. from ``read_manifest``).
        tokenizer: encodes ``normalize_text(utt.text)``.
        sample_rate: rate the audio is resampled to, in Hz.
        wave_transform: applied to each loaded waveform, ``wave_transform(wave, generator)``
            (S,) -> (S',), e.g. training augmentation; ``generator`` is seeded with
            ``seed_of(seed, epoch, index)``, so an utterance's augmentation depends on the epoch
            (:meth:`set_epoch`) and not on which loader worker reads it, or after what.
        skip_unreadable: an unreadable file's item is an ``Unreadable`` (its file and cause),
            which ``collate`` drops and lists in ``Batch.unreadable``, instead of raising
            ``AudioError``; and the warnings logged while an item is read (channels that cancel
            out, a doubtful header...) are kept in its ``notes`` (``asr.read_notes``), which
            ``collate`` gathers in ``Batch.notes``. The process that reads the batches reports both
            (``ReadLog``), not the loader's workers, so each is reported once however often the
            file is read.
        cache: decoded waveforms to read from (``AudioCache`` at ``sample_rate``); utterances it
            does not hold are decoded on access.
        seed: non-negative seed of ``wave_transform``'s draws.
    """

    def __init__(self, utts: Sequence[Utterance], tokenizer: Tokenizer, sample_rate: int = 16000,
                 wave_transform: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
                 skip_unreadable: bool = False, cache: AudioCache | None = None, seed: int = 0):
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
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """The epoch whose augmentation the items get (before a loader's workers start)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.utts)

    @property
    def durations(self) -> list[float]:
        """Manifest durations in seconds, for ``DurationBatchSampler``."""
        return [u.duration for u in self.utts]

    def __getitem__(self, index: int) -> Example | Unreadable:
        """Load utterance ``index``; raises ``asr.audio.AudioError`` naming the file (or, with
        ``skip_unreadable``, returns an ``Unreadable``)."""
        if not self.skip_unreadable:
            return self._read(index)
        with collecting() as notes:
            try:
                item = self._read(index)
            except AudioError as e:
                item = Unreadable(index, self.utts[index].located(str(e)))
        return replace(item, notes=tuple(notes)) if notes else item

    def _read(self, index: int) -> Example:
        utt = self.utts[index]
        samples = self.cache.load(utt) if self.cache is not None else _load(utt, self.sample_rate)
        wave = torch.from_numpy(np.ascontiguousarray(samples, np.float32))
        if self.wave_transform is not None:
            wave = self.wave_transform(wave, torch.Generator().manual_seed(seed_of(self.seed, self.epoch, index)))
        ids = self.tokenizer.encode(normalize_text(utt.text))
        return Example(wave, torch.tensor(ids, dtype=torch.int64), index)  # (S,), (L,)


def warn_long_utterances(utts: Sequence[Utterance], max_batch_s: float, option: str) -> None:
    """One warning when some of ``utts`` are longer than ``max_batch_s``, the batch size set by
    ``option``: each forms a batch of its own (:class:`DurationBatchSampler`), larger than asked."""
    long = [u for u in utts if u.duration > max_batch_s]
    if long:
        worst = max(long, key=lambda u: u.duration)
        logger.warning("%d of %d utterances are longer than %s %g s and form batches of their own, larger than "
                       "that; the longest: %s (%.2f s)", len(long), len(utts), option, max_batch_s,
                       worst.located(worst.audio_filepath), worst.duration)


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
        unreadable: the messages of the items left out because their audio cannot be read
            (``Unreadable.message``). B is 0 when no item could be read.
        notes: the warnings logged while its items were read (``Example.notes``).
    """

    waves: torch.Tensor
    wave_lens: torch.Tensor
    tokens: torch.Tensor
    token_lens: torch.Tensor
    indices: torch.Tensor
    unreadable: tuple[str, ...] = ()
    notes: tuple[Note, ...] = ()

    @property
    def size(self) -> int:
        """B, the number of utterances."""
        return len(self.indices)

    def _map(self, fn) -> Batch:
        return Batch(*(fn(t) for t in (self.waves, self.wave_lens, self.tokens, self.token_lens,
                                       self.indices)), unreadable=self.unreadable, notes=self.notes)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        """A copy on ``device``."""
        return self._map(lambda t: t.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> Batch:
        """A copy in pinned memory (called by ``DataLoader(pin_memory=True)``)."""
        return self._map(lambda t: t.pin_memory())


def collate(items: Sequence[Example | Unreadable]) -> Batch:
    """Pad examples into a ``Batch``; ``Unreadable`` items are left out and listed in its
    ``unreadable`` (a batch of size 0 when no item could be read); the items' notes are kept in
    its ``notes``.

    Raises:
        ValueError: ``items`` is empty.
    """
    if not items:
        raise ValueError("collate: no examples")
    unreadable = tuple(item.message for item in items if isinstance(item, Unreadable))
    notes = tuple(note for item in items for note in item.notes)
    examples = [e for e in items if isinstance(e, Example)]
    if not examples:
        none = torch.zeros(0, dtype=torch.int64)  # (0,)
        return Batch(torch.zeros(0, 0), none, torch.zeros(0, 0, dtype=torch.int64), none, none, unreadable, notes)
    wave_lens = torch.tensor([e.wave.shape[0] for e in examples], dtype=torch.int64)  # (B,)
    token_lens = torch.tensor([e.tokens.shape[0] for e in examples], dtype=torch.int64)  # (B,)
    waves = torch.zeros(len(examples), int(wave_lens.max()), dtype=torch.float32)  # (B, S)
    tokens = torch.zeros(len(examples), int(token_lens.max()), dtype=torch.int64)  # (B, L)
    for b, e in enumerate(examples):
        waves[b, : e.wave.shape[0]] = e.wave
        tokens[b, : e.tokens.shape[0]] = e.tokens
    indices = torch.tensor([e.index for e in examples], dtype=torch.int64)  # (B,)
    return Batch(waves, wave_lens, tokens, token_lens, indices, unreadable, notes)


class ReadLog:
    """Warns once of each unreadable file, and logs each note, of the batches it is shown, however
    many epochs or scorings read them again: ``report(batch)`` in the process that iterates the
    loader. (Or, to report for several processes: ``log(unseen(...))`` of what they gathered.)"""

    def __init__(self):
        self._seen: set[str | Note] = set()

    def report(self, batch: Batch) -> None:
        self.log(self.unseen(batch.unreadable + batch.notes))

    def unseen(self, items: Iterable[str | Note]) -> list[str | Note]:
        """Those of ``items`` (``Batch.unreadable`` messages and ``Batch.notes``) not seen before,
        in order, each once; they count as seen from now on."""
        fresh = []
        for item in items:
            if item not in self._seen:
                self._seen.add(item)
                fresh.append(item)
        return fresh

    @staticmethod
    def log(items: Iterable[str | Note]) -> None:
        """Warn of each unreadable file's message, and log each note as it was logged."""
        for item in items:
            if isinstance(item, Note):
                item.log()
            else:
                logger.warning("skipped unreadable audio: %s", item)
