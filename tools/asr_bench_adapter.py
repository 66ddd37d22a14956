"""Adapter that plugs ``asr`` into the side-by-side DS2 harness (``shared/bench/bench_ds2_train.py``).

Every timed stage goes through the project's own code: ``asr.audio.load_audio`` and
``asr.features.FeatureExtractor`` (features), ``asr.model.DeepSpeech2`` with the loss, clipping
and optimizer step of ``asr.train.Trainer.train_step`` (training), ``asr.decode.greedy_decode``
(inference). The model matches the harness's ``cfg`` (rnn type, hidden units, layers, direction)
with the conv front-end of deepspeech.pytorch (two 32-channel layers, kernels (11, 41) and
(11, 21) frames x bins, strides (2, 2) and (1, 2), paddings half the kernels), no dropout (the peer
has none), sequence-wise BatchNorm on every recurrent layer but the first, as the peer.

Usage, beside the peer (run from the repository root)::

    python ../shared/bench/bench_ds2_train.py \\
        --impl dspt@/path/to/deepspeech.pytorch \\
        --impl tools/asr_bench_adapter.py:make_adapter@. --json-out runs.jsonl

``--impl-opt preset=NAME`` uses that preset's front-end instead of the peer's (the recurrent stack
still follows ``cfg``). A preset or a ``cfg`` the model refuses (an unknown name, 0 hidden units)
stops the harness with one line, ``asr_bench_adapter: error: ...``, when the adapter is made,
before the features are timed (the harness's own user errors are ``sys.exit`` messages too).
"""

from __future__ import annotations

import dataclasses
import math
import subprocess
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

import asr
from asr.audio import load_audio
from asr.decode import greedy_decode
from asr.features import FeatureConfig, FeatureExtractor
from asr.model import DeepSpeech2, ModelConfig, load_preset
from asr.optim import OptimConfig, build_optimizer, build_scheduler
from asr.text import normalize_text
from asr.tokenizer import CharTokenizer

REPO = Path(__file__).resolve().parent.parent
# deepspeech.pytorch's front-end in asr's (time, frequency) order: Conv2d(1, 32, (41, 11) freq x time,
# stride (2, 2), padding (20, 5)), Conv2d(32, 32, (21, 11), stride (2, 1), padding (10, 5)).
PEER_FRONTEND = {"conv_channels": (32, 32), "conv_kernels": ((11, 41), (11, 21)),
                 "conv_strides": ((2, 2), (1, 2)), "head_sizes": ()}


class BenchBatch(NamedTuple):
    """A padded batch of precomputed features (never modified by the adapter).

    A NamedTuple rather than a dataclass: the harness loads this file without registering it in
    ``sys.modules``, which ``dataclasses`` needs for string annotations.
    """

    feats: Tensor  # (B, T, F) float32, zero past feat_lens
    feat_lens: Tensor  # (B,) int64 frames
    tokens: Tensor  # (B, L) int64, padded with the blank id 0
    token_lens: Tensor  # (B,) int64


class AsrAdapter:
    """The harness's duck-typed adapter interface over ``asr`` (see the module docstring)."""

    def __init__(self, cfg: dict[str, Any]):
        self.cfg = cfg
        self.opts = dict(cfg.get("opts") or {})
        self.feature_cfg = FeatureConfig()  # 20 ms / 10 ms spectrogram, per-utterance CMVN
        self.features = FeatureExtractor(self.feature_cfg).eval()
        self.tokenizer = CharTokenizer()
        self.model: DeepSpeech2 | None = None
        self.model_cfg(cfg)  # refused here, before the harness times anything

    # ------------------------------------------------------------------ untimed / bookkeeping
    def meta(self) -> dict[str, Any]:
        return {
            "impl": "asr", "src": str(REPO), "version": getattr(asr, "__version__", ""),
            "git": _git_state(),
            "feature": f"asr.features.FeatureExtractor {self.feature_cfg}",
            "model_cfg": dataclasses.asdict(self.model.cfg) if self.model is not None else None,
            "loss": "F.ctc_loss(reduction=none) -> finite mask -> sum / B (as Trainer.train_step)",
            "optim": dataclasses.asdict(self.optim_cfg) if self.model is not None else None,
        }

    def tokenize(self, text: str) -> list[int]:
        return self.tokenizer.encode(normalize_text(text))

    def num_params(self) -> int:
        return self.model.num_params()

    # ------------------------------------------------------------------ stage 1: features
    @torch.inference_mode()
    def featurize(self, path: str) -> Tensor:
        wave = torch.from_numpy(load_audio(path, self.feature_cfg.sample_rate))  # (S,)
        feats, frames = self.features(wave[None], torch.tensor([wave.numel()]))  # (1, T, F), (1,)
        return feats[0, : int(frames[0])].T.contiguous()  # (F, T)

    # ------------------------------------------------------------------ stage 2: training
    def model_cfg(self, cfg: dict[str, Any]) -> ModelConfig:
        """The model for the harness's ``cfg``; a value the model refuses ends the run in one line
        (``SystemExit``, as the harness's own user errors)."""
        try:
            base = load_preset(self.opts.get("preset", "small"))
            return dataclasses.replace(
                base, frontend="conv", conv_paddings=None, **(PEER_FRONTEND if "preset" not in self.opts else {}),
                rnn_type=cfg["rnn_type"], rnn_hidden=int(cfg["hidden"]), rnn_layers=int(cfg["layers"]),
                bidirectional=bool(cfg["bidirectional"]), dropout=0.0,
                lookahead_context=0 if cfg["bidirectional"] else 20,  # the peer's UniDirectionalConfig
            )
        except ValueError as e:  # a ConfigError (an unknown preset, rnn type) or a size out of range
            raise SystemExit(f"asr_bench_adapter: error: {e}") from None

    def build(self, cfg: dict[str, Any]) -> None:
        self.model = DeepSpeech2(self.model_cfg(cfg), num_features=self.features.num_features,
                                 vocab_size=self.tokenizer.vocab_size)
        # Project optimizer and schedule; clipping at the harness's value (the peer clips at 400).
        self.optim_cfg = OptimConfig(grad_clip=float(cfg["grad_clip"]))
        self.optimizer = build_optimizer(self.model, self.optim_cfg)
        self.scheduler = build_scheduler(self.optimizer, self.optim_cfg, total_steps=1000)

    def collate(self, items: list[tuple[Tensor, list[int]]]) -> BenchBatch:
        feat_lens = torch.tensor([f.shape[1] for f, _ in items], dtype=torch.int64)  # (B,)
        token_lens = torch.tensor([len(ids) for _, ids in items], dtype=torch.int64)  # (B,)
        feats = torch.zeros(len(items), int(feat_lens.max()), items[0][0].shape[0])  # (B, T, F)
        tokens = torch.zeros(len(items), int(token_lens.max()), dtype=torch.int64)  # (B, L)
        for b, (f, ids) in enumerate(items):
            feats[b, : f.shape[1]] = f.T
            tokens[b, : len(ids)] = torch.tensor(ids, dtype=torch.int64)
        return BenchBatch(feats, feat_lens, tokens, token_lens)

    def train_step(self, batch: BenchBatch) -> float:
        """Forward, CTC, backward, clip, step: ``asr.train.Trainer.train_step`` minus features."""
        model = self.model.train()
        logits, out_lens = model(batch.feats, batch.feat_lens)  # (B, T', V), (B,)
        log_probs = logits.float().log_softmax(dim=-1).transpose(0, 1)  # (T', B, V)
        ctc_args = (log_probs, batch.tokens, out_lens, batch.token_lens)
        blank = self.tokenizer.blank_id
        losses = F.ctc_loss(*ctc_args, blank=blank, reduction="none", zero_infinity=True)  # (B,)
        with torch.no_grad():  # second CTC pass, as Trainer.train_step does, to find non-finite ones
            finite = torch.isfinite(F.ctc_loss(*ctc_args, blank=blank, reduction="none"))  # (B,)
        num_bad = int((~finite).sum())
        self.optimizer.zero_grad(set_to_none=True)
        loss = torch.where(finite, losses, torch.zeros_like(losses)).sum() / len(losses)
        loss.backward()
        if num_bad == len(losses):
            self.scheduler.step()
            return float("nan")
        clip = self.optim_cfg.grad_clip if self.optim_cfg.grad_clip > 0 else float("inf")
        grad_norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), clip))
        if math.isfinite(grad_norm):
            self.optimizer.step()
        self.scheduler.step()
        return float(loss.detach()) * len(losses) / max(1, len(losses) - num_bad)

    # ------------------------------------------------------------------ stage 3: inference
    def infer(self, batch: BenchBatch) -> list[str]:
        model = self.model.eval()
        with torch.inference_mode():
            logits, out_lens = model(batch.feats, batch.feat_lens)  # (B, T', V), (B,)
            log_probs = logits.float().log_softmax(dim=-1)  # (B, T', V)
            return [h.text for h in greedy_decode(log_probs, out_lens, self.tokenizer)]


def _git_state() -> dict[str, Any]:
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True,
                                  timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""
    return {"commit": git("rev-parse", "HEAD"),
            "dirty_asr": git("status", "--porcelain", "--", "asr").splitlines()}


def make_adapter(cfg: dict[str, Any]) -> AsrAdapter:
    """Factory the harness calls: ``--impl tools/asr_bench_adapter.py:make_adapter@<repo>``."""
    return AsrAdapter(cfg)
