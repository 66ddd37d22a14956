"""Throughput of ``asr`` on real LibriSpeech utterances: features, CTC training, greedy inference.

Measures, in one process, on utterances of a LibriSpeech-layout folder picked with a seed:

1. features: decode + ``FeatureExtractor`` per utterance (audio-s/s), and batched on padded
   waveforms as ``Trainer.train_step`` computes them;
2. training: forward + CTC + backward + clip + AdamW step of a preset (audio-s/s, ms/step), on
   duration-sorted batches, with the loss of ``asr.train.Trainer.train_step``;
3. inference: ``Recognizer.recognize`` (features + model + greedy decoding), one utterance at a
   time, as ``asr transcribe`` does (real-time factor).

The baseline is the same model, weights copied, whose recurrent layers are replaced by one
bidirectional ``nn.GRU``/``nn.LSTM``/``nn.RNN`` each over ``pack_padded_sequence`` input (the usual
way to ignore padding, as deepspeech.pytorch does). Both compute the same function (the script
prints the largest logit difference on valid frames), so ``asr / packed`` isolates the cost of the
recurrent implementation. Training steps of the two models alternate, so load from other
processes affects both alike; the load average is printed at the start and the end.

Figures vary +-10-20 % between runs on a shared machine: compare ratios, and repeat. The default
run (small preset, batch 8, 1 thread) takes about 1.5 minutes on a loaded 2-core machine.

Usage:
    python tools/bench_train.py [--preset small] [--batch 8] [--steps 3] [--threads N]
        [--data-dir ../shared/data/LibriSpeech/dev-4spk] [--min-dur 2] [--max-dur 8] [--json]
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import random
import resource
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from asr.audio import audio_info, load_audio
from asr.data import Batch, Example, collate
from asr.errors import run_tool
from asr.features import FeatureConfig, FeatureExtractor
from asr.model import DeepSpeech2, RecurrentLayer, length_mask, load_preset
from asr.optim import OptimConfig, build_optimizer
from asr.recognizer import Recognizer
from asr.text import normalize_text, read_error_cause
from asr.tokenizer import CharTokenizer

REPO = Path(__file__).resolve().parent.parent
DEFAULT_DATA = REPO.parent / "shared" / "data" / "LibriSpeech" / "dev-4spk"


# ---------------------------------------------------------------------------------- data
def pick_utterances(data_dir: Path, num: int, min_dur: float, max_dur: float, seed: int) -> list[dict]:
    """``num`` utterances of ``data_dir`` (``SPK/CHAPTER/*.trans.txt`` + ``.flac``) lasting
    ``min_dur``..``max_dur`` seconds, sampled with ``seed`` from the id-sorted list.

    Raises:
        ValueError: the folder holds too few such utterances, or a transcript cannot be read.
        AudioError: an audio file cannot be read.
    """
    rows = []
    for trans in sorted(data_dir.glob("*/*/*.trans.txt")):
        try:
            lines = trans.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise ValueError(f"{trans}: cannot read the text ({read_error_cause(e)})") from None
        for line in lines:
            utt_id, _, text = line.strip().partition(" ")
            path = trans.parent / f"{utt_id}.flac"
            if utt_id and path.is_file():
                rows.append((utt_id, path, text))
    if not rows:
        raise ValueError(f"{data_dir}: no LibriSpeech utterances (SPK/CHAPTER/*.trans.txt + .flac)")
    utts = []
    for utt_id, path, text in rows:
        duration_s = audio_info(path).duration_s
        if min_dur <= duration_s <= max_dur:
            utts.append({"id": utt_id, "path": str(path), "text": text, "duration_s": duration_s})
    if len(utts) < num:
        raise ValueError(f"{data_dir}: only {len(utts)} utterances of {min_dur:g}-{max_dur:g} s, "
                         f"{num} wanted (--num-utts)")
    return random.Random(seed).sample(utts, num)


def pad_efficiency(batches: list[Batch]) -> float:
    """Valid samples / padded samples over ``batches``."""
    valid = sum(int(b.wave_lens.sum()) for b in batches)
    return valid / sum(b.waves.numel() for b in batches)


# ------------------------------------------------------------------------------ baseline
class PackedRecurrentLayer(nn.Module):
    """The function of an ``asr.model.RecurrentLayer`` computed the packed-sequence way: same
    BatchNorm, then one bidirectional RNN over ``pack_padded_sequence`` input (weights copied)."""

    def __init__(self, layer: RecurrentLayer):
        super().__init__()
        fwd, bwd = layer.fwd, layer.bwd
        self.norm, self.merge = layer.norm, layer.merge
        self.rnn = type(fwd)(fwd.input_size, fwd.hidden_size, batch_first=True,
                             bidirectional=bwd is not None)
        with torch.no_grad():
            for name, p in fwd.named_parameters():
                getattr(self.rnn, name).copy_(p)
            if bwd is not None:
                for name, p in bwd.named_parameters():
                    getattr(self.rnn, f"{name}_reverse").copy_(p)

    def forward(self, x: Tensor, lens: Tensor) -> Tensor:
        if self.norm is not None:
            x = self.norm(x, length_mask(lens, x.size(1))[:, :, None])  # (B, T, D)
        packed = pack_padded_sequence(x, lens.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = pad_packed_sequence(self.rnn(packed)[0], batch_first=True,
                                     total_length=x.size(1))  # (B, T, H or 2H)
        if not self.rnn.bidirectional:
            return out
        fwd, back = out.chunk(2, dim=2)  # (B, T, H) each
        return fwd + back if self.merge == "sum" else out


def packed_baseline(model: DeepSpeech2) -> DeepSpeech2:
    """A copy of ``model`` whose recurrent layers run on packed sequences."""
    baseline = copy.deepcopy(model)
    baseline.rnns = nn.ModuleList(PackedRecurrentLayer(layer) for layer in baseline.rnns)
    return baseline


# ------------------------------------------------------------------------------ training
def ctc_step(model: DeepSpeech2, optimizer: torch.optim.Optimizer, feats: Tensor, feat_lens: Tensor,
             batch: Batch, grad_clip: float) -> float:
    """Forward, CTC, backward, clip, step; the loss of ``Trainer.train_step`` (mean over B)."""
    model.train()
    logits, out_lens = model(feats, feat_lens)  # (B, T', V), (B,)
    log_probs = logits.float().log_softmax(dim=-1).transpose(0, 1)  # (T', B, V)
    ctc_args = (log_probs, batch.tokens, out_lens, batch.token_lens)
    losses = F.ctc_loss(*ctc_args, blank=0, reduction="none", zero_infinity=True)  # (B,)
    with torch.no_grad():  # Trainer.train_step's second pass, to find the non-finite losses
        finite = torch.isfinite(F.ctc_loss(*ctc_args, blank=0, reduction="none"))  # (B,)
    loss = torch.where(finite, losses, torch.zeros_like(losses)).sum() / len(losses)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip if grad_clip > 0 else math.inf)
    optimizer.step()
    return float(loss.detach())


def summarize(times_s: list[float], audio_s: float) -> dict:
    return {"audio_s_per_s": round(audio_s / sum(times_s), 3),
            "ms_per_step_mean": round(1e3 * statistics.mean(times_s), 1),
            "ms_per_step_median": round(1e3 * statistics.median(times_s), 1)}


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1)  # Linux: KiB


def check_args(args: argparse.Namespace) -> None:
    """Refuse counts, durations and a data folder that cannot be measured, before any work.

    Raises:
        ValueError: naming the option and the value.
    """
    for option, value, least in (("--num-utts", args.num_utts, 1), ("--batch", args.batch, 1),
                                 ("--steps", args.steps, 1), ("--warmup", args.warmup, 0),
                                 ("--infer-utts", args.infer_utts, 1), ("--threads", args.threads, 0)):
        if value < least:
            raise ValueError(f"{option} {value}: must be >= {least}")
    if not 0 <= args.min_dur <= args.max_dur < math.inf:
        raise ValueError(f"--min-dur {args.min_dur:g} --max-dur {args.max_dur:g}: must be seconds, "
                         "0 <= min <= max")
    if not args.data_dir.is_dir():
        raise ValueError(f"{args.data_dir}: no such folder (--data-dir: a LibriSpeech-layout folder)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA, help="LibriSpeech-layout folder")
    parser.add_argument("--num-utts", type=int, default=32, help="utterances picked (features stage)")
    parser.add_argument("--min-dur", type=float, default=2.0, help="seconds")
    parser.add_argument("--max-dur", type=float, default=8.0, help="seconds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--preset", default="small", help="model preset (asr/presets/NAME.yaml)")
    parser.add_argument("--batch", type=int, default=8, help="utterances per training batch")
    parser.add_argument("--steps", type=int, default=3, help="timed training steps per model")
    parser.add_argument("--warmup", type=int, default=1, help="untimed training steps per model")
    parser.add_argument("--infer-utts", type=int, default=8, help="utterances decoded one at a time")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (0: torch's default). Default 1: on a shared "
                             "2-core machine 2 threads are oversubscribed and the per-time-step GRU "
                             "and per-utterance feature figures swing 3-10x")
    parser.add_argument("--no-baseline", action="store_true", help="skip the packed-sequence model")
    parser.add_argument("--json", action="store_true", help="also print all figures as one JSON line")
    args = parser.parse_args()
    check_args(args)
    model_cfg = load_preset(args.preset)  # an unknown name is refused before the work
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    load_start = os.getloadavg()[0]
    out: dict = {"preset": args.preset, "batch": args.batch, "threads": torch.get_num_threads(),
                 "nproc": os.cpu_count(), "torch": torch.__version__, "seed": args.seed}
    print(f"torch={torch.__version__} threads={torch.get_num_threads()} nproc={os.cpu_count()} "
          f"loadavg_1min={load_start:.2f} preset={args.preset} batch={args.batch}")

    utts = pick_utterances(args.data_dir, args.num_utts, args.min_dur, args.max_dur, args.seed)
    tokenizer = CharTokenizer()
    feature_cfg = FeatureConfig()
    extractor = FeatureExtractor(feature_cfg).eval()
    sample_rate = feature_cfg.sample_rate
    total_audio_s = sum(u["duration_s"] for u in utts)

    # -- 1. features, one utterance at a time (decode timed apart), then batched
    load_audio(utts[0]["path"], sample_rate)  # warm-up
    with torch.inference_mode():
        extractor(torch.zeros(1, sample_rate), torch.tensor([sample_rate]))
    decode_s = feats_s = 0.0
    waves = []
    for u in utts:
        t0 = time.perf_counter()
        wave = torch.from_numpy(load_audio(u["path"], sample_rate))  # (S,)
        t1 = time.perf_counter()
        with torch.inference_mode():
            extractor(wave[None], torch.tensor([wave.numel()]))  # (1, T, F)
        feats_s += time.perf_counter() - t1
        decode_s += t1 - t0
        waves.append(wave)
    out["features"] = {"utts": len(utts), "audio_s": round(total_audio_s, 2),
                       "decode_audio_s_per_s": round(total_audio_s / decode_s, 1),
                       "features_audio_s_per_s": round(total_audio_s / feats_s, 1),
                       "decode_and_features_audio_s_per_s": round(total_audio_s / (decode_s + feats_s), 1)}

    # duration-sorted bins of --batch utterances, as DurationBatchSampler builds them
    order = sorted(range(len(utts)), key=lambda i: utts[i]["duration_s"])
    bins = [order[i:i + args.batch] for i in range(0, len(order), args.batch)]
    random.Random(args.seed + 1).shuffle(bins)
    tokens = [torch.tensor(tokenizer.encode(normalize_text(u["text"]))) for u in utts]  # [(L,)]
    batches = [collate([Example(waves[i], tokens[i], i) for i in b]) for b in bins]
    t0 = time.perf_counter()
    with torch.no_grad():
        batch_feats = [extractor(b.waves, b.wave_lens) for b in batches]  # [((B, T, F), (B,))]
    batched_s = time.perf_counter() - t0
    out["features"]["batched_audio_s_per_s"] = round(total_audio_s / batched_s, 1)
    f = out["features"]
    print(f"features utts={f['utts']} audio_s={f['audio_s']} "
          f"decode_audio_s_per_s={f['decode_audio_s_per_s']} "
          f"features_audio_s_per_s={f['features_audio_s_per_s']} "
          f"decode_and_features_audio_s_per_s={f['decode_and_features_audio_s_per_s']} "
          f"batched_audio_s_per_s={f['batched_audio_s_per_s']}")

    # -- 2. training: asr and the packed baseline, steps alternating, same batches
    model = DeepSpeech2(model_cfg, num_features=extractor.num_features, vocab_size=tokenizer.vocab_size)
    models = {"asr": model}
    if not args.no_baseline:
        models["packed"] = packed_baseline(model)
        with torch.inference_mode():  # same function? (eval mode: running BatchNorm statistics)
            x, x_lens = batch_feats[0]
            la, lens = models["asr"].eval()(x, x_lens)  # (B, T', V), (B,)
            lb, _ = models["packed"].eval()(x, x_lens)
            valid = length_mask(lens, la.size(1))[:, :, None]  # (B, T', 1)
            out["max_logit_diff_asr_vs_packed"] = float(((la - lb).abs() * valid).max())
    optim_cfg = OptimConfig()
    optimizers = {name: build_optimizer(m, optim_cfg) for name, m in models.items()}
    out["params"] = model.num_params()
    num_steps = args.warmup + args.steps
    schedule = [i % len(batches) for i in range(num_steps)]
    times: dict[str, list[float]] = {name: [] for name in models}
    losses: dict[str, list[float]] = {name: [] for name in models}
    timed_audio_s = 0.0
    for step, i in enumerate(schedule):
        for name, m in models.items():
            x, x_lens = batch_feats[i]
            t0 = time.perf_counter()
            loss = ctc_step(m, optimizers[name], x, x_lens, batches[i], optim_cfg.grad_clip)
            if step >= args.warmup:
                times[name].append(time.perf_counter() - t0)
                losses[name].append(round(loss, 2))
        if step >= args.warmup:
            timed_audio_s += float(batches[i].wave_lens.sum()) / sample_rate
    timed = [batches[i] for i in schedule[args.warmup:]]
    pad_eff = pad_efficiency(timed)
    feat_share_s = batched_s / total_audio_s * timed_audio_s  # batched features of the timed audio
    print(f"model preset={args.preset} params={out['params']} "
          + (f"max_logit_diff_asr_vs_packed={out['max_logit_diff_asr_vs_packed']:.2e}"
             if "max_logit_diff_asr_vs_packed" in out else ""))
    out["train"] = {"steps": args.steps, "warmup": args.warmup, "timed_audio_s": round(timed_audio_s, 2),
                    "pad_efficiency": round(pad_eff, 3)}
    for name in models:
        s = summarize(times[name], timed_audio_s)
        s["with_features_audio_s_per_s"] = round(timed_audio_s / (sum(times[name]) + feat_share_s), 3)
        s["losses"] = losses[name]
        out["train"][name] = s
        print(f"train {name:<6} audio_s_per_s={s['audio_s_per_s']} ms_per_step_mean={s['ms_per_step_mean']} "
              f"ms_per_step_median={s['ms_per_step_median']} with_features_audio_s_per_s="
              f"{s['with_features_audio_s_per_s']} pad_efficiency={pad_eff:.3f} losses={s['losses']}")
    out["train"]["peak_rss_mb"] = peak_rss_mb()

    # -- 3. greedy inference, one utterance at a time, features included
    infer_idx = sorted(random.Random(args.seed + 2).sample(range(len(utts)), min(args.infer_utts, len(utts))))
    infer_audio_s = sum(utts[i]["duration_s"] for i in infer_idx)
    out["infer"] = {"utts": len(infer_idx), "audio_s": round(infer_audio_s, 2)}
    for name, m in models.items():
        rec = Recognizer(extractor, m, tokenizer).eval()
        rec.recognize(waves[infer_idx[0]][None], torch.tensor([waves[infer_idx[0]].numel()]))  # warm-up
        t0 = time.perf_counter()
        for i in infer_idx:
            rec.recognize(waves[i][None], torch.tensor([waves[i].numel()]))
        elapsed = time.perf_counter() - t0
        out["infer"][name] = {"rtf": round(elapsed / infer_audio_s, 5)}
        print(f"infer {name:<6} utts={len(infer_idx)} audio_s={infer_audio_s:.1f} "
              f"rtf={elapsed / infer_audio_s:.4f} (features + model + greedy, batch 1)")
    out["peak_rss_mb"] = peak_rss_mb()

    if "packed" in models:
        tr, inf = out["train"], out["infer"]
        out["ratios_asr_over_packed"] = {
            "train_audio_s_per_s": round(tr["asr"]["audio_s_per_s"] / tr["packed"]["audio_s_per_s"], 2),
            "infer_speed": round(inf["packed"]["rtf"] / inf["asr"]["rtf"], 2),
        }
        r = out["ratios_asr_over_packed"]
        print(f"ratio asr/packed train_audio_s_per_s={r['train_audio_s_per_s']} "
              f"infer_speed={r['infer_speed']} (>1: asr faster)")
    out["loadavg_1min"] = [round(load_start, 2), round(os.getloadavg()[0], 2)]
    print(f"peak_rss_mb={out['peak_rss_mb']} loadavg_1min_start={load_start:.2f} "
          f"loadavg_1min_end={os.getloadavg()[0]:.2f}")
    if args.json:
        print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(run_tool("bench_train", main))
