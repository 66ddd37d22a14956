"""Check that an LM text keeps a dev/test set's transcripts out: exact sentence matches and n-gram overlap.

Prints, per manifest, how many transcripts are a line of the LM text (after ``normalize_text``),
the fraction of the transcripts' word n-grams (default 8-grams) found in the LM text, and the
transcripts all of whose n-grams occur; exits 0 when no manifest overlaps, 1 when one does, 2 on
an unreadable file or a manifest without transcripts. See ``asr/lm_overlap.py``.

Usage:
    python tools/lm_overlap.py LM_TEXT... --manifest DEV.jsonl [--manifest TEST.jsonl] [--order 8]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from asr.errors import run_tool  # noqa: E402
from asr.lm_overlap import LMTextError, lm_overlap, read_lm_lines, read_transcripts  # noqa: E402
from asr.manifest import ManifestError  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("lm_text", nargs="+", help="LM text files, one sentence per line")
    parser.add_argument("--manifest", action="append", required=True, help="dev/test manifest (repeatable)")
    parser.add_argument("--order", type=int, default=8, help="n-gram order of the overlap rate (default 8)")
    args = parser.parse_args(argv)
    return run_tool("lm_overlap", lambda: _run(args), errors=(LMTextError, ManifestError, ValueError))


def _run(args: argparse.Namespace) -> int:
    """0 when no manifest overlaps the LM text, 1 when one does."""
    if args.order < 1:
        raise ValueError(f"--order {args.order}: must be >= 1")
    overlap = False
    sets = [(m, read_transcripts(m, "nothing checked")) for m in args.manifest]  # all before any report
    for manifest, utts in sets:
        report = lm_overlap(read_lm_lines(args.lm_text), [u.text for u in utts],
                            ids=[Path(u.audio_filepath).stem for u in utts], order=args.order)
        print(f"== {manifest}")
        print(report.summary())
        overlap |= not report.clean
    return 1 if overlap else 0


if __name__ == "__main__":
    sys.exit(main())
