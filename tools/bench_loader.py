"""How fast the training data loader delivers audio, decoding every epoch vs from ``data.cache_audio``.

Runs, in one process, one epoch of the trainer's data path (``SpeechDataset`` with speed
perturbation and gain, ``DurationBatchSampler``, ``collate``, a ``DataLoader`` with ``--workers``
forked workers) over a manifest, twice: decoding each file as it is read, and from an
``AudioCache`` filled beforehand (the preload's own time is printed apart: it is paid once a run).
Figures are audio seconds delivered per wall-clock second; compare the ratio, as the machine is
shared. A loader slower than the GPU's training rate (``audio_h_per_s`` in ``train_log.jsonl``,
times 3600) is what holds a run back.

Usage:
    python tools/bench_loader.py MANIFEST [--workers 2] [--limit 0] [--max-batch-s 240] [--repeat 1]

Example (Ogg/Opus copy of train-clean-5, see recipes/mini_librispeech/RESULTS.md):
    python tools/bench_loader.py gpu_data/data/train-clean-5.jsonl --workers 2
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch
from torch.utils.data import DataLoader

from asr.augment import AugmentConfig, WaveAugment
from asr.data import AudioCache, DurationBatchSampler, SpeechDataset, collate
from asr.errors import run_tool
from asr.manifest import read_manifest
from asr.tokenizer import CharTokenizer


def one_epoch(dataset: SpeechDataset, max_batch_s: float, workers: int) -> tuple[float, float]:
    """(audio seconds delivered, wall seconds) for one shuffled epoch."""
    sampler = DurationBatchSampler(dataset.durations, max_batch_s=max_batch_s, seed=0, sortagrad=False)
    sampler.set_epoch(1)
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, num_workers=workers,
                        multiprocessing_context="fork" if workers else None,
                        generator=torch.Generator().manual_seed(0))
    start = time.perf_counter()
    samples = sum(int(batch.wave_lens.sum()) for batch in loader if batch is not None)
    return samples / dataset.sample_rate, time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("manifest")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader worker processes")
    parser.add_argument("--limit", type=int, default=0, help="first N utterances only (0: all)")
    parser.add_argument("--max-batch-s", type=float, default=240.0)
    parser.add_argument("--repeat", type=int, default=1, help="epochs timed per mode (the best is kept)")
    args = parser.parse_args()
    for option, value, least in (("--workers", args.workers, 0), ("--limit", args.limit, 0), ("--repeat", args.repeat, 1)):
        if value < least:
            raise ValueError(f"{option} {value}: must be >= {least}")
    if not args.max_batch_s > 0:
        raise ValueError(f"--max-batch-s {args.max_batch_s:g}: must be a positive number of seconds")
    torch.set_num_threads(1)
    utts = read_manifest(args.manifest)
    utts = utts[: args.limit] if args.limit else utts
    augment = WaveAugment(AugmentConfig(speed_factors=(0.9, 1.0, 1.1), gain_db=6.0), 16000)
    tok = CharTokenizer()
    print(f"{len(utts)} utterances, {sum(u.duration for u in utts) / 3600:.2f} h; {args.workers} workers; "
          f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.2f}")

    cache = AudioCache(16000)
    start = time.perf_counter()
    cache.preload(utts, threads=os.cpu_count() or 1)
    preload_s = time.perf_counter() - start
    rates = {}
    for name, ds in (("decode each epoch", SpeechDataset(utts, tok, wave_transform=augment)),
                     ("cache_audio", SpeechDataset(utts, tok, wave_transform=augment, cache=cache))):
        runs = [one_epoch(ds, args.max_batch_s, args.workers) for _ in range(args.repeat)]
        audio_s, wall_s = min(runs, key=lambda r: r[1])
        rates[name] = audio_s / wall_s
        print(f"{name:>18}: {audio_s:8.0f} audio-s in {wall_s:6.1f} s = {rates[name]:7.0f} audio-s/s")
    print(f"{'preload':>18}: {cache.nbytes / 1e9:.2f} GB in {preload_s:.1f} s on {os.cpu_count()} threads "
          f"(once per run)")
    print(f"cache_audio / decode each epoch: {rates['cache_audio'] / rates['decode each epoch']:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(run_tool("bench_loader", main))
