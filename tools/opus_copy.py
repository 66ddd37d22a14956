"""Write an Ogg/Opus copy of a manifest's audio, and a manifest that points at the copies.

Used to carry a training set to a remote GPU machine under a size limit: train-clean-5 (5.3 h,
333 MB of FLAC) becomes about 39 MB at the default compression level. Opus is lossy: results
of a model trained on the copies say so (see recipes/mini_librispeech/RESULTS.md).

    python tools/opus_copy.py exp/ml/data/train-clean-5.jsonl gpu_data/train-clean-5

writes gpu_data/train-clean-5/<n>.ogg and gpu_data/train-clean-5.jsonl (paths relative to the
manifest, so the folder can move). Durations are measured again from the copies. A bad manifest line or
an audio file that cannot be read is reported and left out; the rest are copied. Nothing of the
user's is replaced: the manifest written is never the input one, and only an earlier copy's
manifest and .ogg files are written over.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from asr.audio import AudioError, load_audio  # noqa: E402
from asr.errors import run_tool  # noqa: E402
from asr.interrupts import ignore_sigint  # noqa: E402
from asr.manifest import ManifestError, first_entry, read_manifest_report  # noqa: E402
from asr.outputs import OutputError, atomic_output, check_output, check_output_folder, starts_with  # noqa: E402


def _encode(job: tuple[str, str, float]) -> float | str:
    """The duration of the copy in seconds, or a one-line message when the source cannot be copied."""
    src, dst, level = job
    try:
        wave = load_audio(src, 16000)
        with atomic_output(dst) as tmp:
            sf.write(tmp, wave, 16000, format="OGG", subtype="OPUS", compression_level=level)
        return sf.info(dst).duration
    except AudioError as e:
        return str(e)
    except (OSError, RuntimeError, ValueError) as e:  # libsndfile refusing, a full disk
        return f"{src}: cannot encode to {dst} ({e})"


def _encode_all(jobs: list[tuple[str, str, float]], workers: int) -> list[float | str]:
    """:func:`_encode` of each job, in order, on ``workers`` processes. The workers ignore Ctrl-C
    (it reaches the whole process group): this process gets KeyboardInterrupt, drops the jobs not
    begun and waits for those under way, whose copies are then whole."""
    pool = ProcessPoolExecutor(workers, initializer=ignore_sigint)
    try:
        return list(pool.map(_encode, jobs, chunksize=8))
    finally:
        pool.shutdown(cancel_futures=True)


def _is_copy_manifest(path: Path, out_dir: Path) -> bool:
    """Whether ``path`` is empty or a manifest this tool wrote for ``out_dir``."""
    entry = first_entry(path)
    if not entry:
        return entry is not None  # an empty file is replaced; anything but a manifest is not
    audio = entry.get("audio_filepath", "")
    return isinstance(audio, str) and audio.startswith(f"{out_dir.name}/") and audio.endswith(".ogg")


def _check_outputs(manifest: Path, out_dir: Path, dsts: list[str]) -> Path:
    """The manifest path to write, once neither it nor a copy would replace a file of the user's."""
    if not out_dir.name or out_dir.name in (".", ".."):
        raise OutputError(f"{out_dir}: give the copies a folder of their own (its name also names the manifest)")
    out_manifest = out_dir.with_suffix(".jsonl")
    if os.path.exists(out_manifest) and os.path.samefile(out_manifest, manifest):
        raise OutputError(f"{out_manifest}: is the input manifest; not overwritten (choose another OUT_DIR)")
    out_manifest = check_output(out_manifest, lambda p: _is_copy_manifest(p, out_dir),
                                f"a manifest of Opus copies in {out_dir.name}/")
    check_output_folder(out_dir, f"; nothing written in {out_dir}")
    for dst in dsts:
        if os.path.lexists(dst) and not (os.path.isfile(dst) and starts_with(Path(dst), b"OggS")):
            raise OutputError(f"{dst}: exists and is not an Ogg file; not overwritten (choose another OUT_DIR)")
    return out_manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manifest", type=Path)
    parser.add_argument("out_dir", type=Path, help="folder for the .ogg files; the manifest goes to OUT_DIR.jsonl")
    parser.add_argument("--compression-level", type=float, default=0.96,
                        help="libsndfile's Opus compression level, 0 (best quality) to 1 (smallest)")
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args(argv)
    # an OSError without a file name (a full disk) is named after the copies' folder
    return run_tool("opus_copy", lambda: _run(args), errors=(ManifestError, OutputError, ValueError),
                    path=args.out_dir)


def _run(args: argparse.Namespace) -> int:
    """Copy; 0 when every utterance was copied, 1 when some were skipped."""
    if not 0 <= args.compression_level <= 1:
        raise ValueError(f"--compression-level {args.compression_level}: must be from 0 to 1")
    if args.jobs < 1:
        raise ValueError(f"--jobs {args.jobs}: must be >= 1")
    utts, problems = read_manifest_report(args.manifest)
    for problem in problems:
        print(f"opus_copy: skipped {problem}", file=sys.stderr)
    if not utts:
        raise ManifestError(args.manifest, None, "no usable utterances; nothing written")
    jobs = [(u.audio_filepath, str(args.out_dir / f"{i:06d}.ogg"), args.compression_level)
            for i, u in enumerate(utts)]
    out_manifest = _check_outputs(args.manifest, args.out_dir, [dst for _, dst, _ in jobs])
    args.out_dir.mkdir(parents=True, exist_ok=True)
    results = _encode_all(jobs, min(args.jobs, len(jobs)))
    copied = []
    for (_, dst, _), utt, result in zip(jobs, utts, results):
        if isinstance(result, str):
            print(f"opus_copy: skipped {result}", file=sys.stderr)
        else:
            copied.append((dst, utt, result))
    if not copied:
        raise OutputError(f"{args.manifest}: no audio file could be copied; {out_manifest} not written")
    with atomic_output(out_manifest) as tmp, open(tmp, "w", encoding="utf-8") as f:
        for dst, utt, duration in copied:
            entry = {"audio_filepath": f"{args.out_dir.name}/{Path(dst).name}", "duration": round(duration, 3),
                     "text": utt.text}
            if utt.speaker:
                entry["speaker"] = utt.speaker
            f.write(json.dumps(entry) + "\n")
    size = sum(Path(dst).stat().st_size for dst, _, _ in copied)
    hours = sum(d for _, _, d in copied) / 3600
    skipped = len(problems) + len(jobs) - len(copied)
    print(f"{len(copied)} files ({skipped} skipped), {hours:.2f} h, {size / 1e6:.1f} MB -> {out_manifest}")
    return 1 if skipped else 0


if __name__ == "__main__":
    sys.exit(main())
