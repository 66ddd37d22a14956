"""Time CTC decoding per utterance, greedy vs. beam search (with an optional n-gram LM).

The checkpoint's model runs once over the manifest; both decoders then decode the same stored
log-probabilities one utterance at a time, so the times are the decoders' alone. Prints the mean
and median decode time per utterance, the beam/greedy ratio, and each decoder's WER.

Usage:
    python tools/bench_decode.py CHECKPOINT MANIFEST [--lm LM.arpa] [--lexicon FILE]
        [--beam-size 50] [--lm-weight 2] [--word-score 0] [--limit 100] [--threads 1] [--cache FILE]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from asr.checkpoint import load_recognizer
from asr.beam_search import BeamSearchConfig, BeamSearchDecoder
from asr.decode import greedy_decode
from asr.errors import run_tool
from asr.manifest import read_manifest
from asr.metrics import error_report
from asr.text import normalize_text
from asr.tune import cached_dev_log_probs, dev_log_probs, open_cache


def time_each(decode, log_probs: list[torch.Tensor]) -> tuple[list[float], list[str]]:
    """Seconds and text per utterance of ``decode((1, T, V), (1,))``."""
    times, texts = [], []
    for lp in log_probs:
        batch, lengths = lp[None], torch.tensor([lp.size(0)])  # (1, T, V), (1,)
        start = time.perf_counter()
        hyp = decode(batch, lengths)[0]
        times.append(time.perf_counter() - start)
        texts.append(" ".join(hyp.text.split()))
    return times, texts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("manifest")
    parser.add_argument("--lm", help="KenLM model (ARPA or binary); none: beam search without LM")
    parser.add_argument("--lexicon", help="lexicon file (default: the ARPA LM's words)")
    parser.add_argument("--lexicon-free", action="store_true")
    parser.add_argument("--beam-size", type=int, default=50)
    parser.add_argument("--lm-weight", type=float, default=2.0)
    parser.add_argument("--word-score", type=float, default=0.0)
    parser.add_argument("--limit", type=int, default=100, help="at most this many utterances")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="for the acoustic model only (decoding is on CPU)")
    parser.add_argument("--cache", help="log-probs file shared with `asr tune-lm --cache` (same checkpoint and set)")
    args = parser.parse_args()
    for option, value in (("--limit", args.limit), ("--threads", args.threads)):
        if value < 1:
            raise ValueError(f"{option} {value}: must be >= 1")
    config = BeamSearchConfig(beam_size=args.beam_size, lm_weight=args.lm_weight, word_score=args.word_score)
    torch.set_num_threads(args.threads)

    cache = open_cache(args.cache) if args.cache else None  # refused before the model is read
    recognizer = load_recognizer(args.checkpoint, device=args.device)
    utts = read_manifest(args.manifest, skip_bad=True)[: args.limit]
    if cache is not None:
        utts, log_probs = cached_dev_log_probs(recognizer, utts, cache, args.checkpoint)
    else:
        utts, log_probs = dev_log_probs(recognizer, utts)
    refs = [normalize_text(u.text) for u in utts]
    beam = BeamSearchDecoder(recognizer.tokenizer, lm=args.lm, lexicon=args.lexicon,
                             lexicon_free=args.lexicon_free, config=config)
    greedy = lambda lp, lengths: greedy_decode(lp, lengths, recognizer.tokenizer)  # noqa: E731
    frames = sum(lp.size(0) for lp in log_probs)
    print(f"utterances {len(utts)}  frames {frames}  vocabulary {recognizer.tokenizer.vocab_size}  "
          f"threads {args.threads}  beam {args.beam_size}  mode {beam.mode}  lm {args.lm or '-'}")
    print(f"{'decoder':<8} {'mean ms/utt':>12} {'median ms/utt':>14} {'us/frame':>9} {'WER %':>7}")
    means = {}
    for name, decode in (("greedy", greedy), ("beam", beam)):
        time_each(decode, log_probs[:1])  # warm-up
        times, texts = time_each(decode, log_probs)
        means[name] = statistics.mean(times)
        wer = 100 * error_report(refs, texts).wer
        print(f"{name:<8} {1e3 * means[name]:12.3f} {1e3 * statistics.median(times):14.3f} "
              f"{1e6 * sum(times) / frames:9.2f} {wer:7.2f}")
    print(f"beam / greedy time ratio {means['beam'] / means['greedy']:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(run_tool("bench_decode", main))
