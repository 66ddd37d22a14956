"""Build LM text from public-domain books: one normalized sentence per line, dev/test text kept out.

Input books are plain text (Project Gutenberg header and licence removed) or the output of Debian's
``bible`` program (package ``bible-kjv``: the King James Version, public domain). Sentences equal
to a transcript of an ``--exclude-manifest``, and with ``--exclude-order N`` every sentence sharing
a word N-gram with one, are dropped. An existing output is kept unless ``--force``; a file at
``--out`` that is not an earlier LM text (a book, one of the inputs, other text) is never replaced.

Recipe (the KJV, about 4.4 MB of text; then check it and build a 3-gram LM)::

    apt-get install bible-kjv
    mkdir -p data/lm && bible Gen1:1-Rev22:21 > data/lm/kjv.txt
    python tools/lm_text.py data/lm/kjv.txt --format bible --out data/lm/kjv.sentences.txt \\
        --exclude-manifest exp/mini_librispeech-medium_aug/data/dev-4spk.jsonl --exclude-order 8
    python tools/lm_overlap.py data/lm/kjv.sentences.txt --manifest exp/mini_librispeech-medium_aug/data/dev-4spk.jsonl
    asr build-lm data/lm/kjv.sentences.txt --out data/lm/kjv.3gram.arpa --order 3

Usage:
    python tools/lm_text.py BOOK... --out FILE [--format plain|bible|gcide|manifest] [--exclude-manifest M ...]
        [--exclude-order N] [--min-words 3] [--force]
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from asr.errors import run_tool  # noqa: E402
from asr.lm_overlap import LMTextError, read_transcripts  # noqa: E402
from asr.lm_text import BOOK_FORMATS, check_lm_text_output, prepare_lm_text  # noqa: E402
from asr.manifest import ManifestError  # noqa: E402
from asr.outputs import OutputError  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("books", nargs="+", help="book text files (UTF-8), or manifests with --format manifest")
    parser.add_argument("--out", required=True, help="output text file, one sentence per line")
    parser.add_argument("--format", choices=BOOK_FORMATS, default="plain",
                        help="book format; manifest: a manifest's transcripts (e.g. the training set's)")
    parser.add_argument("--exclude-manifest", action="append", default=[],
                        help="manifest whose transcripts must stay out of the LM text (repeatable)")
    parser.add_argument("--exclude-order", type=int, default=0,
                        help="also drop sentences sharing a word n-gram of this order with them (0: exact only)")
    parser.add_argument("--min-words", type=int, default=3, help="skip shorter sentences (default 3)")
    parser.add_argument("--force", action="store_true", help="write the output again when it exists (only over an earlier LM text)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    # an OSError without a file name (--out's folder vanished, the disk filled up) is named after --out
    return run_tool("lm_text", lambda: _run(args), errors=(LMTextError, ManifestError, OutputError, ValueError),
                    path=args.out)


def _run(args: argparse.Namespace) -> None:
    for option in ("exclude_order", "min_words"):
        if getattr(args, option) < 0:
            raise ValueError(f"--{option.replace('_', '-')} {getattr(args, option)}: must be >= 0")
    out = check_lm_text_output(args.out, [*args.books, *args.exclude_manifest])
    if out.exists() and not args.force:
        print(f"{args.out}: exists; nothing to do (--force writes it again)")
        return
    exclude = [u.text for m in args.exclude_manifest for u in read_transcripts(m, "nothing written")]
    report = prepare_lm_text(args.books, out, fmt=args.format, exclude=exclude,
                             exclude_order=args.exclude_order, min_words=args.min_words)
    print(report.summary())


if __name__ == "__main__":
    sys.exit(main())
