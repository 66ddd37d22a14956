"""``asr transcribe``, ``evaluate`` and ``tune-lm``: the commands that decode audio files, and the
checks of the decoding options they share with ``asr stream`` (:mod:`asr.cli.stream`)."""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from asr.cli.parser import MAX_REFINE_ROUNDS

def cmd_transcribe(args: argparse.Namespace) -> int:
    from asr.align import to_srt
    from asr.audio import AudioError
    from asr.checkpoint import load_recognizer
    from asr.decode import DecodeError
    from asr.outputs import check_output_folder
    from asr.segment import MIN_SEGMENT_S, valid_max_segment_s
    from asr.transcribe import Transcriber

    if not valid_max_segment_s(args.max_segment_s):  # these before the model is read
        raise AudioError(f"--max-segment-s {args.max_segment_s:g}: must be 0 (never cut) or at least {MIN_SEGMENT_S:g} s")
    if args.srt:
        check_output_folder(args.srt, " (--srt names the folder for the subtitle files)")
    if not args.audio and not args.files_from:
        raise AudioError("transcribe: no audio files given (name them, or a list with --files-from)")
    if "-" in args.audio and not os.path.lexists("-"):  # was 'skipped -: no such file', as if a name were wrong
        raise AudioError("-: transcribe reads named files, not standard input; name the file (audio piped in: "
                         "asr stream CKPT -; a list of names on standard input: --files-from -)")
    check_decoding_options(args)
    if args.nbest > 1 and not (_wants_beam(args) and args.json):  # it would be dropped without a word
        raise DecodeError(f"--nbest {args.nbest}: lists the hypotheses of a beam search in --json output; "
                          "add --json and one of --lm, --lexicon, --lexicon-free or --beam-size")
    audio, empty_folders = _with_folders_opened(args.audio)
    paths = _audio_paths(audio, args.files_from)
    recognizer = load_recognizer(args.checkpoint, device=args.device)
    decoder = beam_decoder(args, recognizer.tokenizer, nbest=args.nbest)
    transcriber = Transcriber(recognizer, max_batch_s=args.batch_s, decoder=decoder,
                              word_timestamps=bool(args.json or args.srt), max_segment_s=args.max_segment_s)
    srt_names: set[str] = set()
    failed = total = empty_folders
    srt_kept = 0
    for result in transcriber.transcribe_iter(paths):
        total += 1
        if isinstance(result, AudioError):
            failed += 1
            print(f"asr: skipped {result}", file=sys.stderr)
            continue
        path = result.source
        if args.srt and not _write_srt(Path(args.srt), Path(path).stem, to_srt(result.words or []), srt_names):
            srt_kept += 1
        if args.json:
            record = {"path": _json_path(path), "text": result.text, "duration_s": round(result.duration_s, 3),
                      "decode_s": round(result.decode_s, 4),
                      "words": None if result.words is None else [w.to_dict() for w in result.words]}
            if result.nbest is not None and args.nbest > 1:
                record["nbest"] = [{"text": h.text, "score": round(h.score, 4)} for h in result.nbest]
            if result.segments is not None:
                record["segments"] = [list(span) for span in result.segments]
            print(json.dumps(record))
        else:
            print(f"{path}\t{result.text}")
        sys.stdout.flush()
    if failed:
        print(f"asr: {failed} of {total} files could not be read", file=sys.stderr)
    if srt_kept:
        print(f"asr: {srt_kept} subtitle files not written: they exist already", file=sys.stderr)
    return 1 if failed or srt_kept else 0


def _write_srt(folder: Path, stem: str, srt: str, taken: set[str]) -> bool:
    """Write ``folder/<stem>.srt`` (``<stem>_N.srt`` for a stem already used in this run; see
    :func:`_srt_name`). A file already there is never replaced: the function says so on stderr and
    returns False."""
    from asr.outputs import atomic_output

    target = folder / _srt_name(stem, taken, _name_max(folder))
    if os.path.lexists(target):
        print(f"asr: {target}: exists; not overwritten (remove it or choose another --srt folder)", file=sys.stderr)
        return False
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_output(target) as tmp:
        tmp.write_text(srt, encoding="utf-8")
    return True


def _json_path(path: str) -> str:
    """``path`` as ``--json`` writes it: as it is when it is UTF-8; in a name that is not, each byte
    that is not UTF-8 as the four characters ``\\xNN``. (Python holds such a byte as a lone surrogate,
    ``\\udcNN``, which JSON readers other than Python's refuse or replace.) A name that holds
    those four characters itself reads the same: the form is for people and UTF-8 readers, not a
    way back to the bytes.

    >>> _json_path("café.wav"), _json_path(os.fsdecode(b"caf\\xe9.wav"))
    ('café.wav', 'caf\\\\xe9.wav')
    """
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


NAME_MAX = 255  # bytes of a file name (ext4, XFS, Btrfs, tmpfs), where the system does not say


def _name_max(folder: Path) -> int:
    """The longest file name, in bytes, that ``folder``'s file system takes (eCryptfs: 143)."""
    try:
        limit = os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        return NAME_MAX
    return limit if limit > 0 else NAME_MAX  # (-1: no limit it can tell)


def _srt_name(stem: str, taken: set[str], name_max: int = NAME_MAX) -> str:
    """``<stem>.srt``, or ``<stem>_N.srt`` with the first N from 1 that gives a name not in ``taken``
    (the names of this run, to which it is added); the stem is cut, a character at a time from its
    end, to keep the name within ``name_max`` bytes (an audio name near the limit, or one that
    needs the ``_N``).

    >>> taken = set()
    >>> _srt_name("a", taken), _srt_name("a", taken), len(_srt_name("é" * 200, taken).encode())
    ('a.srt', 'a_1.srt', 254)
    >>> len(_srt_name("a" * 200, taken, name_max=143))  # eCryptfs
    143
    """
    n = 0
    while True:
        tail = f"_{n}.srt" if n else ".srt"
        cut = stem
        while len(os.fsencode(cut + tail)) > name_max:
            cut = cut[:-1]
        if cut + tail not in taken:
            taken.add(cut + tail)
            return cut + tail
        n += 1


def _audio_paths(audio: list[str], files_from: str | None) -> Iterator[str]:
    """``audio``, then the paths listed in ``files_from`` ('-': stdin), one per line, read as they are
    needed. A line is taken as the bytes of a file name, so names that are not UTF-8 work too.

    Raises:
        AudioError: ``files_from`` cannot be opened, its first line holds a NUL byte (binary data),
            or it names no file (empty, or only blank lines and comments); raised here, before any
            audio is read.
    """
    from asr.audio import AudioError
    from asr.manifest import wide_text

    if files_from is None:
        return iter(audio)
    if files_from == "-" and sys.stdin is None:  # started with standard input closed (<&-)
        raise AudioError("-: cannot read the file list (standard input is closed)")
    try:
        stream = sys.stdin.buffer if files_from == "-" else open(files_from, "rb")
    except OSError as e:
        raise AudioError(f"{files_from}: cannot read the file list ({e.strerror or e})") from None
    first = stream.readline(1 << 20)
    wide = wide_text(first[:64])
    if wide:  # Windows Notepad's "Unicode"
        stream.close()
        raise AudioError(f"{files_from}: {wide} text: save the list as UTF-8")
    if b"\0" in first:  # an audio file given as the list: one line, not a skipped "name" per chunk of it
        stream.close()
        raise AudioError(f"{files_from}: not a list of file names, one per line (binary data: an audio file? "
                         "find -print0 output?)")
    lines = (os.fsdecode(raw.rstrip(b"\r\n")) for raw in itertools.chain([first], stream))  # spaces are part of a name
    names = (line for line in lines if line.strip() and not line.startswith("#"))
    first_name = next(names, None)  # read up to it now: a list without one is refused before any audio is read
    if first_name is None:
        stream.close()
        raise AudioError(f"{files_from}: no file names in it")

    def listed() -> Iterator[str]:
        with stream:
            yield first_name
            yield from names

    return itertools.chain(audio, listed())


def _with_folders_opened(audio: list[str]) -> tuple[list[str], int]:
    """``audio`` with each folder replaced by the files under it whose suffix is an audio file's
    (``asr.audio_source.AUDIO_SUFFIXES``, any case), sorted by path, hidden files and folders left
    out; and the number of folders without one, each printed as a skipped input."""
    from asr.audio_source import AUDIO_SUFFIXES

    opened: list[str] = []
    empty = 0
    for name in audio:
        if not os.path.isdir(name):
            opened.append(name)
            continue
        found = []
        for folder, subfolders, files in os.walk(name):
            subfolders[:] = [d for d in subfolders if not d.startswith(".")]
            found += [os.path.join(folder, f) for f in files
                      if not f.startswith(".") and os.path.splitext(f)[1].lower() in AUDIO_SUFFIXES]
        if not found:
            print(f"asr: skipped {name}: a folder without audio files ({' '.join(AUDIO_SUFFIXES)})", file=sys.stderr)
            empty += 1
        opened += sorted(found)
    return opened, empty


def _manifest_to_score(path: str, batch_s: float) -> tuple[list, int]:
    """The usable utterances of the manifest ``path`` and the number of its lines; each bad line
    is printed as ``asr: skipped FILE:LINE: cause`` (missing audio files that look like wrong
    paths: a few, then their sum, ``asr.manifest.missing_audio_summary``), and durations that cut
    the audio or exceed ``--batch-s`` are warned of.

    Raises:
        DecodeError: no line is usable.
        ManifestError: no line is usable, and the sum of missing audio files says why.
    """
    from asr.data import warn_long_utterances
    from asr.decode import DecodeError
    from asr.manifest import missing_audio_summary, read_manifest_report
    from asr.run_data import warn_cut_audio

    utts, problems = read_manifest_report(path)
    listed, summary = missing_audio_summary(path, utts, problems)
    for problem in listed:
        print(f"asr: skipped {problem}", file=sys.stderr)
    if not utts:
        raise summary or DecodeError(f"{path}: no usable utterances")
    if summary:
        print(f"asr: warning: {summary}", file=sys.stderr)
    warn_cut_audio(path, utts)
    warn_long_utterances(utts, batch_s, "--batch-s")
    return utts, len(utts) + len(problems)


def _report_skipped(manifest: str, total: int, scored: int) -> int:
    """Exit status 1 and a closing line when some of the ``total`` utterances were not scored."""
    if scored == total:
        return 0
    print(f"asr: {manifest}: {total - scored} of {total} utterances skipped (bad lines or unreadable audio, "
          f"named above); the figures cover the other {scored}", file=sys.stderr)
    return 1


def cmd_evaluate(args: argparse.Namespace) -> int:
    from asr.checkpoint import load_recognizer
    from asr.evaluate import REPORT_FILES, evaluate_utterances, report_folder
    from asr.outputs import OutputError
    from asr.provenance import result_from_evaluation
    from asr.results import results_path, write_result

    out = Path(args.out) if args.out else Path(args.checkpoint).parent / "decode" / Path(args.manifest).stem
    report_folder(out, args.manifest)  # outputs that would replace something are refused before the work
    if args.results_json:
        results_path(args.results_json)
        if os.path.realpath(args.results_json) in {os.path.realpath(out / name) for name in REPORT_FILES}:
            raise OutputError(f"{args.results_json}: is the report's own {Path(args.results_json).name} "
                              f"(--out {out}); name another --results-json file")
    check_decoding_options(args)
    recognizer = load_recognizer(args.checkpoint, device=args.device)
    utts, total = _manifest_to_score(args.manifest, args.batch_s)
    decoder = beam_decoder(args, recognizer.tokenizer)
    result = evaluate_utterances(recognizer, utts, batch_s=args.batch_s, decoder=decoder, jobs=args.jobs)
    result.write(out, args.manifest)
    print(result.summary())
    print(f"report: {out / 'errs.txt'}")
    if args.results_json:
        record = result_from_evaluation(result, args.checkpoint, args.manifest, test_set=args.test_set,
                                        train_data=args.train_data, decoding=_decoding_label(args),
                                        hardware=args.hardware, device=args.device)
        print(f"results: {write_result(record, args.results_json)}")
    return _report_skipped(args.manifest, total, len(result.utts))


def _decoding_label(args: argparse.Namespace) -> str:
    """How ``asr evaluate`` decoded, for the results file."""
    if not _wants_beam(args):
        return "greedy"
    label = f"beam {50 if args.beam_size is None else args.beam_size}" + (" best-path" if args.best_path else "")
    if args.lm:
        label += f" + {Path(args.lm).name} (alpha {args.lm_weight:g}, beta {args.word_score:g})"
    return label + (" lexicon-free" if args.lexicon_free else "")


def _wants_beam(args: argparse.Namespace) -> bool:
    return bool(args.lm or args.lexicon or args.lexicon_free or args.beam_size is not None)


def _beam_config(args: argparse.Namespace, nbest: int = 1):
    """The BeamSearchConfig of the command-line options; a bad value is a DecodeError naming its option."""
    from asr.beam_search import BeamSearchConfig
    from asr.decode import DecodeError

    try:
        return BeamSearchConfig(beam_size=50 if args.beam_size is None else args.beam_size, beam_threshold=args.beam_threshold,
                                lm_weight=getattr(args, "lm_weight", 2.0),
                                word_score=getattr(args, "word_score", 0.0), nbest=nbest,
                                log_add=not args.best_path)
    except ValueError as e:  # "beam_size=0: must be >= 1": each field is the option of the same name
        field, _, problem = str(e).partition("=")
        raise DecodeError(f"--{field.replace('_', '-')} {problem}") from None


def check_decoding_options(args: argparse.Namespace) -> None:
    """Refuse a bad --device, --jobs or beam-search option (even one greedy decoding would not use)
    before any model or data is read."""
    from asr.checkpoint import resolve_device
    from asr.config import ConfigError
    from asr.decode import DecodeError

    try:
        resolve_device(args.device)
    except ValueError as e:
        raise ConfigError(f"--device {args.device}: {e}") from None
    if not 0 < getattr(args, "batch_s", 1.0) < math.inf:
        raise DecodeError(f"--batch-s {args.batch_s:g}: must be a positive number of seconds")
    if getattr(args, "jobs", 0) < 0:
        raise DecodeError(f"--jobs {args.jobs}: must be >= 0 (0: one per CPU core)")
    _beam_config(args, getattr(args, "nbest", 1))


def beam_decoder(args: argparse.Namespace, tokenizer, nbest: int = 1, force: bool = False):
    """A BeamSearchDecoder from the command-line options, or None for greedy decoding."""
    if not (force or _wants_beam(args)):
        return None
    from asr.beam_search import BeamSearchDecoder

    return BeamSearchDecoder(tokenizer, lm=args.lm, lexicon=args.lexicon, lexicon_free=args.lexicon_free,
                             config=_beam_config(args, nbest))


def _warn_on_lexicon_coverage(decoder, texts: list[str], lm: str) -> None:
    """With a lexicon, a beam search can only emit its words: say so when it holds under half of the
    dev set's running words (an LM of another language or units gives 100 % WER at every weight)."""
    from asr.text import normalize_text

    words = getattr(decoder, "words", None)
    running = [w for text in texts for w in normalize_text(text).split()]
    if words is None or not running:
        return
    vocabulary = {normalize_text(w) for w in words}  # an upper-case lexicon's words score as these
    covered = sum(w in vocabulary for w in running) / len(running)
    if covered < 0.5:
        print(f"asr: warning: {lm}: the lexicon holds {100 * covered:.1f} % of the dev set's {len(running)} "
              "running words; the beam search cannot emit the others", file=sys.stderr)


def cmd_tune_lm(args: argparse.Namespace) -> int:
    from asr.checkpoint import load_recognizer
    from asr.decode import DecodeError
    from asr.tune import (MAX_GRID_POINTS, cached_dev_log_probs, dev_log_probs, greedy_wer, open_cache,
                          parse_grid, tune_weights)

    grids = {}
    for option, spec in (("--lm-weights", args.lm_weights), ("--word-scores", args.word_scores)):
        try:
            grids[option] = parse_grid(spec)
        except ValueError as e:
            raise DecodeError(f"{option}: {e}") from None
    lm_weights, word_scores = grids.values()
    if not 0 <= args.refine <= MAX_REFINE_ROUNDS:  # each round halves the step: 20 take it to a millionth
        raise DecodeError(f"--refine {args.refine}: must be from 0 to {MAX_REFINE_ROUNDS}")
    if len(lm_weights) * len(word_scores) > MAX_GRID_POINTS:
        raise DecodeError(f"--lm-weights {args.lm_weights} --word-scores {args.word_scores}: "
                          f"{len(lm_weights) * len(word_scores):,} pairs; at most {MAX_GRID_POINTS:,} are tried")
    check_decoding_options(args)
    cache = open_cache(args.cache) if args.cache else None  # refused before the model and the LM are read
    recognizer = load_recognizer(args.checkpoint, device=args.device)
    decoder = beam_decoder(args, recognizer.tokenizer, force=True)
    utts, total = _manifest_to_score(args.manifest, args.batch_s)
    if cache is not None:
        utts, log_probs = cached_dev_log_probs(recognizer, utts, cache, args.checkpoint, batch_s=args.batch_s)
    else:
        utts, log_probs = dev_log_probs(recognizer, utts, batch_s=args.batch_s)
    print(f"greedy WER {100 * greedy_wer(recognizer.tokenizer, log_probs, [u.text for u in utts]):.2f} %")
    _warn_on_lexicon_coverage(decoder, [u.text for u in utts], args.lm)
    result = tune_weights(decoder, log_probs, [u.text for u in utts], lm_weights, word_scores,
                          refine_rounds=args.refine, jobs=args.jobs)
    print(result.table())
    print(f"best lm_weight {result.lm_weight:g} word_score {result.word_score:g} WER {100 * result.wer:.2f} % "
          f"({len(utts)} utterances; use --lm-weight {result.lm_weight:g} --word-score {result.word_score:g})")
    return _report_skipped(args.manifest, total, len(utts))
