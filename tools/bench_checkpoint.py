"""How long the end-of-epoch checkpoints stop training: ``Trainer.save`` of a preset's full state.

Builds a ``Trainer`` for a preset (Adam moments filled by one real training step on two
LibriSpeech utterances, EMA on), then times, in one process:

1. ``blocking``: ``Trainer.save("last.pt", with_train_state=True)`` + ``save("epoch-N.pt")``, the
   time the training loop waits at the end of an epoch;
2. ``written``: the same plus the wait for the files to be on disk (``Trainer.wait_for_checkpoints``).

The two differ when checkpoints are written in the background. Figures vary with the disk and the
load: compare them within one run.

The run goes to a temporary folder, removed at the end, or to ``--dir``: a new folder, or one
whose ``train.jsonl`` holds what this script writes there and has no ``run/`` yet.

Usage:
    python tools/bench_checkpoint.py [--preset medium] [--repeat 5] [--dir /tmp/bench_ckpt]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import soundfile as sf

from asr.errors import run_tool
from asr.model import load_preset
from asr.outputs import atomic_output, check_output, holds
from asr.train import Trainer
from asr.train_config import resolve_config

REPO = Path(__file__).resolve().parent.parent
DEV = REPO.parent / "shared" / "data" / "LibriSpeech" / "dev-4spk" / "8226" / "274371"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="medium")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--dir", default=None, help="where the run folder goes (default: a temporary folder, removed)")
    args = parser.parse_args()
    if args.repeat < 1:
        raise ValueError(f"--repeat {args.repeat}: must be >= 1")
    load_preset(args.preset)  # an unknown name is refused before the work
    if args.dir is not None:
        return bench(args.preset, args.repeat, Path(args.dir))
    with tempfile.TemporaryDirectory(prefix="bench_ckpt_") as work:
        return bench(args.preset, args.repeat, Path(work))


def bench(preset: str, repeat: int, work: Path) -> int:
    """Train one step in ``work/run`` (manifest ``work/train.jsonl``), then time ``repeat`` epoch ends.

    Raises:
        ValueError: ``work/run`` exists already.
        OutputError: ``work/train.jsonl`` holds something else than this script writes there.
    """
    texts = dict(line.split(" ", 1) for line in (DEV / "8226-274371.trans.txt").read_text().splitlines())
    entries = [{"audio_filepath": str(DEV / f"{uid}.flac"), "duration": sf.info(DEV / f"{uid}.flac").duration,
                "text": texts[uid]} for uid in sorted(texts)[:2]]
    text = "".join(json.dumps(e) + "\n" for e in entries)
    if os.path.lexists(work / "run"):
        raise ValueError(f"{work / 'run'}: exists (an earlier run of this script?); remove it or choose another --dir")
    manifest = check_output(work / "train.jsonl", lambda p: holds(p, [text.encode()]),
                            "the manifest bench_checkpoint writes")
    manifest.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(manifest) as tmp:
        tmp.write_text(text, encoding="utf-8")
    cfg = resolve_config(None, [f"preset={preset}", f"out_dir={work / 'run'}", f"data.train_manifest={manifest}",
                                "device=cpu", "threads=1", "max_steps=1", "ema_decay=0.999", "keep_epoch_checkpoints=5",
                                "data.max_batch_size=2", "features.normalize=none"])
    trainer = Trainer(cfg)
    trainer.run()  # one step: optimizer moments and EMA exist
    blocking, written = [], []
    for i in range(repeat):
        start = time.perf_counter()
        trainer.save("last.pt", with_train_state=True)
        trainer.save(f"epoch-{i}.pt")
        blocking.append(time.perf_counter() - start)
        trainer.wait_for_checkpoints()
        written.append(time.perf_counter() - start)
    size_mb = sum(p.stat().st_size for p in [work / "run" / "last.pt", work / "run" / "epoch-0.pt"]) / 1e6
    print(f"preset {preset}: {trainer.model.num_params():,} parameters, {size_mb:.0f} MB per epoch end "
          f"(last.pt + epoch-N.pt), {repeat} repeats in {work / 'run'}")
    print(f"blocking (training waits): median {statistics.median(blocking):.3f} s")
    print(f"written (on disk, fsync):   median {statistics.median(written):.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(run_tool("bench_checkpoint", main))
