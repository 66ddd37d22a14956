"""Data-parallel training through torchrun, on CPU with the Gloo backend (two processes)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from asr.data import DurationBatchSampler
from asr.datasets.digits import DIGIT_WORDS
from asr.manifest import Utterance, write_manifest

REPO = Path(__file__).resolve().parents[1]


def test_sharded_sampler_splits_batches_between_ranks():
    durations = [0.5 + 0.01 * i for i in range(100)]
    full = DurationBatchSampler(durations, max_batch_s=4.0, seed=1)
    full.set_epoch(1)
    shards = [DurationBatchSampler(durations, max_batch_s=4.0, seed=1, rank=r, world_size=2) for r in (0, 1)]
    for s in shards:
        s.set_epoch(1)
    a, b = (list(s) for s in shards)
    assert len(a) == len(b) == len(full) // 2
    assert not {i for batch in a for i in batch} & {i for batch in b for i in batch}
    assert a + b != [] and sorted(map(tuple, a + b)) == sorted(map(tuple, list(full)[: 2 * len(a)]))
    with pytest.raises(ValueError, match="rank"):
        DurationBatchSampler(durations, max_batch_s=4.0, rank=2, world_size=2)


@pytest.mark.slow
def test_torchrun_two_processes_train_and_save(shared_data, tmp_path):
    recordings = sorted((shared_data / "fsdd" / "recordings").glob("*_jackson_1*.wav"))[:40]
    utts = [Utterance(audio_filepath=str(p), duration=0.5, text=DIGIT_WORDS[int(p.name[0])]) for p in recordings]
    manifest = tmp_path / "train.jsonl"
    write_manifest(manifest, utts)
    config = tmp_path / "conf.yaml"
    config.write_text("preset: tiny\nepochs: 2\nthreads: 1\nlog_every_steps: 1\ndata:\n  max_batch_s: 2.0\n")
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        # --standalone, as recipes/common.sh: the launcher binds a free port itself (no race with another test)
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "asr.cli", "train", str(config), f"out_dir={out}", f"data.train_manifest={manifest}"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=240,
    )
    # the ranks' own messages come before the launcher's summary, which names only the signal
    ranks = [line for line in proc.stderr.splitlines() if "torch/distributed/elastic" not in line]
    assert proc.returncode == 0, "\n".join(ranks[:40]) + "\n...\n" + proc.stderr[-1500:]
    assert proc.stdout.count("model:") == 1  # rank 0 reports, rank 1 stays quiet
    single = DurationBatchSampler([0.5] * 40, max_batch_s=2.0)
    events = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    steps = [e for e in events if e["event"] == "step"]
    assert steps[0]["batches"] == len(single) // 2  # each rank runs half of the epoch's batches
    assert [e["event"] for e in events].count("epoch") == 2
    ckpt = torch.load(out / "model.pt", weights_only=True)
    assert not any(k.startswith("module.") for k in ckpt["model_state"])  # the bare model, not the DDP wrapper
