"""Command-line interface: ``asr SUBCOMMAND ...``.

User errors (unreadable audio, bad manifests or configs, missing checkpoints) print one line,
``asr: error: <file>: <cause>``, and exit with status 2; no traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import logging
import sys
from pathlib import Path

EXIT_USER_ERROR = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="asr", description="Deep Speech 2-style speech recognition toolkit")
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

    p = sub.add_parser("train", help="train a model: asr train CONFIG.yaml [key=value ...]")
    p.add_argument("config", help="YAML config (overrides of the preset and the training defaults)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. optim.lr=3e-4")
    p.add_argument("--resume", action="store_true", help="continue the run from its last.pt")

    p = sub.add_parser("transcribe", help="transcribe audio files: one 'path<TAB>text' line each")
    p.add_argument("checkpoint")
    p.add_argument("audio", nargs="+", help="audio files (wav, flac, ogg, mp3, sph; any sample rate)")
    p.add_argument("--json", action="store_true", help="one JSON object per file, with duration and decode time")
    p.add_argument("--device", default="cpu")

    p = sub.add_parser("evaluate", help="WER/CER of a checkpoint on a manifest, with a per-utterance report")
    p.add_argument("checkpoint")
    p.add_argument("manifest")
    p.add_argument("--out", help="report folder (default: <checkpoint folder>/decode/<manifest name>)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-s", type=float, default=300.0, help="padded audio seconds per batch")

    p = sub.add_parser("presets", help="list the model presets with their parameter counts")
    p.add_argument("--features", type=int, default=161, help="input feature size (161: DS2 spectrogram)")
    p.add_argument("--vocab", type=int, default=29, help="output vocabulary size (29: characters + blank)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.command is None:
        parser.print_help()
        return 0
    from asr.errors import USER_ERRORS  # imported late: --help stays fast

    try:
        return COMMANDS[args.command](args)
    except USER_ERRORS as e:
        print(f"asr: error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("asr: interrupted", file=sys.stderr)
        return 130


def cmd_prepare(args: argparse.Namespace) -> int:
    from asr.datasets.digits import find_recordings, prepare_digits

    recordings = find_recordings(args.data_dir)
    split = prepare_digits(recordings, args.out, split=args.split, test_speaker=args.test_speaker)
    print(f"train {split.num_train} utterances -> {split.train}")
    print(f"test {split.num_test} utterances -> {split.test}")
    if split.skipped:
        print(f"skipped {split.skipped} unreadable recordings (see the warnings above)")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from asr.train import resolve_config, train

    cfg = resolve_config(args.config, args.overrides)
    progress = _Progress(cfg.epochs)
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


def cmd_transcribe(args: argparse.Namespace) -> int:
    from asr.audio import AudioError
    from asr.transcribe import Transcriber

    transcriber = Transcriber.from_checkpoint(args.checkpoint, device=args.device)
    failed = 0
    for path, result in zip(args.audio, transcriber.transcribe_iter(args.audio)):
        if isinstance(result, AudioError):
            failed += 1
            print(f"asr: skipped {result}", file=sys.stderr)
        elif args.json:
            print(json.dumps({"path": path, "text": result.text, "duration_s": round(result.duration_s, 3),
                              "decode_s": round(result.decode_s, 4)}))
        else:
            print(f"{path}\t{result.text}")
        sys.stdout.flush()
    if failed:
        print(f"asr: {failed} of {len(args.audio)} files could not be read", file=sys.stderr)
    return 1 if failed else 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from asr.checkpoint import load_recognizer
    from asr.data import read_manifest
    from asr.evaluate import evaluate_utterances

    recognizer = load_recognizer(args.checkpoint, device=args.device)
    utts = read_manifest(args.manifest, skip_bad=True)
    if not utts:
        print(f"asr: error: {args.manifest}: no usable utterances", file=sys.stderr)
        return EXIT_USER_ERROR
    result = evaluate_utterances(recognizer, utts, batch_s=args.batch_s)
    out = Path(args.out) if args.out else Path(args.checkpoint).parent / "decode" / Path(args.manifest).stem
    result.write(out)
    print(result.summary())
    print(f"report: {out / 'errs.txt'}")
    return 0


def cmd_presets(args: argparse.Namespace) -> int:
    from asr.model import DeepSpeech2, list_presets, load_preset

    print(f"{'preset':<8} {'parameters':>12}  (features={args.features}, vocabulary={args.vocab})")
    for name in list_presets():
        model = DeepSpeech2(load_preset(name), num_features=args.features, vocab_size=args.vocab)
        print(f"{name:<8} {model.num_params():>12,}")
    return 0


COMMANDS = {
    "prepare": cmd_prepare, "train": cmd_train, "transcribe": cmd_transcribe,
    "evaluate": cmd_evaluate, "presets": cmd_presets,
}


class _Progress:
    """A one-line progress bar on stderr: epoch, batch, loss, audio hours per second, ETA."""

    def __init__(self, epochs: int):
        self.epochs = epochs
        self.tty = sys.stderr.isatty()

    def __call__(self, event: dict) -> None:
        if event["event"] == "epoch":
            extra = f"  dev WER {100 * event['dev_wer']:.2f} %" if "dev_wer" in event else ""
            self._line(f"epoch {event['epoch'] + 1}/{self.epochs} done  step {event['step']}{extra}", final=True)
            return
        total = self.epochs * event["batches"]
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
