"""Time a padded bidirectional GRU stack on CPU: packed sequences vs. masking + reversal.

The variants compute the same function (3 layers, 256 hidden units per direction, directions
concatenated, padding ignored): ``nn.GRU`` over packed sequences; masking and per-sequence
reversal with ``nn.GRU`` differentiated by autograd; and the same with ``asr.model.RecurrentLayer``,
whose training on CPU runs ``asr.recurrence`` (its own backward). The script times forward +
backward for batch 8 at several lengths and prints the median times and the ratios to asr's.

Usage:
    python tools/bench_rnn_packing.py [--threads N] [--repeats N] [--lengths 200 400 800]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from asr.errors import run_tool
from asr.model import RecurrentLayer, reverse_padded


def median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--lengths", type=int, nargs="+", default=[200, 400, 800])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--input-size", type=int, default=256)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=3)
    args = parser.parse_args()
    sizes = [("--threads", args.threads, 1), ("--repeats", args.repeats, 1), ("--batch", args.batch, 1),
             ("--input-size", args.input_size, 1), ("--hidden", args.hidden, 1), ("--layers", args.layers, 1)]
    for option, value, least in [*sizes, *(("--lengths", n, 2) for n in args.lengths)]:  # T/2..T frames: T >= 2
        if value < least:
            raise ValueError(f"{option} {value}: must be >= {least}")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    packed_rnn = nn.GRU(args.input_size, args.hidden, args.layers, batch_first=True,
                        bidirectional=True)
    layers = nn.ModuleList()
    dim = args.input_size
    for _ in range(args.layers):
        layers.append(RecurrentLayer(dim, args.hidden, "gru", True, "concat", batch_norm=False))
        dim = layers[-1].out_dim

    def run_packed(x: torch.Tensor, lens: torch.Tensor) -> None:
        packed = pack_padded_sequence(x, lens, batch_first=True, enforce_sorted=False)
        out, _ = pad_packed_sequence(packed_rnn(packed)[0], batch_first=True)  # (B, T, 2H)
        out.sum().backward()

    def run_masked(x: torch.Tensor, lens: torch.Tensor, autograd_gru: bool = False) -> None:
        out = x
        for layer in layers:
            if autograd_gru:  # RecurrentLayer.forward without batch norm, nn.GRU differentiated by autograd
                back = reverse_padded(layer.bwd(reverse_padded(out, lens))[0], lens)
                out = torch.cat([layer.fwd(out)[0], back], dim=2)  # (B, T, 2H)
            else:
                out = layer(out, lens)  # (B, T, 2H)
        mask = torch.arange(out.size(1))[None, :] < lens[:, None]  # (B, T)
        (out * mask[:, :, None]).sum().backward()

    print(f"threads={args.threads} batch={args.batch} layers={args.layers} hidden={args.hidden} "
          f"(forward + backward, median of {args.repeats})")
    print(f"{'T':>6} {'packed_s':>10} {'masked_nn_gru_s':>16} {'masked_asr_s':>13} {'packed/asr':>11} "
          f"{'nn_gru/asr':>11}")
    for max_len in args.lengths:
        lens = torch.randint(max_len // 2, max_len + 1, (args.batch,))
        lens[0] = max_len
        x = torch.randn(args.batch, max_len, args.input_size)  # (B, T, D)
        t_packed = median_time(lambda: run_packed(x, lens), args.repeats)
        t_autograd = median_time(lambda: run_masked(x, lens, autograd_gru=True), args.repeats)
        t_masked = median_time(lambda: run_masked(x, lens), args.repeats)
        print(f"{max_len:>6} {t_packed:>10.3f} {t_autograd:>16.3f} {t_masked:>13.3f} {t_packed / t_masked:>11.2f} "
              f"{t_autograd / t_masked:>11.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(run_tool("bench_rnn_packing", main))
