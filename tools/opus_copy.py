"""Write an Ogg/Opus copy of a manifest's audio, and a manifest that points at the copies.

Used to carry a training set to a remote GPU machine under a size limit: train-clean-5 (5.3 h,
333 MB of FLAC) becomes about 39 MB at the default compression level. Opus is lossy: results
of a model trained on the copies say so (see recipes/mini_librispeech/RESULTS.md).

    python tools/opus_copy.py exp/ml/data/train-clean-5.jsonl gpu_data/train-clean-5

writes gpu_data/train-clean-5/<n>.ogg and gpu_data/train-clean-5.jsonl (paths relative to the
manifest, so the folder can move). Durations are measured again from the copies.
"""

from __future__ import annotations

import argparse
import json
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import soundfile as sf

from asr.audio import load_audio
from asr.manifest import read_manifest_report


def _encode(job: tuple[str, str, float]) -> float:
    src, dst, level = job
    wave = load_audio(src, 16000)
    sf.write(dst, wave, 16000, format="OGG", subtype="OPUS", compression_level=level)
    return sf.info(dst).duration


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manifest", type=Path)
    parser.add_argument("out_dir", type=Path, help="folder for the .ogg files; the manifest goes to OUT_DIR.jsonl")
    parser.add_argument("--compression-level", type=float, default=0.96,
                        help="libsndfile's Opus compression level, 0 (best quality) to 1 (smallest)")
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args(argv)

    utts, problems = read_manifest_report(args.manifest)
    for problem in problems:
        print(problem, file=sys.stderr)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    jobs = [(u.audio_filepath, str(args.out_dir / f"{i:06d}.ogg"), args.compression_level)
            for i, u in enumerate(utts)]
    with ProcessPoolExecutor(args.jobs) as pool:
        durations = list(pool.map(_encode, jobs, chunksize=8))
    out_manifest = args.out_dir.with_suffix(".jsonl")
    with open(out_manifest, "w") as f:
        for (_, dst, _), utt, duration in zip(jobs, utts, durations):
            entry = {"audio_filepath": f"{args.out_dir.name}/{Path(dst).name}", "duration": round(duration, 3),
                     "text": utt.text}
            if utt.speaker:
                entry["speaker"] = utt.speaker
            f.write(json.dumps(entry) + "\n")
    size = sum(Path(dst).stat().st_size for _, dst, _ in jobs)
    print(f"{len(jobs)} files, {sum(durations) / 3600:.2f} h, {size / 1e6:.1f} MB -> {out_manifest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
