"""Optimizers and learning-rate schedules for CTC training."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

from asr.config import check_ranges, check_types


@dataclass(frozen=True)
class OptimConfig:
    name: Literal["adamw", "sgd"] = "adamw"  # AdamW, or SGD with Nesterov momentum as in DS2
    lr: float = 1e-3  # peak learning rate, reached at the end of warm-up
    momentum: float = 0.9  # SGD Nesterov momentum
    betas: tuple[float, float] = (0.9, 0.98)  # AdamW betas
    weight_decay: float = 0.0  # decoupled (AdamW) or L2 (SGD) weight decay
    warmup_steps: int = 100  # linear warm-up from lr/100 to lr over this many steps
    schedule: Literal["constant", "cosine", "exponential"] = "cosine"  # annealing after warm-up
    final_lr_ratio: float = 0.01  # cosine/exponential end at lr * final_lr_ratio on the last step
    grad_clip: float = 5.0  # max global gradient norm (0: no clipping)

    def __post_init__(self) -> None:
        check_types(self, "optim.")
        if not 0 < self.lr <= 1e3:  # (1e300 passed once and overflowed in the optimizer)
            raise ValueError(f"optim.lr must be positive and at most 1000, got {self.lr}")
        if not 0 < self.final_lr_ratio <= 1:
            raise ValueError(f"optim.final_lr_ratio must be in (0, 1], got {self.final_lr_ratio}")
        # (the optimizer raised a traceback on betas [2, 3] or momentum -1; a NaN grad_clip or an
        # infinite weight decay trained a NaN model; a weight decay above 1000 is no real setting)
        check_ranges(self, "optim.", momentum=(0, 1, "[)"), betas=(0, 1, "[)"), weight_decay=(0, 1000),
                     warmup_steps=(0, None), grad_clip=(0, None))


def build_optimizer(model: torch.nn.Module, cfg: OptimConfig) -> torch.optim.Optimizer:
    """AdamW or Nesterov SGD; biases and norm parameters get no weight decay."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=True)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas)


def lr_factor(step: int, cfg: OptimConfig, total_steps: int) -> float:
    """Multiplier of ``cfg.lr`` after ``step`` optimizer steps.

    >>> cfg = OptimConfig(warmup_steps=10, schedule="cosine", final_lr_ratio=0.1)
    >>> round(lr_factor(10, cfg, 110), 3), round(lr_factor(110, cfg, 110), 3)
    (1.0, 0.1)
    """
    if step < cfg.warmup_steps:
        return 0.01 + 0.99 * step / cfg.warmup_steps
    if cfg.schedule == "constant":
        return 1.0
    span = max(1, total_steps - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / span)
    if cfg.schedule == "cosine":
        return cfg.final_lr_ratio + (1 - cfg.final_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    return cfg.final_lr_ratio**progress


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: OptimConfig, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Step-wise schedule: linear warm-up, then constant, cosine or exponential annealing."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, cfg, total_steps))
