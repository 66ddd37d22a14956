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

import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from asr.datasets.tts import TTSError, available_engines, plan_renditions, render_corpus  # noqa: E402
from asr.errors import run_tool  # noqa: E402
from asr.manifest import first_entry  # noqa: E402
from asr.outputs import OutputError, check_output, check_output_folder  # noqa: E402
from asr.text import read_error_cause  # noqa: E402


def _is_tts_manifest(path: Path, wav_dir: Path, name: str) -> bool:
    """Whether ``path`` is empty or a manifest that ``render_corpus`` wrote for ``wav_dir``."""
    entry = first_entry(path)
    if not entry:
        return entry is not None  # an empty file is replaced; anything but a manifest is not
    audio = Path(str(entry.get("audio_filepath", "")))
    folder = (path.parent / audio.parent).resolve()  # written relative to the manifest's folder
    return folder == wav_dir.resolve() and audio.name.startswith(f"{name}-") and audio.suffix == ".wav"


def _read_lines(text: str) -> list[str]:
    try:
        return Path(text).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise TTSError(f"{text}: cannot read the text ({read_error_cause(e)})") from None


def _check_outputs(out: Path, name: str) -> None:
    """Refuse an output folder that cannot be one, a manifest path holding a file of the user's,
    and a damaged wav that ``render_corpus`` would trip over after rendering the ones before it."""
    if not name or name.startswith(".") or "/" in name or "\\" in name:
        raise TTSError(f"--name {name!r}: must be a plain file name (no folder, not hidden)")
    check_output_folder(out / "wav", f"; nothing written in {out}")
    check_output(out / f"{name}.jsonl", lambda p: _is_tts_manifest(p, out / "wav", name),
                 f"a manifest of tts_corpus for {out / 'wav'}")
    for wav in sorted((out / "wav").glob(f"{name}-*.wav")) if (out / "wav").is_dir() else []:
        try:
            sf.info(wav)
        except (RuntimeError, OSError) as e:
            raise TTSError(f"{wav}: damaged ({e}); remove it to render it again") from None


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
    # an OSError without a file name (a full disk) is named after the output folder
    return run_tool("tts_corpus", lambda: _run(args), errors=(TTSError, OutputError, ValueError), path=args.out)


def _run(args: argparse.Namespace) -> None:
    engines = [e for e in args.engines.split(",") if e] if args.engines else available_engines()
    missing = [e for e in engines if e not in available_engines()]
    if missing:
        raise TTSError(f"{', '.join(missing)}: not installed (apt-get install espeak-ng flite)")
    if args.max_lines < 0:
        raise ValueError(f"--max-lines {args.max_lines}: must be >= 0 (0: all)")
    if args.rate < 8000:
        raise ValueError(f"--rate {args.rate}: below 8000 Hz, which the audio reader refuses")
    lines = _read_lines(args.text)
    if args.max_lines:
        lines = lines[: args.max_lines]
    plans = plan_renditions(lines, variants=args.variants, seed=args.seed, engines=engines,
                            speed_range=tuple(args.speed), pitch_range=tuple(args.pitch))
    if not plans:
        raise TTSError(f"{args.text}: no line with words to say; nothing written")
    _check_outputs(Path(args.out), args.name)
    manifest = render_corpus(plans, args.out, name=args.name, sample_rate=args.rate)
    print(f"{manifest}: {len(plans)} utterances from {len(lines)} lines ({', '.join(engines)})")


if __name__ == "__main__":
    sys.exit(main())
