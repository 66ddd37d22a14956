"""Memory and time of `asr transcribe` on one long recording, cut at pauses vs. whole.

Joins the dev-4spk utterances of one speaker in order (their own pauses between them) into a
recording of --minutes, then runs `asr transcribe CKPT FILE --json` (word timestamps on) in a fresh
process per setting and prints its wall time and peak resident memory, and their ratios against
the whole-file run:

    python tools/bench_long_audio.py CKPT [--minutes 10] [--speaker 4088] [--max-segment-s 30]
        [--rate 16000] [--channels 1]

``--rate`` and ``--channels`` write the recording at another rate (resampled) and as several
channels (the same speech at falling gains), as a recorder would: what `asr transcribe` then
decodes, averages and resamples.

The forced alignment behind the timestamps needs memory in proportion to the number of output
frames times the transcript's length, so a trained model (a long transcript) shows a larger gap
than a random one.
"""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing
DEV = REPO.parent / "shared" / "data" / "LibriSpeech" / "dev-4spk"

from asr.errors import run_tool  # noqa: E402
from asr.audio import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE  # noqa: E402
from asr.waveform import resample  # noqa: E402


def check_args(args: argparse.Namespace) -> list[Path]:
    """The speaker's FLAC files, in order, once the options are known to be usable (before any work).

    Raises:
        ValueError: naming the option and the value, or the missing checkpoint or speaker.
    """
    for option, value in (("--minutes", args.minutes), ("--max-segment-s", args.max_segment_s)):
        if not 0 < value < math.inf:
            raise ValueError(f"{option} {value:g}: must be a positive number")
    if not MIN_SAMPLE_RATE <= args.rate <= MAX_SAMPLE_RATE:
        raise ValueError(f"--rate {args.rate}: must be from {MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE} Hz")
    if not 1 <= args.channels <= 8:
        raise ValueError(f"--channels {args.channels}: must be from 1 to 8")
    if not Path(args.checkpoint).is_file():
        what = "a folder, not a checkpoint file" if Path(args.checkpoint).is_dir() else "no such checkpoint file"
        raise ValueError(f"{args.checkpoint}: {what}")
    flacs = sorted((DEV / args.speaker).glob("*/*.flac"))
    if not flacs:
        speakers = sorted(p.name for p in DEV.iterdir() if p.is_dir()) if DEV.is_dir() else []
        raise ValueError(f"--speaker {args.speaker}: no FLAC files in {DEV / args.speaker} "
                         f"(speakers there: {', '.join(speakers) or 'none'})")
    return flacs


def measure(command: list[str]) -> tuple[float, float]:
    """(wall seconds, peak resident GB) of an ``asr transcribe`` command run in a fresh parent
    interpreter, whose RUSAGE_CHILDREN then reports that command's own peak.

    Raises:
        ValueError: the command failed (its last line of stderr, e.g. ``asr: error: ...``, says why).
    """
    probe = [sys.executable, "-c", "import subprocess, sys, resource, time; t = time.perf_counter(); "
             "done = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True); "
             "sys.stderr.write(done.stderr); sys.exit(done.returncode) if done.returncode else None; "
             "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1e6)",
             *command]
    done = subprocess.run(probe, capture_output=True, text=True)
    if done.returncode != 0:
        last = ([line for line in done.stderr.splitlines() if line.strip()] or [f"exit {done.returncode}"])[-1]
        raise ValueError(f"`asr transcribe` failed: {last.strip()}")
    wall, rss = done.stdout.split()
    return float(wall), float(rss)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--speaker", default="4088")
    parser.add_argument("--max-segment-s", type=float, default=30.0)
    parser.add_argument("--rate", type=int, default=16000, help="the recording's sample rate, Hz")
    parser.add_argument("--channels", type=int, default=1, help="the recording's channels")
    args = parser.parse_args(argv)
    flacs = check_args(args)

    parts, total = [], 0
    for flac in flacs:
        wave, rate = sf.read(flac, dtype="float32")
        parts.append(wave)
        total += len(wave)
        if total >= args.minutes * 60 * rate:
            break
    wave = np.concatenate(parts)[: int(args.minutes * 60 * rate)]
    minutes = len(wave) / rate / 60
    wave, rate = resample(wave, rate, args.rate), args.rate  # (S,)
    recording = np.stack([wave * 0.8**c for c in range(args.channels)], axis=1)  # (S, C)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "long.flac"
        sf.write(path, recording, rate)
        del recording
        base = [sys.executable, "-m", "asr.cli", "transcribe", args.checkpoint, str(path), "--json"]
        results = {label: measure([*base, "--max-segment-s", str(max_s)])
                   for label, max_s in (("whole", 0.0), ("cut", args.max_segment_s))}
    print(f"{minutes:.1f} min of speaker {args.speaker} (all of it if less than --minutes) at {rate} Hz, "
          f"{args.channels} channel(s), {args.checkpoint}")
    for label, (wall, rss) in results.items():
        print(f"  {label:5s} (--max-segment-s {0.0 if label == 'whole' else args.max_segment_s:g}): "
              f"{wall:6.1f} s, peak RSS {rss:.2f} GB")
    (wall_w, rss_w), (wall_c, rss_c) = results["whole"], results["cut"]
    print(f"  cut / whole: time {wall_c / wall_w:.2f}x, memory {rss_c / rss_w:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(run_tool("bench_long_audio", main))
