"""How long the end-of-epoch checkpoints stop training: ``Trainer.save`` of a preset's full state.

Builds a ``Trainer`` for a preset (Adam moments filled by one real training step on two
LibriSpeech utterances, EMA on), then times, in one process:

1. ``blocking``: ``Trainer.save("last.pt", with_train_state=True)`` + ``save("epoch-N.pt")``, the
   time the training loop waits at the end of an epoch;
2. ``written``: the same plus the wait for the files to be on disk (``Trainer.wait_for_checkpoints``).

The two differ when checkpoints are written in the background. Figures vary with the disk and the
load: compare them within one run.

Usage:
    python tools/bench_checkpoint.py [--preset medium] [--repeat 5] [--dir /tmp/bench_ckpt]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import soundfile as sf

from asr.train import Trainer
from asr.train_config import resolve_config

REPO = Path(__file__).resolve().parent.parent
DEV = REPO.parent / "shared" / "data" / "LibriSpeech" / "dev-4spk" / "8226" / "274371"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="medium")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--dir", default=None, help="where the run folder goes (default: a temporary folder)")
    args = parser.parse_args()
    work = Path(args.dir or tempfile.mkdtemp(prefix="bench_ckpt_"))
    texts = dict(line.split(" ", 1) for line in (DEV / "8226-274371.trans.txt").read_text().splitlines())
    entries = [{"audio_filepath": str(DEV / f"{uid}.flac"), "duration": sf.info(DEV / f"{uid}.flac").duration,
                "text": texts[uid]} for uid in sorted(texts)[:2]]
    manifest = work / "train.jsonl"
    manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.write_text("".join(json.dumps(e) + "\n" for e in entries))
    cfg = resolve_config(None, [f"preset={args.preset}", f"out_dir={work / 'run'}", f"data.train_manifest={manifest}",
                                "device=cpu", "threads=1", "max_steps=1", "ema_decay=0.999", "keep_epoch_checkpoints=5",
                                "data.max_batch_size=2", "features.normalize=none"])
    trainer = Trainer(cfg)
    trainer.run()  # one step: optimizer moments and EMA exist
    blocking, written = [], []
    for i in range(args.repeat):
        start = time.perf_counter()
        trainer.save("last.pt", with_train_state=True)
        trainer.save(f"epoch-{i}.pt")
        blocking.append(time.perf_counter() - start)
        trainer.wait_for_checkpoints()
        written.append(time.perf_counter() - start)
    size_mb = sum(p.stat().st_size for p in [work / "run" / "last.pt", work / "run" / "epoch-0.pt"]) / 1e6
    print(f"preset {args.preset}: {trainer.model.num_params():,} parameters, {size_mb:.0f} MB per epoch end "
          f"(last.pt + epoch-N.pt), {args.repeat} repeats in {work / 'run'}")
    print(f"blocking (training waits): median {statistics.median(blocking):.3f} s")
    print(f"written (on disk, fsync):   median {statistics.median(written):.3f} s")


if __name__ == "__main__":
    main()
