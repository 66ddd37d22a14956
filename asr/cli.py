"""Command-line interface: ``asr SUBCOMMAND ...``.

User errors (unreadable audio, bad manifests or configs, missing checkpoints) print one line,
``asr: error: <file>: <cause>``, and exit with status 2; no traceback.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import logging
import math
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

EXIT_USER_ERROR = 2


class _Parser(argparse.ArgumentParser):
    """argparse with usage errors in one line, like every other user error (subcommands inherit it)."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="asr", description="Deep Speech 2-style speech recognition toolkit")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("prepare", help="prepare a corpus: audio and JSON-lines manifests")
    corpora = p.add_subparsers(dest="corpus", metavar="CORPUS", required=True)
    d = corpora.add_parser("digits", help="Free Spoken Digit Dataset (8 kHz wav, resampled to 16 kHz)")
    d.add_argument("--data-dir", help="an FSDD copy (folder with recordings/); default: download it to data/fsdd")
    d.add_argument("--out", required=True, help="output folder for wav/ and the manifests")
    d.add_argument("--split", choices=["official", "speaker"], default="official",
                   help="official: takes 0-4 are the test set; speaker: one speaker is the test set")
    d.add_argument("--test-speaker", default="theo", help="held-out speaker for --split speaker")
    d = corpora.add_parser("librispeech", help="any LibriSpeech-layout tree (LibriSpeech, mini-LibriSpeech): manifests")
    d.add_argument("--data-dir", required=True,
                   help="a split (<speaker>/<chapter>/*.flac), a folder of splits, or a download folder holding LibriSpeech/")
    d.add_argument("--out", required=True, help="output folder for <split>.jsonl, .summary.json, .problems.txt")
    d.add_argument("--splits", help="comma-separated split names to prepare (default: every split found)")
    d.add_argument("--force", action="store_true", help="prepare again splits already prepared")
    d = corpora.add_parser("wsj", help="WSJ0/WSJ1 LDC discs: train_si284, train_si84, test_dev93, test_eval92/93 manifests")
    d.add_argument("--wsj0", nargs="+", default=[], metavar="DIR", help="folder(s) holding the WSJ0 discs (11-1.1/wsj0/...)")
    d.add_argument("--wsj1", nargs="+", default=[], metavar="DIR", help="folder(s) holding the WSJ1 discs (13-34.1/wsj1/...)")
    d.add_argument("--out", required=True, help="output folder for <set>.jsonl, .summary.json, .problems.txt")
    d.add_argument("--sets", help="comma-separated sets (default: train_si284,train_si84,test_dev93,test_eval92,"
                   "test_eval93; also test_eval92_5k, test_dev93_5k, test_eval93_5k)")
    d.add_argument("--mic", type=int, choices=[1, 2], default=1, help="1: Sennheiser close-talking (.wv1), 2: secondary (.wv2)")
    d.add_argument("--verify", action="store_true", help="decode all audio (SPHERE checksums) instead of reading headers")
    d.add_argument("--force", action="store_true", help="prepare again sets already prepared")
    d = corpora.add_parser("musan", help="MUSAN noise/music/speech (asr download musan): noise manifests for augment.noise_manifest")
    d.add_argument("--data-dir", required=True, help="the MUSAN folder (noise/, music/, speech/) or a download folder holding musan/")
    d.add_argument("--out", required=True, help="output folder for musan-<category>.jsonl, .summary.json, .problems.txt")
    d.add_argument("--force", action="store_true", help="prepare again categories already prepared")

    p = sub.add_parser("download", help="download OpenSLR parts: LibriSpeech, mini-LibriSpeech, LM files, MUSAN")
    p.add_argument("parts", nargs="*", metavar="PART",
                   help="part names (train-clean-100, 4-gram.arpa.gz...) or groups (librispeech, mini_librispeech, lm)")
    p.add_argument("--dest", help="download folder (archives extract to DEST/LibriSpeech/<part>/ or DEST/musan/, LM files to DEST/lm/)")
    p.add_argument("--base-url", default=None, help="server holding <resource>/<file> (default: https://www.openslr.org/resources)")
    p.add_argument("--remove-archive", action="store_true", help="delete each archive once extracted")
    p.add_argument("--list", action="store_true", help="print the known parts with URL, size and MD5, and exit")

    p = sub.add_parser("train", help="train a model: asr train CONFIG.yaml [key=value ...]")
    p.add_argument("config", help="YAML config (overrides of the preset and the training defaults)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. optim.lr=3e-4")
    p.add_argument("--resume", action="store_true", help="continue the run from its last.pt")

    p = sub.add_parser("sweep", help="train every combination of a grid of config values, for several seeds")
    p.add_argument("config", help="YAML config every run starts from")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="overrides applied to every run")
    p.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                   help="values of one config key (repeat for more keys; commas inside [] stay in a value)")
    p.add_argument("--seeds", default="0", help="comma-separated seeds (default 0)")
    p.add_argument("--out", required=True, help="sweep folder: one run folder per point and seed, sweep.md, sweep.jsonl")
    p.add_argument("--jobs", type=int, default=1, help="runs trained at once (default 1)")

    p = sub.add_parser("transcribe", help="transcribe audio files: one 'path<TAB>text' line each")
    p.add_argument("checkpoint")
    p.add_argument("audio", nargs="*", help="audio files (wav, flac, ogg, mp3, sph; any sample rate)")
    p.add_argument("--files-from", metavar="LIST",
                   help="also transcribe the audio files listed in LIST, one path per line ('-': stdin; blank lines "
                        "and lines starting with # are skipped), read as the work goes: for lists too long for a "
                        "command line")
    p.add_argument("--batch-s", type=float, default=120.0, help="padded audio seconds per batch (default 120)")
    p.add_argument("--json", action="store_true",
                   help="one JSON object per file: text, duration, decode time, word timestamps and confidences")
    p.add_argument("--srt", metavar="DIR", help="also write DIR/<audio name>.srt subtitles from word timestamps")
    p.add_argument("--max-segment-s", type=float, default=40.0,
                   help="cut longer inputs at pauses into pieces of at most this many seconds, which keeps memory "
                        "bounded on long recordings (default 40: longer than any LibriSpeech utterance; 0: never cut)")
    p.add_argument("--device", default="cpu")
    _add_decoding_args(p)
    p.add_argument("--nbest", type=int, default=1, help="with beam search and --json: list the N best hypotheses")

    p = sub.add_parser("stream", help="transcribe audio as it arrives (forward-only models): partial, then final text")
    p.add_argument("checkpoint", help="a forward-only model (bidirectional: false) with global feature normalization")
    p.add_argument("audio", nargs="+",
                   help="audio files, fed in chunks as a live source delivers them; '-': raw 16-bit mono PCM on "
                        "stdin at the model's sample rate (e.g. from arecord -f S16_LE -r 16000 -c 1 -t raw) "
                        "until it ends or Ctrl-C, which prints the final transcript")
    p.add_argument("--chunk-ms", type=float, default=100.0, help="audio per chunk, milliseconds (default 100)")
    p.add_argument("--partials", action="store_true",
                   help="print each changed partial transcript on stderr as 'SECONDS<TAB>text'")
    p.add_argument("--device", default="cpu")
    _add_decoding_args(p)

    p = sub.add_parser("evaluate", help="WER/CER of a checkpoint on a manifest, with a per-utterance report")
    p.add_argument("checkpoint")
    p.add_argument("manifest")
    p.add_argument("--out", help="report folder (default: <checkpoint folder>/decode/<manifest name>)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-s", type=float, default=300.0, help="padded audio seconds per batch")
    p.add_argument("--results-json", help="also write the result for `asr compare` (WER, training data, model, ...)")
    p.add_argument("--test-set", help="test-set name in the results file, e.g. librispeech-test-clean (default: manifest name)")
    p.add_argument("--train-data", help="training data in the results file (default: from the checkpoint)")
    p.add_argument("--hardware", help="hardware in the results file (default: the evaluation device)")
    _add_decoding_args(p)
    _add_jobs_arg(p)

    p = sub.add_parser("tune-lm", help="search the LM weight (alpha) and word score (beta) on a dev set")
    p.add_argument("checkpoint")
    p.add_argument("manifest", help="dev-set manifest")
    _add_decoding_args(p, tuning=True)
    p.add_argument("--lm-weights", default="0:3:0.5", help="alpha grid: 'a,b,c' or 'start:stop:step' (default 0:3:0.5)")
    p.add_argument("--word-scores", default="-1:3:1", help="beta grid (default -1:3:1)")
    p.add_argument("--refine", type=int, default=0, help="rounds of finer 3x3 search around the best pair")
    p.add_argument("--cache", help="keep the model's log-probs in this file and reuse them on the next run "
                                   "with the same checkpoint and manifest (the acoustic model then does not run)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-s", type=float, default=300.0, help="padded audio seconds per batch")
    _add_jobs_arg(p)

    p = sub.add_parser("build-lm", help="build an n-gram LM (ARPA or KenLM binary) from text files")
    p.add_argument("texts", nargs="+", help="text files, one sentence per line (normalized like transcripts)")
    p.add_argument("--order", type=int, default=3, help="n-gram order (default 3)")
    p.add_argument("--out", required=True, help="output: *.arpa, or *.bin / *.binary / *.klm (needs KenLM)")
    p.add_argument("--prune", type=int, nargs="+", default=[], metavar="COUNT",
                   help="drop n-grams seen at most COUNT times, per order (lmplz style: 0 0 1 drops singleton 3-grams and up)")
    p.add_argument("--units", choices=["words", "chars"], default="words",
                   help="chars: a character LM ('|' = space) for --lexicon-free decoding")
    p.add_argument("--backend", choices=["auto", "kenlm", "python"], default="auto",
                   help="kenlm: lmplz (tools/build_kenlm.sh); python: the built-in Kneser-Ney; auto: kenlm if found")

    p = sub.add_parser("average", help="average the weights of several checkpoints of one run into one")
    p.add_argument("checkpoints", nargs="+", metavar="CKPT", help="checkpoints of one run, e.g. exp/NAME/epoch-*.pt")
    p.add_argument("--out", required=True, help="output checkpoint (must not exist yet)")

    p = sub.add_parser("export", help="a smaller inference checkpoint: training state dropped, weights in half precision")
    p.add_argument("checkpoint", metavar="CKPT", help="any checkpoint (model.pt, best.pt, last.pt, epoch-N.pt)")
    p.add_argument("--out", required=True, help="output checkpoint (must not exist yet)")
    p.add_argument("--dtype", choices=["fp16", "bf16", "fp32"], default="fp16",
                   help="precision of the model weights (loading casts them back to float32)")

    p = sub.add_parser("compare", help="WER table against the DS2 paper's DS1 / DS2 / human numbers")
    p.add_argument("results", nargs="*", help="results files of `asr evaluate --results-json`, or folders searched for them")

    p = sub.add_parser("presets", help="list the model presets with their parameter counts")
    p.add_argument("--features", type=int, default=161, help="input feature size (161: DS2 spectrogram)")
    p.add_argument("--vocab", type=int, default=29, help="output vocabulary size (29: characters + blank)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and hasattr(args, "overrides") and all("=" in a and not a.startswith("-") for a in extra):
        args.overrides += extra  # key=value given after the options
    elif extra and isinstance(getattr(args, "audio", None), list) and not any(a.startswith("-") for a in extra):
        args.audio += extra  # files after an option: argparse gives an optional list nothing past the first
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    for stream in (sys.stdout, sys.stderr):  # file names that are not UTF-8 print as their own bytes
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="surrogateescape")
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USER_ERROR
    from asr.errors import USER_ERRORS  # imported late: --help stays fast

    if sys.stdout is None:  # started with standard output closed (>&-): the output is dropped, as asked
        sys.stdout = open(os.devnull, "w")
    try:
        return COMMANDS[args.command](args)
    except USER_ERRORS as e:
        print(f"asr: error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("asr: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader of the output went away (| head): stop quietly, as cat does
        _stdout_failed()
        return 1
    except OSError as e:  # the system refused a read or write: a full disk, a read-only folder, ...
        if args.verbose:
            raise
        where = f"{e.filename}: " if e.filename else "standard output: " if _stdout_failed() else ""
        print(f"asr: error: {where}{e.strerror or e}", file=sys.stderr)
        return EXIT_USER_ERROR


def _stdout_failed() -> bool:
    """Whether standard output can no longer be written (its flush fails); if so it is pointed at
    /dev/null, so that the flush at exit does not fail again with a traceback."""
    try:
        sys.stdout.flush()
    except OSError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return True
    return False


def cmd_prepare(args: argparse.Namespace) -> int:
    from asr.datasets.digits import find_recordings, prepare_digits

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


def cmd_train(args: argparse.Namespace) -> int:
    from asr.train import resolve_config, train

    cfg = resolve_config(args.config, args.overrides)
    progress = _Progress(cfg.epochs, cfg.max_steps)
    result = train(cfg, resume=args.resume, on_event=progress)
    progress.close()
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun, rank 0 reports
        return 0
    print(f"steps {result.steps}  epochs {result.epochs_done}  best dev WER "
          f"{'n/a' if result.best_dev_wer is None else f'{100 * result.best_dev_wer:.2f} %'}")
    if result.skipped_batches or result.zeroed_utterances:
        print(f"non-finite losses: {result.zeroed_utterances} utterances zeroed, {result.skipped_batches} batches skipped")
    print(f"model: {result.run_dir / 'model.pt'}")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from asr.config import ConfigError
    from asr.sweep import parse_grid_specs, sweep

    grid = parse_grid_specs(args.grid)
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        raise ConfigError(f"--seeds {args.seeds!r}: expected comma-separated integers") from None
    if not seeds:
        raise ConfigError("--seeds: no seed given")
    if not all(0 <= s < 2**32 for s in seeds):  # the range TrainConfig.seed takes
        raise ConfigError(f"--seeds {args.seeds}: each seed must be in [0, {2**32 - 1}]")
    if args.jobs < 1:
        raise ConfigError(f"--jobs {args.jobs}: must be >= 1")

    def report(run) -> None:
        wer = "n/a" if run.best_dev_wer is None else f"{100 * run.best_dev_wer:.2f} %"
        state = f"failed ({run.error})" if run.error else ("already trained" if run.reused else f"{run.wall_s:.0f} s")
        print(f"{run.run_dir.name}: best dev WER {wer}, {state}", flush=True)

    runs = sweep(args.config, grid, seeds, args.out, overrides=args.overrides, jobs=args.jobs, on_run=report)
    print((Path(args.out) / "sweep.md").read_text(encoding="utf-8"), end="")
    failed = sum(r.error is not None for r in runs)
    if failed:
        print(f"asr: {failed} of {len(runs)} runs failed (their errors are above and in <run>/train.out)", file=sys.stderr)
    return 1 if failed else 0


def cmd_transcribe(args: argparse.Namespace) -> int:
    from asr.audio import AudioError
    from asr.transcribe import Transcriber

    from asr.align import to_srt
    from asr.checkpoint import load_recognizer

    from asr.segment import MIN_SEGMENT_S, valid_max_segment_s

    if not valid_max_segment_s(args.max_segment_s):  # these before the model is read
        raise AudioError(f"--max-segment-s {args.max_segment_s:g}: must be 0 (never cut) or at least {MIN_SEGMENT_S:g} s")
    if not 0 < args.batch_s < math.inf:
        raise AudioError(f"--batch-s {args.batch_s:g}: must be a positive number of seconds")
    if args.srt and Path(args.srt).exists() and not Path(args.srt).is_dir():
        raise AudioError(f"--srt {args.srt}: exists and is not a folder")
    if not args.audio and not args.files_from:
        raise AudioError("transcribe: no audio files given (name them, or a list with --files-from)")
    _check_decoding_options(args)
    paths = _audio_paths(args.audio, args.files_from)
    recognizer = load_recognizer(args.checkpoint, device=args.device)
    decoder = _beam_decoder(args, recognizer.tokenizer, nbest=args.nbest)
    transcriber = Transcriber(recognizer, max_batch_s=args.batch_s, decoder=decoder,
                              word_timestamps=bool(args.json or args.srt), max_segment_s=args.max_segment_s)
    srt_names: set[str] = set()
    failed = total = srt_kept = 0
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
            record = {"path": path, "text": result.text, "duration_s": round(result.duration_s, 3),
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
    """Write ``folder/<stem>.srt`` (``<stem>_N.srt`` for a stem already used in this run). A file
    already there is never replaced: the function says so on stderr and returns False."""
    from asr.outputs import atomic_output

    name, n = stem, 0
    while name in taken:
        n += 1
        name = f"{stem}_{n}"
    taken.add(name)
    target = folder / f"{name}.srt"
    if os.path.lexists(target):
        print(f"asr: {target}: exists; not overwritten (remove it or choose another --srt folder)", file=sys.stderr)
        return False
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_output(target) as tmp:
        tmp.write_text(srt, encoding="utf-8")
    return True


def _audio_paths(audio: list[str], files_from: str | None) -> Iterator[str]:
    """``audio``, then the paths listed in ``files_from`` ('-': stdin), one per line, read as they are
    needed. A line is taken as the bytes of a file name, so names that are not UTF-8 work too.

    Raises:
        AudioError: ``files_from`` cannot be opened (raised here, before any audio is read).
    """
    from asr.audio import AudioError

    if files_from is None:
        return iter(audio)
    if files_from == "-" and sys.stdin is None:  # started with standard input closed (<&-)
        raise AudioError("-: cannot read the file list (standard input is closed)")
    try:
        stream = sys.stdin.buffer if files_from == "-" else open(files_from, "rb")
    except OSError as e:
        raise AudioError(f"{files_from}: cannot read the file list ({e.strerror or e})") from None

    def listed() -> Iterator[str]:
        with stream:
            for raw in stream:
                line = os.fsdecode(raw.strip())
                if line and not line.startswith("#"):
                    yield line

    return itertools.chain(audio, listed())


def cmd_stream(args: argparse.Namespace) -> int:
    from asr.audio import AudioError, load_audio, pcm16_chunks
    from asr.checkpoint import load_recognizer
    from asr.streaming import Stream, StreamingError

    if args.chunk_ms <= 0:
        raise StreamingError(f"--chunk-ms {args.chunk_ms}: must be positive")
    _check_decoding_options(args)
    if "-" in args.audio and sys.stdin is None:  # started with standard input closed (<&-)
        raise StreamingError("-: standard input is closed; no audio can arrive on it")
    recognizer = load_recognizer(args.checkpoint, device=args.device)
    decoder = _beam_decoder(args, recognizer.tokenizer)
    try:
        Stream(recognizer)  # refuses a model that cannot stream before any audio is read
    except StreamingError as e:
        raise StreamingError(f"{args.checkpoint}: {e}") from None
    rate = recognizer.features.cfg.sample_rate
    chunk = max(1, round(rate * args.chunk_ms / 1000))
    frame_s = recognizer.frame_shift_s
    failed = 0
    ended = _FirstInterrupt()
    for path in args.audio:
        if path == "-":
            chunks = ended.until_interrupt(pcm16_chunks(sys.stdin.buffer, chunk))
        else:
            try:
                wave = load_audio(path, rate)  # (S,)
            except AudioError as e:
                failed += 1
                print(f"asr: skipped {e}", file=sys.stderr)
                continue
            chunks = (wave[i:i + chunk] for i in range(0, len(wave), chunk))
        stream, heard, lag_s, compute_s, slowest_s, text = Stream(recognizer, decoder), 0, 0.0, 0.0, 0.0, ""
        for samples in chunks:
            start = time.perf_counter()
            partial = stream.accept(samples)
            spent = time.perf_counter() - start
            compute_s, slowest_s, heard = compute_s + spent, max(slowest_s, spent), heard + len(samples)
            lag_s = max(lag_s, heard / rate - stream.num_frames * frame_s)  # audio not yet in the output
            if args.partials and partial.text != text:
                print(f"{heard / rate:.2f}\t{partial.text}", file=sys.stderr, flush=True)
            text = partial.text
        if path == "-" and not heard:  # stdin was empty (or ended inside the first sample)
            failed += 1
            print("asr: skipped -: no audio arrived on standard input", file=sys.stderr)
            continue
        start = time.perf_counter()
        final = stream.finish()
        compute_s += time.perf_counter() - start
        print(f"{path}\t{final.text}", flush=True)
        audio_s = heard / rate
        print(f"asr: {path}: {audio_s:.2f} s in chunks of {args.chunk_ms:g} ms; compute {compute_s:.2f} s "
              f"(RTF {compute_s / max(audio_s, 1e-9):.3f}), slowest chunk {1000 * slowest_s:.0f} ms; "
              f"output behind the audio by at most {lag_s:.2f} s", file=sys.stderr)
        if ended.interrupted:  # Ctrl-C finished the live input: the inputs after it are left alone
            break
    if failed:
        print(f"asr: {failed} of {len(args.audio)} files could not be read", file=sys.stderr)
    return 1 if failed else 0


class _FirstInterrupt:
    """Ends a live input on Ctrl-C instead of aborting: the first SIGINT only marks the input as
    ended (the chunk being decoded is finished, so the final transcript is whole); a second one
    interrupts as usual."""

    def __init__(self) -> None:
        self.interrupted = False

    def until_interrupt(self, chunks: Iterator) -> Iterator:
        previous = signal.signal(signal.SIGINT, self._handle)
        print("asr: -: listening on standard input (Ctrl-C or the end of the input finishes it)",
              file=sys.stderr, flush=True)
        try:
            for item in chunks:
                yield item
                if self.interrupted:
                    return
        finally:
            signal.signal(signal.SIGINT, previous)

    def _handle(self, signum, frame) -> None:
        self.interrupted = True
        signal.signal(signal.SIGINT, signal.default_int_handler)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from asr.checkpoint import load_recognizer
    from asr.data import read_manifest
    from asr.evaluate import evaluate_utterances, report_folder
    from asr.results import results_path, result_from_evaluation, write_result

    out = Path(args.out) if args.out else Path(args.checkpoint).parent / "decode" / Path(args.manifest).stem
    report_folder(out, args.manifest)  # outputs that would replace something are refused before the work
    if args.results_json:
        results_path(args.results_json)
    _check_decoding_options(args)
    recognizer = load_recognizer(args.checkpoint, device=args.device)
    utts = read_manifest(args.manifest, skip_bad=True)
    if not utts:
        print(f"asr: error: {args.manifest}: no usable utterances", file=sys.stderr)
        return EXIT_USER_ERROR
    result = evaluate_utterances(recognizer, utts, batch_s=args.batch_s,
                                 decoder=_beam_decoder(args, recognizer.tokenizer), jobs=args.jobs)
    result.write(out, args.manifest)
    print(result.summary())
    print(f"report: {out / 'errs.txt'}")
    if args.results_json:
        record = result_from_evaluation(result, args.checkpoint, args.manifest, test_set=args.test_set,
                                        train_data=args.train_data, decoding=_decoding_label(args),
                                        hardware=args.hardware, device=args.device)
        print(f"results: {write_result(record, args.results_json)}")
    return 0


def _decoding_label(args: argparse.Namespace) -> str:
    """How ``asr evaluate`` decoded, for the results file."""
    if not _wants_beam(args):
        return "greedy"
    label = f"beam {50 if args.beam_size is None else args.beam_size}" + (" best-path" if args.best_path else "")
    if args.lm:
        label += f" + {Path(args.lm).name} (alpha {args.lm_weight:g}, beta {args.word_score:g})"
    return label + (" lexicon-free" if args.lexicon_free else "")


def _add_decoding_args(p: argparse.ArgumentParser, tuning: bool = False) -> None:
    """Beam-search options; without --lm, --lexicon, --lexicon-free or --beam-size decoding is greedy."""
    g = p.add_argument_group("beam search (greedy decoding unless one of --lm, --lexicon, --lexicon-free, --beam-size)")
    g.add_argument("--lm", required=tuning, help="KenLM n-gram model, ARPA or binary (see asr build-lm)")
    g.add_argument("--lexicon", help="lexicon file: 'word [units...]' per line (default: the LM's words)")
    g.add_argument("--lexicon-free", action="store_true",
                   help="decode any unit sequence (the LM must be token-level: build-lm --units chars)")
    g.add_argument("--beam-size", type=int, help="hypotheses kept per frame (default 50)")
    g.add_argument("--beam-threshold", type=float, default=25.0, help="score margin of kept hypotheses (default 25)")
    g.add_argument("--best-path", action="store_true",
                   help="score a hypothesis by its best CTC alignment only (Viterbi) instead of the sum of its "
                        "alignments (the default; more accurate)")
    if not tuning:
        g.add_argument("--lm-weight", type=float, default=2.0, help="alpha, the LM's weight (default 2.0)")
        g.add_argument("--word-score", type=float, default=0.0, help="beta, added per word (default 0.0)")


def _add_jobs_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--jobs", type=int, default=0,
                   help="beam-search processes (default 0: one per CPU core); the result does not depend on it")


def _wants_beam(args: argparse.Namespace) -> bool:
    return bool(args.lm or args.lexicon or args.lexicon_free or args.beam_size is not None)


def _beam_config(args: argparse.Namespace, nbest: int = 1):
    """The BeamSearchConfig of the command-line options; a bad value is a DecodeError naming its option."""
    from asr.decode import BeamSearchConfig, DecodeError

    try:
        return BeamSearchConfig(beam_size=50 if args.beam_size is None else args.beam_size, beam_threshold=args.beam_threshold,
                                lm_weight=getattr(args, "lm_weight", 2.0),
                                word_score=getattr(args, "word_score", 0.0), nbest=nbest,
                                log_add=not args.best_path)
    except ValueError as e:  # "beam_size=0: must be >= 1": each field is the option of the same name
        field, _, problem = str(e).partition("=")
        raise DecodeError(f"--{field.replace('_', '-')} {problem}") from None


def _check_decoding_options(args: argparse.Namespace) -> None:
    """Refuse a bad --device, --jobs or beam-search option (even one greedy decoding would not use)
    before any model or data is read."""
    from asr.checkpoint import resolve_device
    from asr.config import ConfigError
    from asr.decode import DecodeError

    try:
        resolve_device(args.device)
    except ValueError as e:
        raise ConfigError(f"--device {args.device}: {e}") from None
    if getattr(args, "jobs", 0) < 0:
        raise DecodeError(f"--jobs {args.jobs}: must be >= 0 (0: one per CPU core)")
    _beam_config(args, getattr(args, "nbest", 1))


def _beam_decoder(args: argparse.Namespace, tokenizer, nbest: int = 1, force: bool = False):
    """A BeamSearchDecoder from the command-line options, or None for greedy decoding."""
    if not (force or _wants_beam(args)):
        return None
    from asr.decode import BeamSearchDecoder

    return BeamSearchDecoder(tokenizer, lm=args.lm, lexicon=args.lexicon, lexicon_free=args.lexicon_free,
                             config=_beam_config(args, nbest))


def cmd_tune_lm(args: argparse.Namespace) -> int:
    from asr.checkpoint import load_recognizer
    from asr.data import read_manifest
    from asr.decode import DecodeError
    from asr.tune import MAX_GRID_POINTS, cached_dev_log_probs, dev_log_probs, greedy_wer, parse_grid, tune_weights

    try:
        lm_weights, word_scores = parse_grid(args.lm_weights), parse_grid(args.word_scores)
    except ValueError as e:
        raise DecodeError(str(e)) from None
    if not lm_weights or not word_scores or args.refine < 0:
        raise DecodeError("tune-lm: the grids must not be empty and --refine must be >= 0")
    if len(lm_weights) * len(word_scores) > MAX_GRID_POINTS:
        raise DecodeError(f"--lm-weights {args.lm_weights} --word-scores {args.word_scores}: "
                          f"{len(lm_weights) * len(word_scores):,} pairs; at most {MAX_GRID_POINTS:,} are tried")
    _check_decoding_options(args)
    recognizer = load_recognizer(args.checkpoint, device=args.device)
    decoder = _beam_decoder(args, recognizer.tokenizer, force=True)
    utts = read_manifest(args.manifest, skip_bad=True)
    if not utts:
        print(f"asr: error: {args.manifest}: no usable utterances", file=sys.stderr)
        return EXIT_USER_ERROR
    if args.cache:
        utts, log_probs = cached_dev_log_probs(recognizer, utts, args.cache, args.checkpoint, batch_s=args.batch_s)
    else:
        utts, log_probs = dev_log_probs(recognizer, utts, batch_s=args.batch_s)
    print(f"greedy WER {100 * greedy_wer(recognizer.tokenizer, log_probs, [u.text for u in utts]):.2f} %")
    result = tune_weights(decoder, log_probs, [u.text for u in utts], lm_weights, word_scores,
                          refine_rounds=args.refine, jobs=args.jobs)
    print(result.table())
    print(f"best lm_weight {result.lm_weight:g} word_score {result.word_score:g} WER {100 * result.wer:.2f} % "
          f"({len(utts)} utterances; use --lm-weight {result.lm_weight:g} --word-score {result.word_score:g})")
    return 0


def cmd_build_lm(args: argparse.Namespace) -> int:
    from asr.lm import KENLM_MAX_ORDER, LMError, build_lm

    if not 1 <= args.order <= KENLM_MAX_ORDER:
        raise LMError(f"--order {args.order}: must be from 1 to {KENLM_MAX_ORDER} (the highest order KenLM loads)")
    report = build_lm(args.texts, args.order, args.out, prune=args.prune, units=args.units, backend=args.backend)
    counts = " ".join(f"{n}-grams={c}" for n, c in enumerate(report.ngram_counts, start=1))
    print(f"{report.path}: {report.sentences} sentences, {counts} ({report.backend})")
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
    from asr.datasets.openslr import OPENSLR_URL, describe_parts, fetch_parts

    if args.list:
        print(describe_parts())
        return 0
    if not args.parts or not args.dest:
        print("asr: error: download needs PART... and --dest DIR (asr download --list shows the parts)", file=sys.stderr)
        return EXIT_USER_ERROR
    try:
        paths = fetch_parts(args.parts, args.dest, base_url=args.base_url or OPENSLR_URL,
                            remove_archive=args.remove_archive)
    except ValueError as e:  # an unknown part name
        print(f"asr: error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    for path in paths:
        print(path)
    return 0


def cmd_average(args: argparse.Namespace) -> int:
    from asr.averaging import write_average

    out = write_average(args.checkpoints, args.out)
    print(f"{out}: average of {len(args.checkpoints)} checkpoints")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from asr.checkpoint import write_export

    out = write_export(args.checkpoint, args.out, args.dtype)
    size_mb = [Path(p).stat().st_size / 1e6 for p in (args.checkpoint, out)]
    print(f"{out}: {args.dtype} weights, {size_mb[1]:.1f} MB ({args.checkpoint}: {size_mb[0]:.1f} MB)")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from asr.results import comparison_table, read_results

    print(comparison_table(read_results(args.results)))
    return 0


def cmd_presets(args: argparse.Namespace) -> int:
    import torch

    from asr.config import ConfigError
    from asr.model import DeepSpeech2, list_presets, load_preset

    if args.features < 1:
        raise ConfigError(f"--features {args.features}: must be >= 1")
    if args.vocab < 2:
        raise ConfigError(f"--vocab {args.vocab}: must be >= 2 (the CTC blank and at least one token)")
    print(f"{'preset':<8} {'parameters':>12}  (features={args.features}, vocabulary={args.vocab})")
    for name in list_presets():
        with torch.device("meta"):  # shapes only: a count needs no memory, however large the model
            model = DeepSpeech2(load_preset(name), num_features=args.features, vocab_size=args.vocab)
        print(f"{name:<8} {model.num_params():>12,}")
    return 0


COMMANDS = {
    "prepare": cmd_prepare, "train": cmd_train, "sweep": cmd_sweep, "transcribe": cmd_transcribe,
    "evaluate": cmd_evaluate, "stream": cmd_stream, "presets": cmd_presets,
    "download": cmd_download, "compare": cmd_compare, "average": cmd_average, "export": cmd_export, "tune-lm": cmd_tune_lm, "build-lm": cmd_build_lm,
}


class _Progress:
    """A one-line progress bar on stderr: epoch, batch, loss, audio hours per second, ETA."""

    def __init__(self, epochs: int, max_steps: int = 0):
        self.epochs = epochs
        self.max_steps = max_steps
        self.tty = sys.stderr.isatty()

    def __call__(self, event: dict) -> None:
        if event["event"] in ("epoch", "stop"):
            extra = f"  dev WER {100 * event['dev_wer']:.2f} %" if "dev_wer" in event else ""
            what = "done" if event["event"] == "epoch" else "stopped inside the epoch at"
            self._line(f"epoch {event['epoch'] + 1}/{self.epochs} {what}  step {event['step']}{extra}", final=True)
            return
        total = self.epochs * event["batches"]
        if self.max_steps:
            total = min(total, self.max_steps)
        done = event["epoch"] * event["batches"] + event["batch"]
        rate = event["run_steps"] / event["elapsed_s"]  # steps per second in this run
        eta = (total - done) / rate if rate > 0 else float("nan")
        width = 20
        filled = int(width * event["batch"] / event["batches"])
        bar = "#" * filled + "-" * (width - filled)
        self._line(
            f"epoch {event['epoch'] + 1}/{self.epochs} [{bar}] {event['batch']}/{event['batches']} "
            f"loss {event['loss']:.3f} lr {event['lr']:.2e} {event['audio_h_per_s']:.3f} audio-h/s ETA {_fmt_s(eta)}",
            final=not self.tty,
        )

    def _line(self, text: str, final: bool) -> None:
        if self.tty:
            sys.stderr.write("\r\033[K" + text + ("\n" if final else ""))
        elif final:
            sys.stderr.write(text + "\n")
        sys.stderr.flush()

    def close(self) -> None:
        if self.tty:
            sys.stderr.write("\n")


def _fmt_s(seconds: float) -> str:
    if seconds != seconds:  # NaN
        return "?"
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


if __name__ == "__main__":
    sys.exit(main())
