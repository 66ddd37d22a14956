"""The ``asr`` argument parser: every subcommand and option, with its help."""

from __future__ import annotations

import argparse
import re

EXIT_USER_ERROR = 2
MAX_REFINE_ROUNDS = 20  # tune-lm --refine


class _Parser(argparse.ArgumentParser):
    """argparse with usage errors in one line, like every other user error (subcommands inherit it)."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _path(text: str) -> str:
    """A file or folder argument: an empty one (an unset shell variable) is refused, not taken for
    "not given" or for the current folder."""
    if not text:
        raise argparse.ArgumentTypeError("an empty path")
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="asr", description="Deep Speech 2-style speech recognition toolkit")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("prepare", help="prepare a corpus: audio and JSON-lines manifests")
    corpora = p.add_subparsers(dest="corpus", metavar="CORPUS", required=True)
    d = corpora.add_parser("digits", help="Free Spoken Digit Dataset (8 kHz wav, resampled to 16 kHz)")
    d.add_argument("--data-dir", type=_path,
                   help="an FSDD copy (folder with recordings/); default: download it to data/fsdd")
    d.add_argument("--out", type=_path, required=True, help="output folder for wav/ and the manifests")
    d.add_argument("--split", choices=["official", "speaker"], default="official",
                   help="official: takes 0-4 are the test set; speaker: one speaker is the test set")
    d.add_argument("--test-speaker", default="theo", help="held-out speaker for --split speaker")
    d = corpora.add_parser("librispeech", help="any LibriSpeech-layout tree (LibriSpeech, mini-LibriSpeech): manifests")
    d.add_argument("--data-dir", type=_path, required=True,
                   help="a split (<speaker>/<chapter>/*.flac), a folder of splits, or a download folder holding LibriSpeech/")
    d.add_argument("--out", type=_path, required=True,
                   help="output folder for <split>.jsonl, .summary.json, .problems.txt")
    d.add_argument("--splits", help="comma-separated split names to prepare (default: every split found)")
    d.add_argument("--force", action="store_true", help="prepare again splits already prepared")
    d = corpora.add_parser("wsj", help="WSJ0/WSJ1 LDC discs: train_si284, train_si84, test_dev93, test_eval92/93 manifests")
    d.add_argument("--wsj0", type=_path, nargs="+", default=[], metavar="DIR",
                   help="folder(s) holding the WSJ0 discs (11-1.1/wsj0/...)")
    d.add_argument("--wsj1", type=_path, nargs="+", default=[], metavar="DIR",
                   help="folder(s) holding the WSJ1 discs (13-34.1/wsj1/...)")
    d.add_argument("--out", type=_path, required=True,
                   help="output folder for <set>.jsonl, .summary.json, .problems.txt")
    d.add_argument("--sets", help="comma-separated sets (default: train_si284,train_si84,test_dev93,test_eval92,"
                   "test_eval93; also test_eval92_5k, test_dev93_5k, test_eval93_5k)")
    d.add_argument("--mic", type=int, choices=[1, 2], default=1, help="1: Sennheiser close-talking (.wv1), 2: secondary (.wv2)")
    d.add_argument("--verify", action="store_true", help="decode all audio (SPHERE checksums) instead of reading headers")
    d.add_argument("--force", action="store_true", help="prepare again sets already prepared")
    d = corpora.add_parser("musan", help="MUSAN noise/music/speech (asr download musan): noise manifests for augment.noise_manifest")
    d.add_argument("--data-dir", type=_path, required=True,
                   help="the MUSAN folder (noise/, music/, speech/) or a download folder holding musan/")
    d.add_argument("--out", type=_path, required=True,
                   help="output folder for musan-<category>.jsonl, .summary.json, .problems.txt")
    d.add_argument("--force", action="store_true", help="prepare again categories already prepared")

    p = sub.add_parser("download", help="download OpenSLR parts: LibriSpeech, mini-LibriSpeech, LM files, MUSAN")
    p.add_argument("parts", nargs="*", metavar="PART",
                   help="part names (train-clean-100, 4-gram.arpa.gz...) or groups (librispeech, mini_librispeech, lm)")
    p.add_argument("--dest", type=_path,
                   help="download folder (archives extract to DEST/LibriSpeech/<part>/ or DEST/musan/, LM files to DEST/lm/)")
    p.add_argument("--base-url", default=None, help="server holding <resource>/<file> (default: https://www.openslr.org/resources)")
    p.add_argument("--remove-archive", action="store_true", help="delete each archive once extracted")
    p.add_argument("--list", action="store_true", help="print the known parts with URL, size and MD5, and exit")

    p = sub.add_parser("train", help="train a model: asr train CONFIG.yaml [key=value ...]")
    p.add_argument("config", type=_path, help="YAML config (overrides of the preset and the training defaults)")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. optim.lr=3e-4")
    p.add_argument("--resume", action="store_true", help="continue the run from its last.pt")

    p = sub.add_parser("sweep", help="train every combination of a grid of config values, for several seeds")
    p.add_argument("config", type=_path, help="YAML config every run starts from")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="overrides applied to every run")
    p.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                   help="values of one config key (repeat for more keys; commas inside [] stay in a value)")
    p.add_argument("--seeds", default="0", help="comma-separated seeds (default 0)")
    p.add_argument("--out", type=_path, required=True,
                   help="sweep folder: one run folder per point and seed, sweep.md, sweep.jsonl")
    p.add_argument("--jobs", type=int, default=1, help="runs trained at once (default 1)")

    p = sub.add_parser("transcribe", help="transcribe audio files: one 'path<TAB>text' line each")
    p.add_argument("checkpoint", type=_path)
    p.add_argument("audio", nargs="*", help="audio files (wav, flac, ogg, mp3, sph; any sample rate), or folders: the audio "
                                                "files under them, by name, sorted")
    p.add_argument("--files-from", type=_path, metavar="LIST",
                   help="also transcribe the audio files listed in LIST, one path per line ('-': stdin; blank lines "
                        "and lines starting with # are skipped), read as the work goes: for lists too long for a "
                        "command line")
    p.add_argument("--batch-s", type=float, default=120.0, help="padded audio seconds per batch (default 120)")
    p.add_argument("--json", action="store_true",
                   help="one JSON object per file: path, text, duration, decode time, word timestamps and "
                        "confidences (a byte of a file name that is not UTF-8 is written as the text \\xNN)")
    p.add_argument("--srt", type=_path, metavar="DIR",
                   help="also write DIR/<audio name>.srt subtitles from word timestamps")
    p.add_argument("--max-segment-s", type=float, default=40.0,
                   help="cut longer inputs at pauses into pieces of at most this many seconds, which keeps memory "
                        "bounded on long recordings (default 40: longer than any LibriSpeech utterance; 0: never cut)")
    p.add_argument("--device", default="cpu")
    _add_decoding_args(p)
    p.add_argument("--nbest", type=int, default=1, help="with beam search and --json: list the N best hypotheses")

    p = sub.add_parser("stream", help="transcribe audio as it arrives (forward-only models): partial, then final text")
    p.add_argument("checkpoint", type=_path,
                   help="a forward-only model (bidirectional: false) with global feature normalization")
    p.add_argument("audio", nargs="+",
                   help="audio files, fed in chunks as a live source delivers them; '-': raw PCM on stdin "
                        "(16-bit mono at the model's sample rate unless --rate, --channels, --format say otherwise; "
                        "e.g. from arecord -f S16_LE -r 44100 -c 2 -t raw with --rate 44100 --channels 2) "
                        "until it ends or Ctrl-C, which prints the final transcript")
    p.add_argument("--chunk-ms", type=float, default=100.0,
                   help="audio per chunk, milliseconds, at most 10000 (default 100)")
    g = p.add_argument_group("raw audio on standard input ('-' only)")
    g.add_argument("--rate", type=int, metavar="HZ",
                   help="its sample rate, 8000 to 768000 Hz (default: the model's); another is resampled as it "
                        "arrives, which holds back the filter's reach and one block of input: 4.3 ms from 48 kHz, "
                        "14 ms from 44.1 kHz")
    g.add_argument("--channels", type=int, metavar="N", help="interleaved channels, 1 to 64, averaged to mono (default 1)")
    g.add_argument("--format", choices=["s16le", "f32le"],
                   help="samples: 16-bit signed integers (the default) or 32-bit floats, little-endian "
                        "(arecord -f S16_LE / FLOAT_LE, sox -e signed -b 16 / -e float -b 32, ffmpeg -f s16le / f32le)")
    p.add_argument("--partials", action="store_true",
                   help="print each changed partial transcript on stderr as 'SECONDS<TAB>text'")
    p.add_argument("--device", default="cpu")
    _add_decoding_args(p)

    p = sub.add_parser("evaluate", help="WER/CER of a checkpoint on a manifest, with a per-utterance report")
    p.add_argument("checkpoint", type=_path)
    p.add_argument("manifest", type=_path)
    p.add_argument("--out", type=_path, help="report folder (default: <checkpoint folder>/decode/<manifest name>)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-s", type=float, default=300.0, help="padded audio seconds per batch")
    p.add_argument("--results-json", type=_path,
                   help="also write the result for `asr compare` (WER, training data, model, ...)")
    p.add_argument("--test-set", help="test-set name in the results file, e.g. librispeech-test-clean (default: manifest name)")
    p.add_argument("--train-data", help="training data in the results file (default: from the checkpoint)")
    p.add_argument("--hardware", help="hardware in the results file (default: the evaluation device)")
    _add_decoding_args(p)
    _add_jobs_arg(p)

    p = sub.add_parser("tune-lm", help="search the LM weight (alpha) and word score (beta) on a dev set")
    p.add_argument("checkpoint", type=_path)
    p.add_argument("manifest", type=_path, help="dev-set manifest")
    _add_decoding_args(p, tuning=True)
    p.add_argument("--lm-weights", default="0:3:0.5", help="alpha grid: 'a,b,c' or 'start:stop:step' (default 0:3:0.5)")
    p.add_argument("--word-scores", default="-1:3:1", help="beta grid (default -1:3:1)")
    p.add_argument("--refine", type=int, default=0,
                   help=f"rounds of finer 3x3 search around the best pair, each at half the step (at most {MAX_REFINE_ROUNDS})")
    p.add_argument("--cache", type=_path, help="keep the model's log-probs in this file and reuse them on the next run "
                                   "with the same checkpoint and manifest (the acoustic model then does not run)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-s", type=float, default=300.0, help="padded audio seconds per batch")
    _add_jobs_arg(p)

    p = sub.add_parser("build-lm", help="build an n-gram LM (ARPA or KenLM binary) from text files")
    p.add_argument("texts", type=_path, nargs="+", help="text files, one sentence per line (normalized like transcripts)")
    p.add_argument("--order", type=int, default=3, help="n-gram order (default 3)")
    p.add_argument("--out", type=_path, required=True, help="output: *.arpa, or *.bin / *.binary / *.klm (needs KenLM)")
    p.add_argument("--prune", type=int, nargs="+", default=[], metavar="COUNT",
                   help="drop n-grams seen at most COUNT times, per order (lmplz style: 0 0 1 drops singleton 3-grams and up)")
    p.add_argument("--units", choices=["words", "chars"], default="words",
                   help="chars: a character LM ('|' = space) for --lexicon-free decoding")
    p.add_argument("--backend", choices=["auto", "kenlm", "python"], default="auto",
                   help="kenlm: lmplz (tools/build_kenlm.sh); python: the built-in Kneser-Ney; auto: kenlm if found")

    p = sub.add_parser("average", help="average the weights of several checkpoints of one run into one")
    p.add_argument("checkpoints", type=_path, nargs="+", metavar="CKPT", help="checkpoints of one run, e.g. exp/NAME/epoch-*.pt")
    p.add_argument("--out", type=_path, required=True, help="output checkpoint (must not exist yet)")

    p = sub.add_parser("export", help="a smaller inference checkpoint: training state dropped, weights in half precision")
    p.add_argument("checkpoint", type=_path, metavar="CKPT",
                   help="any checkpoint (model.pt, best.pt, last.pt, epoch-N.pt)")
    p.add_argument("--out", type=_path, required=True, help="output checkpoint (must not exist yet)")
    p.add_argument("--dtype", choices=["fp16", "bf16", "fp32"], default="fp16",
                   help="precision of the model weights (loading casts them back to float32)")

    p = sub.add_parser("compare", help="WER table against the DS2 paper's DS1 / DS2 / human numbers")
    p.add_argument("results", type=_path, nargs="*", help="results files of `asr evaluate --results-json`, or folders searched for them")

    p = sub.add_parser("presets", help="list the model presets with their parameter counts")
    p.add_argument("--features", type=int, default=161, help="input feature size (161: DS2 spectrogram)")
    p.add_argument("--vocab", type=int, default=29, help="output vocabulary size (29: characters + blank)")
    return parser


def _add_decoding_args(p: argparse.ArgumentParser, tuning: bool = False) -> None:
    """Beam-search options; without --lm, --lexicon, --lexicon-free or --beam-size decoding is greedy."""
    g = p.add_argument_group("beam search (greedy decoding unless one of --lm, --lexicon, --lexicon-free, --beam-size)")
    g.add_argument("--lm", type=_path, required=tuning, help="KenLM n-gram model, ARPA or binary (see asr build-lm)")
    g.add_argument("--lexicon", type=_path, help="lexicon file: 'word [units...]' per line (default: the LM's words)")
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


NUMERIC_OPTIONS = ("--lm-weight", "--word-score", "--lm-weights", "--word-scores")


def with_negative_values_joined(argv: list[str]) -> list[str]:
    """``argv`` with ``--word-scores -1:3:1`` written ``--word-scores=-1:3:1``: argparse takes a
    value starting with ``-`` for an option unless it is a plain negative number.

    >>> with_negative_values_joined(["tune-lm", "--word-scores", "-1:3:1", "--lm-weight", "-2e-1"])
    ['tune-lm', '--word-scores=-1:3:1', '--lm-weight=-2e-1']
    """
    out: list[str] = []
    i = 0
    while i < len(argv):
        if argv[i] in NUMERIC_OPTIONS and i + 1 < len(argv) and re.match(r"-\.?\d|-inf|-nan", argv[i + 1]):
            out.append(f"{argv[i]}={argv[i + 1]}")
            i += 2
        else:
            out.append(argv[i])
            i += 1
    return out
