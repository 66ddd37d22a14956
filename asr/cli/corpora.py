"""``asr prepare``, ``download`` and ``build-lm``: the commands that make data and LMs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from asr.cli.parser import EXIT_USER_ERROR


def cmd_prepare(args: argparse.Namespace) -> int:
    from asr.datasets.digits import find_recordings, prepare_digits
    from asr.outputs import check_output_folder

    check_output_folder(args.out, " (--out names the folder for the manifests)")  # before reading a whole corpus
    if args.corpus == "librispeech":
        return _prepare_librispeech(args)
    if args.corpus == "wsj":
        return _prepare_wsj(args)
    if args.corpus == "musan":
        return _prepare_musan(args)
    recordings = find_recordings(args.data_dir)
    split = prepare_digits(recordings, args.out, split=args.split, test_speaker=args.test_speaker)
    print(f"train {split.num_train} utterances -> {split.train}")
    print(f"test {split.num_test} utterances -> {split.test}")
    print(f"lexicon of the ten digit words -> {split.words}")
    if split.skipped:
        print(f"skipped {split.skipped} unreadable recordings (see the warnings above)")
    return 0


def _prepare_wsj(args: argparse.Namespace) -> int:
    from asr.datasets.wsj import prepare_wsj

    sets = [s for s in args.sets.split(",") if s] if args.sets else None
    for report in prepare_wsj(args.wsj0, args.wsj1, args.out, sets=sets, mic=args.mic, verify=args.verify,
                              force=args.force):
        print(report.summary())
        if report.problems:
            print(f"  {len(report.problems)} problems, listed in {Path(args.out) / (report.name + '.problems.txt')}")
    return 0


def _prepare_musan(args: argparse.Namespace) -> int:
    from asr.datasets.musan import prepare_musan

    return _print_reports(prepare_musan(args.data_dir, args.out, force=args.force), args.out)


def _prepare_librispeech(args: argparse.Namespace) -> int:
    from asr.datasets.librispeech import prepare_librispeech

    splits = [s for s in args.splits.split(",") if s] if args.splits else None
    return _print_reports(prepare_librispeech(args.data_dir, args.out, splits=splits, force=args.force), args.out)


def _print_reports(reports, out: str) -> int:
    for report in reports:
        print(report.summary())
        if report.problems:
            print(f"  {len(report.problems)} problems, listed in {Path(out) / (report.name + '.problems.txt')}")
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    """Fetch each part; one that fails is reported and the others are still fetched (status 2)."""
    from asr.datasets.download import DownloadError
    from asr.datasets.openslr import OPENSLR_URL, describe_parts, fetch_parts, resolve_parts
    from asr.errors import error_line, say

    if args.list:
        print(describe_parts())
        return 0
    if not args.parts or not args.dest:
        print("asr: error: download needs PART... and --dest DIR (asr download --list shows the parts)", file=sys.stderr)
        return EXIT_USER_ERROR
    try:
        parts = resolve_parts(args.parts)
    except ValueError as e:  # an unknown part name
        print(f"asr: error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    failed = []
    for part in parts:
        try:
            [path] = fetch_parts([part], args.dest, base_url=args.base_url or OPENSLR_URL,
                                 remove_archive=args.remove_archive)
        except (DownloadError, OSError) as e:  # a failed transfer, a file in the way, a full disk
            say(f"asr: error: {error_line(e)}")
            failed.append(part)
            continue
        print(path, flush=True)
    if failed and len(parts) > 1:
        say(f"asr: {len(failed)} of {len(parts)} parts not fetched: {' '.join(failed)}")
    return EXIT_USER_ERROR if failed else 0


def cmd_build_lm(args: argparse.Namespace) -> int:
    from asr.lm import KENLM_MAX_ORDER, LMError
    from asr.lm_build import build_lm

    if not 1 <= args.order <= KENLM_MAX_ORDER:
        raise LMError(f"--order {args.order}: must be from 1 to {KENLM_MAX_ORDER} (the highest order KenLM loads)")
    report = build_lm(args.texts, args.order, args.out, prune=args.prune, units=args.units, backend=args.backend)
    counts = " ".join(f"{n}-grams={c}" for n, c in enumerate(report.ngram_counts, start=1))
    print(f"{report.path}: {report.sentences} sentences, {counts} ({report.backend})")
    return 0
