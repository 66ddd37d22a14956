"""A peer's figure on our dev set: PocketSphinx 5 (its wheel's en-us model) on N random utterances.

Decodes a seeded random sample of a LibriSpeech-layout folder (or a manifest) with PocketSphinx's
default US English acoustic model, 3-gram LM and CMU dictionary, and prints WER and CER (through
``asr.metrics``, both sides normalized with ``asr.text.normalize_text``) and the real-time factor
(decode seconds / audio seconds, one thread). Hypotheses and aligned errors go to ``--out`` if given
(never over files this script did not write). An unreadable audio file is named and left out.

PocketSphinx is not a dependency of ``asr``; keep it out of the project's environment:

    python -m venv --system-site-packages /work/ps-venv && /work/ps-venv/bin/pip install pocketsphinx==5.1.1
    /work/ps-venv/bin/python tools/pocketsphinx_baseline.py ../shared/data/LibriSpeech/dev-4spk --num-utts 20 --seed 0
"""

from __future__ import annotations

import argparse
import importlib.metadata
import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from asr.audio import AudioError, load_audio  # noqa: E402
from asr.errors import run_tool  # noqa: E402
from asr.datasets.librispeech import read_split  # noqa: E402
from asr.manifest import Utterance, read_manifest  # noqa: E402
from asr.metrics import error_report  # noqa: E402
from asr.outputs import atomic_output, check_output, check_output_folder  # noqa: E402
from asr.text import normalize_text  # noqa: E402

SAMPLE_RATE = 16000


def sample_utterances(source: str, num_utts: int, seed: int) -> list[Utterance]:
    """``num_utts`` utterances drawn with ``random.Random(seed)`` from a split folder or a manifest,
    returned in id order (all of them when ``num_utts`` is 0 or larger than the set)."""
    path = Path(source)
    utts = read_split(path)[0] if path.is_dir() else read_manifest(path, skip_bad=True)
    if 0 < num_utts < len(utts):
        chosen = sorted(random.Random(seed).sample(range(len(utts)), num_utts))
        utts = [utts[i] for i in chosen]
    return utts


def decode_all(utts: list[Utterance], decoder) -> tuple[list[Utterance], list[str], float, float]:
    """(utterances decoded, their hypotheses, decode seconds, audio seconds) of ``utts`` with a
    pocketsphinx ``Decoder``; an unreadable file is named on stderr and left out."""
    done: list[Utterance] = []
    hyps: list[str] = []
    decode_s = audio_s = 0.0
    for utt in utts:
        try:
            wave = load_audio(utt.audio_filepath, SAMPLE_RATE, offset_s=utt.offset,
                              duration_s=utt.duration or None)  # (S,) float32
        except AudioError as e:
            print(f"pocketsphinx_baseline: skipped {e}", file=sys.stderr)
            continue
        done.append(utt)
        pcm = (np.clip(wave, -1.0, 1.0) * 32767).astype("<i2").tobytes()
        start = time.perf_counter()
        decoder.start_utt()
        decoder.process_raw(pcm, full_utt=True)
        decoder.end_utt()
        hyp = decoder.hyp()
        decode_s += time.perf_counter() - start
        audio_s += len(wave) / SAMPLE_RATE
        hyps.append(hyp.hypstr if hyp is not None else "")
    return done, hyps, decode_s, audio_s


def _is_our_hyps(path: Path) -> bool:
    """Whether ``path`` looks like a hyps.txt of this script: 'ID normalized words' lines, or empty."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return False
    pairs = [line.split(" ", 1) for line in lines]  # an empty hypothesis is written 'ID '
    return all(len(pair) == 2 and normalize_text(pair[1]) == pair[1] for pair in pairs)


def check_out(out: Path) -> None:
    """Refuse ``--out`` before any decoding when its hyps.txt or errs.txt would replace a file this
    script did not write (errs.txt counts as ours beside our hyps.txt).

    Raises:
        OutputError: naming the path.
    """
    check_output_folder(out, " (--out names a folder)")
    hyps = check_output(out / "hyps.txt", _is_our_hyps, "a hyps.txt of pocketsphinx_baseline")
    check_output(out / "errs.txt", lambda _: hyps.is_file(), "an errs.txt of pocketsphinx_baseline")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", help="LibriSpeech-layout split folder (e.g. dev-4spk) or a JSON-lines manifest")
    parser.add_argument("--num-utts", type=int, default=20, help="random utterances to decode (0: all)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random sample")
    parser.add_argument("--out", help="folder for hyps.txt and errs.txt")
    args = parser.parse_args()
    # the user's mistakes first, before pocketsphinx or any decoding (run_tool reports them)
    if args.num_utts < 0:
        raise ValueError(f"--num-utts {args.num_utts}: must be >= 0 (0: all)")
    if args.out:
        check_out(Path(args.out))
    utts = sample_utterances(args.data, args.num_utts, args.seed)
    if not utts:
        raise ValueError(f"{args.data}: no utterances")
    try:
        from pocketsphinx import Decoder
    except ImportError:
        print("pocketsphinx_baseline: error: pocketsphinx is not installed (see the module docstring)", file=sys.stderr)
        return 2
    decoder = Decoder(samprate=SAMPLE_RATE, loglevel="FATAL")  # default en-us model, LM, dictionary
    utts, hyps, decode_s, audio_s = decode_all(utts, decoder)
    if not utts:
        print(f"pocketsphinx_baseline: error: {args.data}: none of the audio could be read", file=sys.stderr)
        return 2
    ids = [Path(u.audio_filepath).stem for u in utts]
    report = error_report([normalize_text(u.text) for u in utts], [normalize_text(h) for h in hyps], ids)
    version = importlib.metadata.version("pocketsphinx")
    print(f"pocketsphinx {version} en-us (default LM and dictionary), {len(utts)} utterances "
          f"({audio_s / 60:.1f} min) of {args.data}, seed {args.seed}")
    print(report.words.summary("WER"))
    print(report.chars.summary("CER"))
    print(f"RTF {decode_s / audio_s:.3f} ({decode_s:.1f} s decoding for {audio_s:.1f} s of audio, 1 thread)")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        with atomic_output(out / "hyps.txt") as tmp:
            tmp.write_text("".join(f"{i} {normalize_text(h)}\n" for i, h in zip(ids, hyps)), encoding="utf-8")
        with atomic_output(out / "errs.txt") as tmp:
            tmp.write_text("\n".join(report.alignments) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(run_tool("pocketsphinx_baseline", main))
