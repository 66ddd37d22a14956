"""A peer's figure on our dev set: PocketSphinx 5 (its wheel's en-us model) on N random utterances.

Decodes a seeded random sample of a LibriSpeech-layout folder (or a manifest) with PocketSphinx's
default US English acoustic model, 3-gram LM and CMU dictionary, and prints WER and CER (through
``asr.metrics``, both sides normalized with ``asr.text.normalize_text``) and the real-time factor
(decode seconds / audio seconds, one thread). Hypotheses and aligned errors go to ``--out`` if given.

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

from asr.audio import load_audio  # noqa: E402
from asr.datasets.librispeech import read_split  # noqa: E402
from asr.manifest import Utterance, read_manifest  # noqa: E402
from asr.metrics import error_report  # noqa: E402
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


def decode_all(utts: list[Utterance], decoder) -> tuple[list[str], float, float]:
    """(hypotheses, decode seconds, audio seconds) of ``utts`` with a pocketsphinx ``Decoder``."""
    hyps: list[str] = []
    decode_s = audio_s = 0.0
    for utt in utts:
        wave = load_audio(utt.audio_filepath, SAMPLE_RATE, offset_s=utt.offset,
                          duration_s=utt.duration or None)  # (S,) float32
        pcm = (np.clip(wave, -1.0, 1.0) * 32767).astype("<i2").tobytes()
        start = time.perf_counter()
        decoder.start_utt()
        decoder.process_raw(pcm, full_utt=True)
        decoder.end_utt()
        hyp = decoder.hyp()
        decode_s += time.perf_counter() - start
        audio_s += len(wave) / SAMPLE_RATE
        hyps.append(hyp.hypstr if hyp is not None else "")
    return hyps, decode_s, audio_s


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", help="LibriSpeech-layout split folder (e.g. dev-4spk) or a JSON-lines manifest")
    parser.add_argument("--num-utts", type=int, default=20, help="random utterances to decode (0: all)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random sample")
    parser.add_argument("--out", help="folder for hyps.txt and errs.txt")
    args = parser.parse_args()
    try:
        from pocketsphinx import Decoder
    except ImportError:
        print("pocketsphinx_baseline: pocketsphinx is not installed (see the module docstring)", file=sys.stderr)
        return 2
    utts = sample_utterances(args.data, args.num_utts, args.seed)
    if not utts:
        print(f"pocketsphinx_baseline: {args.data}: no utterances", file=sys.stderr)
        return 2
    decoder = Decoder(samprate=SAMPLE_RATE, loglevel="FATAL")  # default en-us model, LM, dictionary
    hyps, decode_s, audio_s = decode_all(utts, decoder)
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
        (out / "hyps.txt").write_text("".join(f"{i} {normalize_text(h)}\n" for i, h in zip(ids, hyps)))
        (out / "errs.txt").write_text("\n".join(report.alignments) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
