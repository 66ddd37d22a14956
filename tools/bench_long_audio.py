"""Memory and time of `asr transcribe` on one long recording, cut at pauses vs. whole.

Joins the dev-4spk utterances of one speaker in order (their own pauses between them) into a
recording of --minutes, then runs `asr transcribe CKPT FILE --json` (word timestamps on) in a fresh
process per setting and prints its wall time and peak resident memory, and their ratios against
the whole-file run:

    python tools/bench_long_audio.py CKPT [--minutes 10] [--speaker 4088] [--max-segment-s 30]

The forced alignment behind the timestamps needs memory in proportion to the number of output
frames times the transcript's length, so a trained model (a long transcript) shows a larger gap
than a random one.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
DEV = REPO.parent / "shared" / "data" / "LibriSpeech" / "dev-4spk"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--speaker", default="4088")
    parser.add_argument("--max-segment-s", type=float, default=30.0)
    args = parser.parse_args(argv)

    parts, total = [], 0
    for flac in sorted((DEV / args.speaker).glob("*/*.flac")):
        wave, rate = sf.read(flac, dtype="float32")
        parts.append(wave)
        total += len(wave)
        if total >= args.minutes * 60 * rate:
            break
    wave = np.concatenate(parts)[: int(args.minutes * 60 * rate)]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "long.flac"
        sf.write(path, wave, rate)
        base = [sys.executable, "-m", "asr.cli", "transcribe", args.checkpoint, str(path), "--json"]
        # each setting in its own parent interpreter: RUSAGE_CHILDREN reports the largest child's peak
        results = {}
        for label, max_s in (("whole", 0.0), ("cut", args.max_segment_s)):
            probe = [sys.executable, "-c", "import subprocess, sys, resource, time; t = time.perf_counter(); "
                     "subprocess.run(sys.argv[1:], check=True, capture_output=True); "
                     "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1e6)",
                     *base, "--max-segment-s", str(max_s)]
            out = subprocess.run(probe, capture_output=True, text=True, check=True).stdout.split()
            results[label] = (float(out[0]), float(out[1]))
    print(f"{len(wave) / rate / 60:.1f} min of speaker {args.speaker} (all of it if less than --minutes), {args.checkpoint}")
    for label, (wall, rss) in results.items():
        print(f"  {label:5s} (--max-segment-s {0.0 if label == 'whole' else args.max_segment_s:g}): "
              f"{wall:6.1f} s, peak RSS {rss:.2f} GB")
    (wall_w, rss_w), (wall_c, rss_c) = results["whole"], results["cut"]
    print(f"  cut / whole: time {wall_c / wall_w:.2f}x, memory {rss_c / rss_w:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
