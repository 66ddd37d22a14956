"""Render text lines to synthetic speech (espeak-ng, flite) as a 16 kHz training corpus with a manifest.

Each non-empty line of TEXT becomes ``--variants`` utterances, each with a voice, speed and pitch
drawn with ``--seed`` (see ``asr/datasets/tts.py``); the wavs go to ``OUT/wav/``, the manifest to
``OUT/<name>.jsonl``. Files already rendered are kept. Install a synthesizer first:
``apt-get install espeak-ng`` (and optionally ``flite``).

Usage:
    python tools/tts_corpus.py TEXT --out data/tts [--variants 2] [--seed 0] [--engines espeak-ng,flite]
        [--max-lines N] [--speed 0.8 1.25] [--pitch 30 70] [--name tts] [--rate 16000]
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from asr.datasets.tts import TTSError, available_engines, plan_renditions, render_corpus  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("text", help="text file, one sentence per line (e.g. from tools/lm_text.py)")
    parser.add_argument("--out", required=True, help="output folder (wav/ and <name>.jsonl)")
    parser.add_argument("--name", default="tts", help="manifest and file name prefix (default tts)")
    parser.add_argument("--variants", type=int, default=1, help="renditions per line, each another voice")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--engines", help="comma-separated, from espeak-ng,flite (default: those installed)")
    parser.add_argument("--max-lines", type=int, default=0, help="use the first N lines only (0: all)")
    parser.add_argument("--speed", type=float, nargs=2, default=(0.8, 1.25), metavar=("LOW", "HIGH"),
                        help="tempo range relative to the engine's default")
    parser.add_argument("--pitch", type=int, nargs=2, default=(30, 70), metavar=("LOW", "HIGH"),
                        help="espeak-ng pitch range, 0-99")
    parser.add_argument("--rate", type=int, default=16000,
                        help="sample rate of the wavs (default 16000; 8000 band-limits to match 8 kHz corpora)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    engines = args.engines.split(",") if args.engines else available_engines()
    missing = [e for e in engines if e not in available_engines()]
    try:
        if missing:
            raise TTSError(f"{', '.join(missing)}: not installed (apt-get install espeak-ng flite)")
        lines = Path(args.text).read_text(encoding="utf-8").splitlines()
        if args.max_lines:
            lines = lines[: args.max_lines]
        plans = plan_renditions(lines, variants=args.variants, seed=args.seed, engines=engines,
                                speed_range=tuple(args.speed), pitch_range=tuple(args.pitch))
        if args.rate < 8000:
            raise ValueError(f"--rate {args.rate}: below 8000 Hz, which the audio reader refuses")
        manifest = render_corpus(plans, args.out, name=args.name, sample_rate=args.rate)
    except (TTSError, ValueError, OSError) as e:
        print(f"tts_corpus: error: {e}", file=sys.stderr)
        return 2
    print(f"{manifest}: {len(plans)} utterances from {len(lines)} lines ({', '.join(engines)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
