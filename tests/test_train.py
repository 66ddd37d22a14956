"""CTC training with the tiny preset on real LibriSpeech utterances (one CPU thread, few steps)."""

from __future__ import annotations

import json
import logging
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import soundfile as sf
import torch

from asr.audio import audio_info
from asr.checkpoint import load_checkpoint, save_checkpoint
from asr.config import config_from_dict, config_to_dict
from asr.config_file import load_yaml
from asr.data import SpeechDataset, collate, iter_waves
from asr.features import FeatureConfig, FeatureExtractor, compute_cmvn
from asr.manifest import read_manifest
from asr.model import load_preset
from asr.outputs import OutputError
from asr.recognizer import recognizer_from_payload
from asr.text import normalize_text
from asr.tokenizer import tokenizer_from_dict
from asr.train import Trainer, train
from asr.train_config import TrainConfig, TrainError, resolve_config
from asr.train_config import DataConfig
from asr.transcribe import Transcriber

REPO = Path(__file__).resolve().parents[1]

# The eight shortest utterances of dev-4spk (2.4-3.2 s), shortest first.
SHORT = [
    "8226-274371-0020", "5652-19215-0032", "4088-158077-0078", "4406-16882-0033",
    "4406-16883-0023", "5652-19215-0059", "4406-16882-0027", "8226-274369-0000",
]


@pytest.fixture(scope="module")
def libri(shared_data: Path) -> dict[str, dict]:
    """Manifest entries (absolute path, duration from the header, upper-case text) by utterance id."""
    root = shared_data / "LibriSpeech" / "dev-4spk"
    entries = {}
    for uid in SHORT:
        speaker, chapter, _ = uid.split("-")
        folder = root / speaker / chapter
        texts = dict(line.split(" ", 1) for line in (folder / f"{speaker}-{chapter}.trans.txt").read_text().splitlines())
        path = folder / f"{uid}.flac"
        entries[uid] = {"audio_filepath": str(path), "duration": sf.info(path).duration, "text": texts[uid]}
    assert all(e["duration"] <= 6.0 for e in entries.values())
    return entries


def _manifest(path: Path, entries: list[dict]) -> Path:
    path.write_text("".join(json.dumps(e) + "\n" for e in entries), encoding="utf-8")
    return path


def _config(out_dir: Path, manifest: Path, *overrides: str) -> TrainConfig:
    base = [
        "preset=tiny", f"out_dir={out_dir}", f"data.train_manifest={manifest}", "device=cpu", "threads=1",
        "log_every_steps=1", "features.kind=fbank",  # 80 mel bins: half the conv work of 161 bins
    ]
    return resolve_config(None, base + list(overrides))


def _steps(run_dir: Path) -> list[dict]:
    events = [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines()]
    return [e for e in events if e["event"] == "step"]


@pytest.fixture(scope="module")
def trained(libri, tmp_path_factory):
    """A 3-step run on 4 utterances, kept as its Trainer."""
    tmp = tmp_path_factory.mktemp("trained")
    manifest = _manifest(tmp / "train.jsonl", [libri[u] for u in SHORT[:4]])
    cfg = _config(tmp / "run", manifest, "epochs=3", "data.max_batch_size=4")
    trainer = Trainer(cfg)
    result = trainer.run()
    return trainer, result, manifest


# --------------------------------------------------------------------------------------- overfit
@pytest.mark.slow
def test_overfits_two_utterances_and_transcribes_them(libri, tmp_path):
    entries = [libri[u] for u in SHORT[:2]]
    manifest = _manifest(tmp_path / "train.jsonl", entries)
    cfg = _config(
        tmp_path / "run", manifest, "model.rnn_hidden=128", "optim.lr=3e-3", "optim.warmup_steps=10",
        "optim.schedule=constant", "epochs=45", "data.max_batch_size=1",
    )
    result = train(cfg)
    assert (result.steps, result.epochs_done, result.stopped_early) == (90, 45, False)
    losses = [e["loss"] for e in _steps(cfg.run_dir)]
    assert losses[0] > 100 and max(losses[-4:]) < 0.5, losses[::10]
    transcriber = Transcriber.from_checkpoint(cfg.run_dir / "model.pt")
    texts = [t.text for t in transcriber.transcribe([e["audio_filepath"] for e in entries])]
    assert texts == [normalize_text(e["text"]) for e in entries]


# -------------------------------------------------------------------------------- exact resume
RESUME_OVERRIDES = (
    "epochs=3", "data.max_batch_size=2",  # 6 utterances -> 3 batches per epoch, 9 steps
    "features.dither=30.0", "model.dropout=0.3", "seed=7",
)


def _fingerprint(run_dir: Path) -> list[tuple]:
    return [(e["step"], e["epoch"], e["batch"], e["loss"], e["lr"], e["grad_norm"]) for e in _steps(run_dir)]


def test_resume_after_max_steps_is_exact(libri, tmp_path):
    manifest = _manifest(tmp_path / "train.jsonl", [libri[u] for u in SHORT[:6]])
    # max_steps also sets the schedule's horizon, so the learning rate must not depend on it here:
    # a constant schedule whose warm-up spans every step (the rate still changes each step).
    schedule = ("optim.schedule=constant", "optim.warmup_steps=20")
    a = _config(tmp_path / "a", manifest, *RESUME_OVERRIDES, *schedule)
    result_a = train(a)
    assert result_a.steps == 9
    b_first = _config(tmp_path / "b", manifest, *RESUME_OVERRIDES, *schedule, "max_steps=4")
    first = train(b_first)
    assert (first.steps, first.epochs_done, first.stopped_early) == (4, 1, True)
    b = _config(tmp_path / "b", manifest, *RESUME_OVERRIDES, *schedule)
    second = train(b, resume=True)
    assert (second.steps, second.epochs_done, second.stopped_early) == (9, 3, False)
    fa, fb = _fingerprint(tmp_path / "a"), _fingerprint(tmp_path / "b")
    assert [f[0] for f in fb] == list(range(1, 10))
    assert fa == fb
    assert len({f[3] for f in fa}) == 9  # dither/dropout/updates: every loss differs
    wa = load_checkpoint(tmp_path / "a" / "model.pt")["model_state"]
    wb = load_checkpoint(tmp_path / "b" / "model.pt")["model_state"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)



def test_augmented_run_is_the_same_with_loader_workers_and_resumes_exactly_with_them(libri, tmp_path):
    """Waveform augmentation (drawn in the loader's workers), SpecAugment, dither and dropout: the
    run trains the same with 0 or 2 workers, and stopped inside an epoch and resumed with workers
    it ends as the uninterrupted run, loss for loss and weight for weight (the workers of the
    resumed epoch start at its third batch)."""
    manifest = _manifest(tmp_path / "train.jsonl", [libri[u] for u in SHORT[:6]])
    augmented = (*RESUME_OVERRIDES, "optim.schedule=constant", "optim.warmup_steps=20",
                 "augment.speed_factors=[0.9,1.0,1.1]", "augment.gain_db=6", "augment.edge_trim=0.1",
                 "augment.freq_masks=2", "augment.freq_mask_width=10", "augment.time_masks=2",
                 "augment.time_mask_width=5", "augment.time_warp=3")
    train(_config(tmp_path / "a", manifest, *augmented, "data.num_workers=0"))
    first = train(_config(tmp_path / "b", manifest, *augmented, "data.num_workers=2", "max_steps=5"))
    assert (first.steps, first.stopped_early) == (5, True)
    train(_config(tmp_path / "b", manifest, *augmented, "data.num_workers=2"), resume=True)
    fa, fb = _fingerprint(tmp_path / "a"), _fingerprint(tmp_path / "b")
    assert [f[0] for f in fb] == list(range(1, 10)) and fa == fb
    wa = load_checkpoint(tmp_path / "a" / "model.pt")["model_state"]
    wb = load_checkpoint(tmp_path / "b" / "model.pt")["model_state"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_ctrl_c_saves_the_step_and_resume_stays_exact(libri, tmp_path):
    """Ctrl-C at a terminal (SIGINT to the process group: the data-loader worker too) finishes the
    step, saves last.pt there and exits 130 with one line; --resume then ends where an
    uninterrupted run ends, loss for loss and weight for weight."""
    manifest = _manifest(tmp_path / "train.jsonl", [libri[u] for u in SHORT[:6]])
    config = tmp_path / "conf.yaml"
    config.write_text("preset: tiny\ndevice: cpu\nthreads: 1\nlog_every_steps: 1\nepochs: 4\nseed: 7\n"
                      f"features:\n  kind: fbank\n  dither: 30.0\nmodel:\n  dropout: 0.3\n"
                      f"data:\n  train_manifest: {manifest}\n  max_batch_size: 2\n  num_workers: 1\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    env.pop("WORLD_SIZE", None)

    def train_cli(out: Path, *extra: str, **popen) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "asr.cli", "train", str(config), f"out_dir={out}", *extra],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)

    whole = train_cli(tmp_path / "whole")
    assert whole.wait(timeout=300) == 0, whole.stderr.read()
    run = train_cli(tmp_path / "b", start_new_session=True)
    log = tmp_path / "b" / "train_log.jsonl"
    deadline = time.monotonic() + 120
    while not (log.is_file() and '"event": "step"' in log.read_text()) and run.poll() is None:
        assert time.monotonic() < deadline, "no training step logged"
        time.sleep(0.01)
    os.killpg(run.pid, signal.SIGINT)  # as the terminal sends it
    out, err = run.communicate(timeout=120)
    assert run.returncode == 130, err
    assert "Traceback" not in err and err.rstrip().endswith("asr: interrupted"), err
    saved = load_checkpoint(tmp_path / "b" / "last.pt")["train_state"]
    assert 1 <= saved["step"] < 12, saved["step"]  # stopped inside the run, at the step it was in
    assert f"stopped at step={saved['step']} " in err and "--resume goes on from there" in err
    resumed = train_cli(tmp_path / "b", "--resume")
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()
    assert _fingerprint(tmp_path / "whole") == _fingerprint(tmp_path / "b")
    assert [f[0] for f in _fingerprint(tmp_path / "b")] == list(range(1, 13))
    wa = load_checkpoint(tmp_path / "whole" / "model.pt")["model_state"]
    wb = load_checkpoint(tmp_path / "b" / "model.pt")["model_state"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_ctrl_c_in_the_dev_scoring_stops_it_and_resume_scores_it_exactly(libri, tmp_path, capsys, caplog):
    """Ctrl-C in the dev scoring of an epoch's end (which took minutes on a large dev set, and under
    torchrun lost the epoch once its launcher killed the ranks) stops the scoring at its next
    batch and saves last.pt with the epoch's batches done, its end not; --resume does that end
    (scoring, best.pt, the epoch's event) and ends as the uninterrupted run. ``asr train`` in this
    process, the SIGINT raised when the scoring warns of its first batch's unreadable file."""
    from asr.cli import main

    manifest = _manifest(tmp_path / "train.jsonl", [libri[u] for u in SHORT[:6]])
    corrupt = tmp_path / "corrupt.wav"  # shortest, so scored first: its warning says the scoring has begun
    corrupt.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt nonsense" * 4)
    dev = _manifest(tmp_path / "dev.jsonl", [{"audio_filepath": str(corrupt), "duration": 0.1, "text": "A"},
                                             *[libri[u] for u in SHORT * 2]])
    config = tmp_path / "conf.yaml"
    config.write_text("preset: tiny\ndevice: cpu\nthreads: 1\nlog_every_steps: 1\nepochs: 2\nseed: 7\n"
                      "features:\n  kind: fbank\n  dither: 30.0\nmodel:\n  dropout: 0.3\n"
                      f"data:\n  train_manifest: {manifest}\n  dev_manifest: {dev}\n  max_batch_size: 2\n"
                      "  eval_batch_s: 3.5\n  num_workers: 1\n")  # 3 steps an epoch; one dev utterance a batch

    def train_cli(out: Path, *extra: str) -> int:
        return main(["train", str(config), f"out_dir={out}", *extra])

    assert train_cli(tmp_path / "whole") == 0
    handler = _CtrlCOnScoring()
    logging.getLogger("asr").addHandler(handler)
    try:
        capsys.readouterr()
        assert train_cli(tmp_path / "b") == 130
    finally:
        logging.getLogger("asr").removeHandler(handler)
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.rstrip().endswith("asr: interrupted"), err
    assert ("stopped at step=3 (epoch 1, batch 3 of 3) in the dev scoring of the epoch's end; "
            f"{tmp_path / 'b' / 'last.pt'} holds it: the same command with --resume scores the dev set and goes on"
            in caplog.messages), caplog.messages

    def events(run_dir: Path) -> list[dict]:
        return [json.loads(line) for line in (run_dir / "train_log.jsonl").read_text().splitlines()]

    assert [e["event"] for e in events(tmp_path / "b")] == ["step"] * 3  # the scoring did not finish
    saved = load_checkpoint(tmp_path / "b" / "last.pt")["train_state"]
    assert (saved["step"], saved["epoch"], saved["batches_done"], saved["best_dev_wer"]) == (3, 0, 3, None)
    assert not (tmp_path / "b" / "best.pt").exists()
    assert train_cli(tmp_path / "b", "--resume") == 0

    def ends(run_dir: Path) -> list[tuple]:
        return [(e["epoch"], e["step"], e["dev_wer"], e["dev_cer"], e["best_dev_wer"])
                for e in events(run_dir) if e["event"] == "epoch"]

    assert ends(tmp_path / "b") == ends(tmp_path / "whole") and len(ends(tmp_path / "b")) == 2
    assert _fingerprint(tmp_path / "b") == _fingerprint(tmp_path / "whole")
    assert [f[0] for f in _fingerprint(tmp_path / "b")] == list(range(1, 7))
    for name in ("best.pt", "model.pt", "last.pt"):
        a, b = (load_checkpoint(tmp_path / run / name) for run in ("whole", "b"))
        assert a["metrics"] == b["metrics"], name
        assert all(torch.equal(a["model_state"][k], b["model_state"][k]) for k in a["model_state"]), name


class _CtrlCOnScoring(logging.Handler):
    """Sends the process SIGINT when the dev scoring warns of its unreadable file (its first batch)."""

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("skipped unreadable audio: "):
            signal.raise_signal(signal.SIGINT)


def test_ctrl_c_in_the_dev_scoring_at_max_steps_is_scored_by_resume_which_stops_there(libri, tmp_path):
    """max_steps at an epoch's end and a Ctrl-C in that end's dev scoring: --resume with the same
    max_steps, which the run has reached, still does the end left (it did nothing, and the run's
    last scoring was lost), and trains nothing more."""
    manifest = _manifest(tmp_path / "train.jsonl", [libri[u] for u in SHORT[:6]])
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x24\x00\x00\x00WAVEfmt nonsense" * 4)
    dev = _manifest(tmp_path / "dev.jsonl", [{"audio_filepath": str(corrupt), "duration": 0.1, "text": "A"},
                                             *[libri[u] for u in SHORT[6:]]])
    cfg = _config(tmp_path / "run", manifest, *RESUME_OVERRIDES, f"data.dev_manifest={dev}", "data.eval_batch_s=3.5",
                  "max_steps=3")  # the end of epoch 1 of 3
    handler = _CtrlCOnScoring()
    logging.getLogger("asr").addHandler(handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            train(cfg)
    finally:
        logging.getLogger("asr").removeHandler(handler)
    saved = load_checkpoint(cfg.run_dir / "last.pt")["train_state"]
    assert (saved["step"], saved["epoch"], saved["batches_done"]) == (3, 0, 3)
    result = train(cfg, resume=True)
    assert (result.steps, result.epochs_done, result.stopped_early) == (3, 1, True)
    events = [json.loads(line) for line in (cfg.run_dir / "train_log.jsonl").read_text().splitlines()]
    assert [(e["event"], e["step"]) for e in events] == [("step", 1), ("step", 2), ("step", 3), ("epoch", 3)]
    assert events[-1]["dev_wer"] == result.best_dev_wer is not None
    assert load_checkpoint(cfg.run_dir / "model.pt")["metrics"]["step"] == 3


def test_resume_inside_an_epoch_refuses_other_training_data_or_batching(libri, tmp_path, capsys):
    """A run stopped at batch 2 of 3 resumed over a manifest of 2 utterances (1 batch) failed with a
    ValueError traceback from the sampler; one with as many batches resumed silently into batches
    made from other utterances. Between epochs the data may change."""
    from asr.cli import main

    six = _manifest(tmp_path / "six.jsonl", [libri[u] for u in SHORT[:6]])
    two = _manifest(tmp_path / "two.jsonl", [libri[u] for u in SHORT[:2]])
    run = tmp_path / "run"
    train(_config(run, six, "data.max_batch_size=2", "max_steps=2", "epochs=2"))  # stopped at batch 2 of 3
    for overrides, now in [((f"data.train_manifest={two}", "data.max_batch_size=2"), "1 batches of 2"),
                           (("data.max_batch_size=3",), "2 batches of 6")]:
        with pytest.raises(TrainError, match=rf"^{run / 'last.pt'}: saved at batch 2 of 3 of epoch 1, over 6 training "
                                             rf"utterances; the config now makes {now} \(data\.train_manifest, "
                                             r"data\.max_batch_s or data\.max_batch_size changed\); resume with the "
                                             r"run's own config$"):
            train(_config(run, six, *overrides, "epochs=2"), resume=True)
    conf = tmp_path / "conf.yaml"
    conf.write_text(f"preset: tiny\ndevice: cpu\nthreads: 1\nfeatures:\n  kind: fbank\ndata:\n  train_manifest: {two}\n")
    assert main(["train", str(conf), f"out_dir={run}", "epochs=2", "--resume"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"asr: error: {run / 'last.pt'}: saved at batch 2 of 3"), err
    result = train(_config(run, six, "data.max_batch_size=2", "epochs=2"), resume=True)  # its own config
    assert (result.steps, result.epochs_done) == (6, 2)
    result = train(_config(run, two, "data.max_batch_size=2", "epochs=3"), resume=True)  # a new epoch: fine
    assert (result.steps, result.epochs_done) == (7, 3)

def test_resume_inside_an_epoch_refuses_other_utterances_as_many_as_the_run_had(libri, tmp_path, capsys):
    """A manifest of as many other utterances, making as many batches, resumed silently into that
    epoch's batches of other utterances (so did the run's own manifest reordered): now one line naming
    the manifest. The same files in another folder resume, and so does a last.pt saved before the
    digest of the training set was."""
    from asr.cli import main

    first = [libri[u] for u in SHORT[:4]]
    own = _manifest(tmp_path / "own.jsonl", first)
    other = _manifest(tmp_path / "other.jsonl", [libri[u] for u in SHORT[4:8]])
    reordered = _manifest(tmp_path / "reordered.jsonl", first[::-1])
    (tmp_path / "moved").mkdir()
    moved = [{**e, "audio_filepath": str(tmp_path / "moved" / Path(e["audio_filepath"]).name)} for e in first]
    for entry, old in zip(moved, first):
        Path(entry["audio_filepath"]).symlink_to(old["audio_filepath"])
    moved = _manifest(tmp_path / "moved.jsonl", moved)
    run, common = tmp_path / "run", ("data.max_batch_size=2", "epochs=2")
    train(_config(run, own, *common, "max_steps=1"))  # stopped at batch 1 of 2
    last = run / "last.pt"
    for manifest in (other, reordered):
        with pytest.raises(TrainError, match=rf"^{last}: saved at batch 1 of 2 of epoch 1, over other training "
                                             rf"utterances than {manifest} lists now \(as many, but other files, "
                                             r"durations or order\); resume with the manifest the run was saved with, "
                                             rf"or start a new run with init_from={last}$"):
            train(_config(run, manifest, *common), resume=True)
    conf = tmp_path / "conf.yaml"
    conf.write_text(f"preset: tiny\ndevice: cpu\nthreads: 1\nfeatures:\n  kind: fbank\n"
                    f"data:\n  train_manifest: {other}\n  max_batch_size: 2\n")
    assert main(["train", str(conf), f"out_dir={run}", "epochs=2", "--resume"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"asr: error: {last}: saved at batch 1 of 2"), err
    older = tmp_path / "older"
    shutil.copytree(run, older)
    payload = load_checkpoint(older / "last.pt")
    del payload["train_state"]["training_set"]
    save_checkpoint(payload, older / "last.pt")
    assert (train(_config(older, own, *common), resume=True).steps, _steps(older)[1]["batch"]) == (4, 2)
    result = train(_config(run, moved, *common), resume=True)
    assert (result.steps, result.epochs_done) == (4, 2)
    assert _fingerprint(run) == _fingerprint(older)  # the same batches, from the same point


def test_stop_inside_an_epoch_scores_the_dev_set_and_resume_stays_exact(libri, tmp_path):
    manifest = _manifest(tmp_path / "train.jsonl", [libri[u] for u in SHORT[:6]])
    dev = _manifest(tmp_path / "dev.jsonl", [libri[u] for u in SHORT[6:]])
    common = (*RESUME_OVERRIDES, "epochs=2", "optim.schedule=constant", "optim.warmup_steps=20",
              f"data.dev_manifest={dev}")
    a = train(_config(tmp_path / "a", manifest, *common))
    first = train(_config(tmp_path / "b", manifest, *common, "max_steps=4"))  # stops at batch 1 of epoch 2
    assert (first.steps, first.stopped_early) == (4, True)
    events = [json.loads(line) for line in (tmp_path / "b" / "train_log.jsonl").read_text().splitlines()]
    scored = [e for e in events if "dev_wer" in e]
    assert [(e["event"], e["step"]) for e in scored] == [("epoch", 3), ("stop", 4)]
    assert first.best_dev_wer == min(e["dev_wer"] for e in scored)
    best_step = next(e["step"] for e in scored if e["dev_wer"] == first.best_dev_wer)
    assert load_checkpoint(tmp_path / "b" / "model.pt")["metrics"]["step"] == best_step
    second = train(_config(tmp_path / "b", manifest, *common), resume=True)
    assert second.steps == 6
    assert _fingerprint(tmp_path / "b") == _fingerprint(a.run_dir)  # the scoring left the random state as it was
    last_a, last_b = load_checkpoint(a.run_dir / "last.pt"), load_checkpoint(tmp_path / "b" / "last.pt")
    assert all(torch.equal(last_a["model_state"][k], v) for k, v in last_b["model_state"].items())


class _Crash(Exception):
    pass


def test_resume_after_crash_is_exact_with_cosine_schedule(libri, tmp_path):
    manifest = _manifest(tmp_path / "train.jsonl", [libri[u] for u in SHORT[:6]])
    overrides = (*RESUME_OVERRIDES, "optim.schedule=cosine", "optim.warmup_steps=2", "checkpoint_every_steps=2")
    a = _config(tmp_path / "a", manifest, *overrides)
    train(a)
    b = _config(tmp_path / "b", manifest, *overrides)

    def crash_at_step_5(event: dict) -> None:
        if event["event"] == "step" and event["step"] == 5:
            raise _Crash

    with pytest.raises(_Crash):
        train(b, on_event=crash_at_step_5)  # last.pt holds step 4; step 5 was logged, then lost
    assert load_checkpoint(tmp_path / "b" / "last.pt")["train_state"]["step"] == 4
    result = train(b, resume=True)
    assert result.steps == 9 and result.epochs_done == 3
    fb = _fingerprint(tmp_path / "b")
    assert [f[0] for f in fb] == list(range(1, 10))  # the lost step is not logged twice
    assert _fingerprint(tmp_path / "a") == fb


def _files(run_dir: Path) -> dict[str, tuple[int, bytes]]:
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(run_dir.iterdir()) if p.is_file()}


def test_utterances_longer_than_a_batch_are_warned_of_once_a_run(libri, tmp_path, caplog):
    """Training and dev utterances longer than their batch size form batches of their own: one
    warning each set at the start, naming the option and the longest one's manifest line (dev
    scoring warned again every epoch, naming an index)."""
    entries = [libri[u] for u in SHORT[:4]]
    manifest = _manifest(tmp_path / "train.jsonl", entries)
    longest = max(range(4), key=lambda i: entries[i]["duration"])
    size = sorted(e["duration"] for e in entries)[1]  # two or three are longer
    cfg = _config(tmp_path / "run", manifest, f"data.dev_manifest={manifest}", "epochs=2",
                  f"data.max_batch_s={size}", f"data.eval_batch_s={size}")
    with caplog.at_level(logging.WARNING):
        train(cfg)
    long = sum(e["duration"] > size for e in entries)
    line = (f"{long} of 4 utterances are longer than data.{{}} {size:g} s and form batches of their own, larger than "
            f"that; the longest: {manifest}:{longest + 1}: {entries[longest]['audio_filepath']} "
            f"({entries[longest]['duration']:.2f} s)")
    warnings = [r.getMessage() for r in caplog.records if "form batches of their own" in r.getMessage()]
    assert warnings == [line.format("max_batch_s"), line.format("eval_batch_s")]


def test_resume_of_a_run_at_its_step_or_epoch_limit_trains_nothing(libri, tmp_path, caplog):
    manifest = _manifest(tmp_path / "train.jsonl", [libri[u] for u in SHORT[:4]])
    common = ("epochs=2", "data.max_batch_size=2")  # 2 batches per epoch
    at_steps = _config(tmp_path / "steps", manifest, *common, "max_steps=3")
    assert (train(at_steps).steps, len(_steps(at_steps.run_dir))) == (3, 3)
    before = _files(at_steps.run_dir)
    with caplog.at_level(logging.WARNING, logger="asr.train"):
        result = train(at_steps, resume=True)  # trained a 4th step and rewrote model.pt
    assert (result.steps, result.epochs_done, result.stopped_early) == (3, 1, True)
    assert "the run already reached max_steps=3 (step=3 epoch=1); nothing to train" in caplog.text
    after = _files(at_steps.run_dir)
    assert after.pop("config.yaml")[1] == before.pop("config.yaml")[1]  # rewritten, as by any resume
    assert after == before
    assert load_checkpoint(at_steps.run_dir / "last.pt")["train_state"]["step"] == 3

    at_epochs = _config(tmp_path / "epochs", manifest, *common)
    assert train(at_epochs).steps == 4
    before = _files(at_epochs.run_dir)
    result = train(at_epochs, resume=True)
    assert (result.steps, result.epochs_done, result.stopped_early) == (4, 2, False)
    assert {k: v for k, v in _files(at_epochs.run_dir).items() if k != "config.yaml"} == \
        {k: v for k, v in before.items() if k != "config.yaml"}
    (at_epochs.run_dir / "model.pt").unlink()  # a run stopped between last.pt and model.pt
    assert train(at_epochs, resume=True).steps == 4
    assert load_checkpoint(at_epochs.run_dir / "model.pt")["metrics"]["step"] == 4

    more = _config(tmp_path / "steps", manifest, *common, "max_steps=4")  # a higher limit trains on
    assert train(more, resume=True).steps == 4 and len(_steps(more.run_dir)) == 4


def test_train_gives_back_the_callers_threads_and_random_state(libri, tmp_path):
    manifest = _manifest(tmp_path / "train.jsonl", [libri[u] for u in SHORT[:2]])
    threads = torch.get_num_threads()
    torch.set_num_threads(3)  # the run sets 1

    def check_unchanged(run, *args, **kwargs):
        random.seed(11)
        torch.manual_seed(11)
        python_state, torch_state = random.getstate(), torch.get_rng_state()
        run(*args, **kwargs)
        assert torch.get_num_threads() == 3
        assert random.getstate() == python_state and torch.equal(torch.get_rng_state(), torch_state)

    def fail(event: dict) -> None:
        raise _Crash

    try:
        check_unchanged(train, _config(tmp_path / "a", manifest, "max_steps=2", "seed=5"))
        with pytest.raises(_Crash):  # an error while training
            check_unchanged(train, _config(tmp_path / "b", manifest, "max_steps=2", "seed=5"), on_event=fail)
        with pytest.raises(TrainError, match="data.train_manifest is not set"):  # an error in setting up
            check_unchanged(train, _config(tmp_path / "c", "", "seed=5"))
        trainer = Trainer(_config(tmp_path / "d", manifest, "max_steps=1", "seed=5"))  # what train() undoes
        assert torch.get_num_threads() == 1 and trainer.run().steps == 1
    finally:
        torch.set_num_threads(threads)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_train_on_cuda_gives_back_the_cuda_random_state(libri, tmp_path):
    manifest = _manifest(tmp_path / "train.jsonl", [libri[u] for u in SHORT[:2]])
    torch.cuda.manual_seed_all(11)
    torch.rand(1, device="cuda")  # a state that is not a fresh seed's
    cuda_state = torch.cuda.get_rng_state_all()
    train(_config(tmp_path / "run", manifest, "max_steps=2", "seed=5", "device=cuda", "model.dropout=0.3"))
    assert all(torch.equal(a, b) for a, b in zip(torch.cuda.get_rng_state_all(), cuda_state))


def test_a_config_built_in_python_trains_its_preset(libri, tmp_path):
    manifest = _manifest(tmp_path / "train.jsonl", [libri[u] for u in SHORT[:2]])
    cfg = TrainConfig(preset="tiny", out_dir=tmp_path / "run", data=DataConfig(train_manifest=manifest),
                      features=FeatureConfig(kind="fbank"), device="cpu", threads=1, log_every_steps=1, max_steps=1)
    assert cfg == _config(tmp_path / "run", manifest, "max_steps=1")  # as the YAML path resolves it
    result = train(cfg)
    payload = load_checkpoint(result.run_dir / "model.pt")
    assert payload["model_config"] == config_to_dict(load_preset("tiny"))  # was the default ModelConfig
    assert load_yaml(result.run_dir / "config.yaml")["model"] == config_to_dict(load_preset("tiny"))
    assert config_from_dict(TrainConfig, payload["config"]) == cfg


# ------------------------------------------------------------------------------- checkpoints
def test_checkpoint_loads_weights_only_and_round_trips(trained, libri):
    trainer, result, manifest = trained
    run_dir = result.run_dir
    assert (result.steps, result.epochs_done) == (3, 3)
    for name in ("model.pt", "last.pt", "best.pt"):
        payload = torch.load(run_dir / name, map_location="cpu", weights_only=True)
        assert payload["format"] == 1 and payload["tokenizer"]["type"] == "char"
    payload = torch.load(run_dir / "model.pt", map_location="cpu", weights_only=True)
    assert "train_state" not in payload and "train_state" in torch.load(run_dir / "last.pt", weights_only=True)
    assert config_from_dict(TrainConfig, payload["config"]) == trainer.cfg
    assert config_from_dict(TrainConfig, load_yaml(run_dir / "config.yaml")) == trainer.cfg

    loaded = recognizer_from_payload(payload)
    original = trainer.recognizer().eval()
    utts = read_manifest(manifest)
    batch = collate([SpeechDataset(utts, original.tokenizer)[i] for i in (0, 3)])  # two lengths, padded
    lp_a, lens_a = original.log_probs(batch.waves, batch.wave_lens)
    lp_b, lens_b = loaded.log_probs(batch.waves, batch.wave_lens)
    assert torch.equal(lens_a, lens_b) and lens_a[0] != lens_a[1]
    assert torch.equal(lp_a, lp_b)
    assert [h.text for h in original.recognize(batch.waves, batch.wave_lens)] == \
        [h.text for h in loaded.recognize(batch.waves, batch.wave_lens)]
    assert not loaded.model.training and not loaded.features.training


def test_checkpoints_written_in_background_hold_the_state_of_the_save(libri, tmp_path):
    manifest = _manifest(tmp_path / "train.jsonl", [libri[u] for u in SHORT[:2]])
    trainer = Trainer(_config(tmp_path / "run", manifest, "max_steps=1", "ema_decay=0.9"))
    trainer.run()
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    adam = {k: v.clone() for k, v in trainer.optimizer.state_dict()["state"][0].items()}
    trainer.save("last.pt", with_train_state=True)
    with torch.no_grad():  # training goes on while the file is written
        for p in trainer.model.parameters():
            p.add_(1.0)
        trainer.optimizer.state_dict()["state"][0]["exp_avg"].add_(1.0)
    trainer.wait_for_checkpoints()
    saved = load_checkpoint(tmp_path / "run" / "last.pt")
    assert all(torch.equal(saved["model_state"][k], v) for k, v in before.items())
    assert all(torch.equal(saved["train_state"]["optimizer"]["state"][0][k], v) for k, v in adam.items())
    name, live = next(iter(trainer.model.named_parameters()))
    assert not torch.equal(live.detach(), saved["model_state"][name])  # the live weights moved on

    (tmp_path / "file").write_text("not a folder")
    trainer.checkpoints.run_dir = tmp_path / "file" / "run"  # the write fails in the background ...
    trainer.save("best.pt")
    with pytest.raises(OSError):  # ... and the error reaches the training loop
        trainer.wait_for_checkpoints()


def test_refuses_to_overwrite_a_run(trained):
    trainer, result, _ = trained
    config_mtime = (result.run_dir / "config.yaml").stat().st_mtime_ns
    with pytest.raises(TrainError, match=rf"{result.run_dir}: a run already exists there; pass --resume"):
        Trainer(trainer.cfg)
    assert (result.run_dir / "config.yaml").stat().st_mtime_ns == config_mtime


def test_new_run_never_replaces_the_users_config_or_log(trained, tmp_path):
    """out_dir set to the folder of the user's own config.yaml: refused before anything is written.
    The files of an earlier run that saved no checkpoint are the run's own, and are replaced."""
    trainer, _, manifest = trained
    folder = tmp_path / "mine"
    folder.mkdir()
    mine = "preset: tiny  # my settings\n"
    (folder / "config.yaml").write_text(mine)
    with pytest.raises(OutputError, match=r"mine/config\.yaml: exists and is not the configuration asr train wrote"):
        Trainer(_config(folder, manifest))
    assert (folder / "config.yaml").read_text() == mine and [p.name for p in folder.iterdir()] == ["config.yaml"]

    (folder / "config.yaml").unlink()
    (folder / "train_log.jsonl").write_text("my notes\n")
    with pytest.raises(OutputError, match=r"mine/train_log\.jsonl: exists and is not the log of an asr train run"):
        Trainer(_config(folder, manifest))
    assert (folder / "train_log.jsonl").read_text() == "my notes\n"

    failed = tmp_path / "failed"  # an earlier run stopped before its first checkpoint
    failed.mkdir()
    shutil.copy(trainer.run_dir / "config.yaml", failed / "config.yaml")
    (failed / "train_log.jsonl").write_text('{"event": "step", "step": 1, "loss": 9.0}\n{"event": "st')
    Trainer(_config(failed, manifest))
    assert (failed / "config.yaml").read_text().startswith("# written by asr train")



def test_new_run_never_replaces_a_checkpoint_named_as_its_own(trained, tmp_path):
    """best.pt or epoch-<N>.pt without last.pt (deleted, or the user's own files) were overwritten by a
    new run; and a run whose last.pt was deleted was told both 'pass --resume' and 'nothing to resume'."""
    trainer, _, manifest = trained
    for name in ("best.pt", "epoch-3.pt", "model.pt"):
        folder = tmp_path / name
        folder.mkdir()
        (folder / name).write_bytes(b"precious")
        with pytest.raises(TrainError, match=rf"^{folder / name}: exists and a new run would replace it "
                                             r"\(no last\.pt to resume from\); choose another name/out_dir$"):
            train(_config(folder, manifest))
        assert [p.name for p in folder.iterdir()] == [name] and (folder / name).read_bytes() == b"precious"

    run = tmp_path / "run"  # a finished run whose last.pt was deleted
    shutil.copytree(trainer.run_dir, run)
    (run / "last.pt").unlink()
    with pytest.raises(TrainError, match=rf"^{run / 'last.pt'}: nothing to resume \(no checkpoint\); "
                                         r"model\.pt, best\.pt hold no training state$"):
        train(_config(run, manifest), resume=True)
    with pytest.raises(TrainError, match=r"model\.pt: exists and a new run would replace it"):
        train(_config(run, manifest))


def test_resume_without_checkpoint(trained, tmp_path):
    trainer, _, manifest = trained
    cfg = _config(tmp_path / "fresh", manifest)
    with pytest.raises(TrainError, match=r"fresh/last\.pt: nothing to resume \(no checkpoint\)"):
        train(cfg, resume=True)
    assert not (tmp_path / "fresh").exists()


def test_resume_refuses_a_config_the_run_no_longer_fits(trained, tmp_path):
    _, result, manifest = trained
    run = tmp_path / "run"
    shutil.copytree(result.run_dir, run)
    last = run / "last.pt"
    config = (run / "config.yaml").read_text()
    with pytest.raises(TrainError, match=rf"^{last}: does not match the config \(model\.rnn_hidden=\d+ \(config: 48\)\); "
                                         "resume with the run's own config$"):  # a RuntimeError once
        train(_config(run, manifest, "epochs=4", "data.max_batch_size=4", "model.rnn_hidden=48"), resume=True)
    with pytest.raises(TrainError, match=rf"^{last}: does not match the config \(features\.n_mels=80 \(config: 40\)\)"):
        train(_config(run, manifest, "epochs=4", "data.max_batch_size=4", "features.n_mels=40"), resume=True)
    with pytest.raises(TrainError, match=rf"^{last}: holds the state of another optimizer than optim.name='sgd'"):
        train(_config(run, manifest, "epochs=4", "data.max_batch_size=4", "optim.name=sgd"), resume=True)
    with pytest.raises(TrainError, match=rf"^{last}: does not match the config \(tokenizer 'char' \(config: tokenizer.kind='bpe'\)\)"):
        train(_config(run, manifest, "epochs=4", "data.max_batch_size=4", "tokenizer.kind=bpe"), resume=True)  # went on
    assert (run / "config.yaml").read_text() == config  # the run's own config is left as it was
    shutil.copy(run / "model.pt", last)  # weights only
    with pytest.raises(TrainError, match=rf"^{last}: holds no training state \(an inference checkpoint\)"):
        train(_config(run, manifest, "epochs=4", "data.max_batch_size=4"), resume=True)


def test_no_manifest_is_a_train_error(tmp_path):
    with pytest.raises(TrainError, match=r"^data\.train_manifest is not set: nothing to train on \(set it in the "
                                         r"config's data: section, or as data\.train_manifest=MANIFEST"):
        train(resolve_config(None, ["preset=tiny", f"out_dir={tmp_path / 'r'}", "device=cpu"]))


# ------------------------------------------------------------------------------- fine-tuning
def test_init_from_fine_tunes_a_trained_model_with_a_new_optimizer(libri, tmp_path):
    manifest = _manifest(tmp_path / "train.jsonl", [libri[u] for u in SHORT[:2]])
    fit = ("model.rnn_hidden=128", "optim.lr=3e-3", "optim.warmup_steps=1", "optim.schedule=constant",
           "data.max_batch_size=1", "features.normalize=global")
    first = train(_config(tmp_path / "first", manifest, *fit, "epochs=10"))
    first_losses = [e["loss"] for e in _steps(first.run_dir)]
    source = first.run_dir / "model.pt"
    source_bytes = source.read_bytes()
    payload = load_checkpoint(source)

    cfg = _config(tmp_path / "tuned", manifest, *fit, "epochs=1", "optim.warmup_steps=4", "model.dropout=0.3",
                  f"init_from={source}")
    trainer = Trainer(cfg)
    state = trainer.model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in payload["model_state"].items())
    assert torch.equal(trainer.features.cmvn_mean, payload["features_state"]["cmvn_mean"])  # not recomputed
    assert trainer.tokenizer.to_dict() == payload["tokenizer"]
    assert trainer.progress.step == 0 and trainer.optimizer.state_dict()["state"] == {}
    trainer.run()
    steps = _steps(cfg.run_dir)
    assert [e["step"] for e in steps] == [1, 2]
    assert _steps(first.run_dir)[-1]["lr"] == 3e-3 and steps[0]["lr"] < steps[1]["lr"] < 3e-3  # a new warm-up
    # it goes on from the trained model's loss (~300 at the first step, ~20 at the last), far below a new model's
    assert steps[0]["loss"] < 0.25 * first_losses[0]
    assert source.read_bytes() == source_bytes
    assert config_from_dict(TrainConfig, load_checkpoint(cfg.run_dir / "model.pt")["config"]).init_from == str(source)

    source.unlink()  # resuming reads last.pt only
    more = _config(tmp_path / "tuned", manifest, *fit, "epochs=2", "model.dropout=0.3", f"init_from={source}")
    assert train(more, resume=True).steps == 4


def test_init_from_refuses_a_checkpoint_of_another_model(trained, tmp_path):
    _, result, manifest = trained
    source = result.run_dir / "model.pt"
    with pytest.raises(TrainError, match=rf"^{source}: init_from needs the checkpoint's features, model and "
                                         r"tokenizer; it has model.rnn_hidden=\d+ \(config: 96\); "
                                         r"tokenizer 'char' \(config: tokenizer.kind='bpe'\)$"):
        Trainer(_config(tmp_path / "a", manifest, f"init_from={source}", "model.rnn_hidden=96", "tokenizer.kind=bpe"))
    with pytest.raises(TrainError, match=rf"^init_from: {tmp_path}/none.pt: no such checkpoint file$"):
        Trainer(_config(tmp_path / "b", manifest, f"init_from={tmp_path / 'none.pt'}"))
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()  # checked before the run is made


# --------------------------------------------------------------------------- non-finite losses
def test_impossible_transcripts_are_zeroed_and_training_goes_on(libri, tmp_path):
    good, bad1, bad2 = (dict(libri[u]) for u in SHORT[:3])
    bad1["text"] = bad2["text"] = "a b c d e f g h " * 40  # 640 characters for ~120 output frames
    manifest = _manifest(tmp_path / "train.jsonl", [good, bad1, bad2])
    cfg = _config(tmp_path / "run", manifest, "epochs=2", "data.max_batch_size=2", "optim.warmup_steps=1")
    result = train(cfg)  # batches: [good, bad1] (mixed) and [bad2] (nothing to learn from)
    assert result.steps == 4
    assert result.zeroed_utterances == 4  # bad1 and bad2, in both epochs
    assert result.skipped_batches == 2  # the [bad2] batch, in both epochs
    steps = _steps(cfg.run_dir)
    mixed = [e for e in steps if math.isfinite(e["loss"])]
    assert len(mixed) == 2  # the mixed batch trained: finite loss and gradient norm
    assert all(math.isfinite(e["grad_norm"]) and e["grad_norm"] > 0 for e in mixed)
    assert mixed[1]["loss"] < mixed[0]["loss"]
    state = load_checkpoint(cfg.run_dir / "model.pt")["model_state"]
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


# --------------------------------------------------------------------- tokenizer, normalization
def test_sentencepiece_tokenizer_trains_end_to_end(libri, tmp_path):
    entries = [libri[u] for u in SHORT]
    manifest = _manifest(tmp_path / "train.jsonl", entries)
    cfg = _config(tmp_path / "run", manifest, "tokenizer.kind=bpe", "tokenizer.vocab_size=48", "epochs=1",
                  "data.max_batch_size=4")
    result = train(cfg)
    assert result.steps == 2 and result.zeroed_utterances == 0
    payload = load_checkpoint(cfg.run_dir / "model.pt")
    assert payload["tokenizer"]["type"] == "sentencepiece"
    tokenizer = tokenizer_from_dict(payload["tokenizer"])
    assert tokenizer.vocab_size == 48
    assert payload["model_state"]["output.weight"].shape[0] == 48
    text = normalize_text(entries[0]["text"])
    ids = tokenizer.encode(text)
    assert 0 not in ids and len(ids) < len(text) and tokenizer.decode(ids) == text  # merges happened
    transcripts = Transcriber.from_checkpoint(cfg.run_dir / "model.pt").transcribe([entries[0]["audio_filepath"]])
    assert len(transcripts) == 1 and isinstance(transcripts[0].text, str)
    # resuming reuses the checkpoint's tokenizer instead of training a new one
    more = _config(tmp_path / "run", manifest, "tokenizer.kind=bpe", "tokenizer.vocab_size=48", "epochs=2",
                   "data.max_batch_size=4")
    assert train(more, resume=True).steps == 4
    assert load_checkpoint(cfg.run_dir / "model.pt")["tokenizer"] == payload["tokenizer"]


def test_global_cmvn_statistics_stored_in_checkpoint(libri, tmp_path):
    manifest = _manifest(tmp_path / "train.jsonl", [libri[u] for u in SHORT[:4]])
    cfg = _config(tmp_path / "run", manifest, "features.normalize=global", "epochs=1", "data.max_batch_size=4")
    train(cfg)
    payload = load_checkpoint(cfg.run_dir / "model.pt")
    mean, std = payload["features_state"]["cmvn_mean"], payload["features_state"]["cmvn_std"]
    assert mean.shape == std.shape == (80,)
    assert mean.abs().min() > 0.1 and not torch.allclose(std, torch.ones(80))  # log-mel means are far from 0
    assert (std > 0).all() and torch.isfinite(mean).all()
    expected_mean, expected_std = compute_cmvn(FeatureExtractor(cfg.features), iter_waves(read_manifest(manifest)))
    torch.testing.assert_close(mean, expected_mean, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(std, expected_std, rtol=1e-5, atol=1e-5)
    loaded = recognizer_from_payload(payload)
    assert torch.equal(loaded.features.cmvn_mean, mean) and torch.equal(loaded.features.cmvn_std, std)


# ------------------------------------------------------------------------------ audio cache
def test_cached_audio_trains_and_scores_exactly_as_decoding_each_epoch(libri, tmp_path, caplog):
    entries = []
    for uid in SHORT[:6]:  # copies, deleted once the cache holds them
        copy = tmp_path / "audio" / f"{uid}.flac"
        copy.parent.mkdir(exist_ok=True)
        copy.write_bytes(Path(libri[uid]["audio_filepath"]).read_bytes())
        entries.append(dict(libri[uid], audio_filepath=str(copy)))
    train_manifest = _manifest(tmp_path / "train.jsonl", entries[:4])
    dev_manifest = _manifest(tmp_path / "dev.jsonl", entries[4:])
    common = ("epochs=2", "data.max_batch_size=2", "data.num_workers=2", f"data.dev_manifest={dev_manifest}",
              "features.normalize=global", "features.dither=30.0", "augment.speed_factors=[0.9,1.1]",
              "augment.gain_db=6", "seed=3")
    plain = train(_config(tmp_path / "plain", train_manifest, *common))
    with caplog.at_level(logging.INFO, logger="asr.run_data"):
        trainer = Trainer(_config(tmp_path / "cached", train_manifest, *common, "data.cache_audio=true"))
    assert "cached_audio_h=" in caplog.text and "utterances=6" in caplog.text
    shutil.rmtree(tmp_path / "audio")  # training, its workers and the dev scoring read memory only
    cached = trainer.run()
    assert (cached.skipped_batches, cached.epochs_done) == (0, 2)
    assert _fingerprint(cached.run_dir) == _fingerprint(plain.run_dir) and len(_fingerprint(plain.run_dir)) == 4
    assert cached.best_dev_wer == plain.best_dev_wer
    wa = load_checkpoint(plain.run_dir / "model.pt")
    wb = load_checkpoint(cached.run_dir / "model.pt")
    assert all(torch.equal(wa["model_state"][k], wb["model_state"][k]) for k in wa["model_state"])
    assert torch.equal(wa["features_state"]["cmvn_mean"], wb["features_state"]["cmvn_mean"])


def test_cache_audio_refuses_more_audio_than_memory(libri, tmp_path):
    entry = dict(libri[SHORT[0]], duration=1.0e8)  # 3 years of audio: 6 TB of samples
    manifest = _manifest(tmp_path / "train.jsonl", [entry])
    with pytest.raises(TrainError, match=r"data.cache_audio: the 27777.8 h of audio need 6400.0 GB of memory, "
                                         r"only .* GB is available; set data.cache_audio=false"):
        Trainer(_config(tmp_path / "run", manifest, "data.cache_audio=true"))


# ---------------------------------------------------------------------------------- dev set
def test_dev_set_scored_every_n_epochs_and_after_the_last_picks_best_and_model(libri, tmp_path):
    train_manifest = _manifest(tmp_path / "train.jsonl", [libri[u] for u in SHORT[:4]])
    dev_manifest = _manifest(tmp_path / "dev.jsonl", [libri[u] for u in SHORT[4:6]])
    cfg = _config(tmp_path / "run", train_manifest, "epochs=3", "data.max_batch_size=4",
                  f"data.dev_manifest={dev_manifest}", "data.dev_every_epochs=2", "keep_epoch_checkpoints=3")
    result = train(cfg)
    events = [json.loads(line) for line in (result.run_dir / "train_log.jsonl").read_text().splitlines()]
    epochs = [e for e in events if e["event"] == "epoch"]
    assert [e["epoch"] for e in epochs] == [0, 1, 2]
    assert ["dev_wer" in e for e in epochs] == [False, True, True]  # epoch 2 of 3, and the last one
    scored = [(e["dev_wer"], e["epoch"] + 1) for e in epochs if "dev_wer" in e]
    best_wer, best_epoch = min(scored)  # ties: the earlier epoch stays best
    assert result.best_dev_wer == best_wer == epochs[-1]["best_dev_wer"]

    def weights(name: str) -> dict:
        return torch.load(result.run_dir / name, map_location="cpu", weights_only=True)["model_state"]

    best = weights("best.pt")
    assert all(torch.equal(best[k], v) for k, v in weights(f"epoch-{best_epoch}.pt").items())
    assert all(torch.equal(best[k], v) for k, v in weights("model.pt").items())
    assert not all(torch.equal(best[k], v) for k, v in weights("epoch-1.pt").items())  # never scored
    with pytest.raises(ValueError, match="dev_every_epochs must be >= 1"):
        _config(tmp_path / "bad", train_manifest, "data.dev_every_epochs=0")


def test_audio_headers_are_checked_before_training(libri, tmp_path, caplog):
    """A wrong audio folder used to show only after the first epoch (the dev set: at its first scoring)."""
    from asr.run_data import TRAIN_AUDIO_PROBES, check_run_audio

    good = [libri[u] for u in SHORT[:2]]
    broken = []
    for i in range(TRAIN_AUDIO_PROBES + 10):  # files that exist (the manifest reader checks that) but hold no audio
        (tmp_path / f"gone-{i}.flac").write_bytes(b"fLaC" + bytes(40))
        broken.append({"audio_filepath": str(tmp_path / f"gone-{i}.flac"), "duration": 1.0, "text": "a"})
    train_manifest = _manifest(tmp_path / "train.jsonl", broken)
    with pytest.raises(TrainError, match=rf"^{train_manifest}: none of the training audio could be read "
                                         rf"\({TRAIN_AUDIO_PROBES} files drawn at random\), e\.g\. .*gone-\d+\.flac: "
                                         r".*; nothing was trained$"):
        train(_config(tmp_path / "run", train_manifest))
    assert not (tmp_path / "run").exists()

    # some training files broken: the probe passes (the dataset skips them while training)
    cfg = _config(tmp_path / "run", _manifest(tmp_path / "mixed.jsonl", good + broken[:3]),
                  f"data.dev_manifest={_manifest(tmp_path / 'dev.jsonl', good + broken[:1])}")
    utts = read_manifest(cfg.data.train_manifest)
    dev = read_manifest(cfg.data.dev_manifest)
    with caplog.at_level(logging.WARNING, logger="asr.run_data"):
        check_run_audio(cfg, utts, dev)
    assert [r.getMessage() for r in caplog.records] == [
        f"{cfg.data.dev_manifest}: 1 of 3 dev utterances cannot be read and are left out of the dev WER, "
        f"e.g. {broken[0]['audio_filepath']}: {caplog.records[0].getMessage().split(': ')[-1]}"]
    assert "gone-0.flac" in caplog.records[0].getMessage()


def test_an_unreadable_file_is_warned_of_once_a_run_not_every_epoch_or_scoring(libri, tmp_path, caplog):
    """Training warned of a damaged file each epoch, from the loader worker that read it, and the
    dev scoring each time it ran; the first warning names the file, line and cause."""
    damaged = []
    for name in ("train", "dev"):  # headers that read (the run's probe passes), data that does not decode
        data = bytearray(Path(libri[SHORT[0]]["audio_filepath"]).read_bytes())
        data[200:] = bytes(len(data) - 200)
        (tmp_path / f"{name}.flac").write_bytes(bytes(data))
        damaged.append({**libri[SHORT[0]], "audio_filepath": str(tmp_path / f"{name}.flac")})
    good = [libri[u] for u in SHORT[:2]]
    cfg = _config(tmp_path / "run", _manifest(tmp_path / "train.jsonl", good + damaged[:1]), "epochs=3",
                  f"data.dev_manifest={_manifest(tmp_path / 'dev.jsonl', good[:1] + damaged[1:])}",
                  "data.num_workers=1")
    with caplog.at_level(logging.WARNING, logger="asr.data"):
        result = train(cfg)
    assert result.epochs_done == 3 and result.best_dev_wer is not None
    warnings = [r.getMessage() for r in caplog.records if r.name == "asr.data"]
    assert len(warnings) == 2, warnings
    assert warnings[0].startswith(f"skipped unreadable audio: {cfg.data.train_manifest}:3: {tmp_path}/train.flac: ")
    assert warnings[1].startswith(f"skipped unreadable audio: {cfg.data.dev_manifest}:2: {tmp_path}/dev.flac: ")


def test_a_warning_about_a_file_is_logged_once_a_run_not_every_epoch_or_scoring(libri, shared_data, tmp_path, caplog):
    """A readable file that draws a warning (here: stereo SPHERE files whose channels cancel out in
    the mono mix) was warned of every epoch by the loader worker that read it, and at every dev
    scoring; now once a run, from the process that trains, as an unreadable file is."""
    cancelled = [shared_data / "sphere/123_2pcle_shn.sph", shared_data / "sphere/123_2alaw.sph"]
    odd = [{"audio_filepath": str(path), "duration": audio_info(path).duration_s, "text": "yes"} for path in cancelled]
    good = [libri[u] for u in SHORT[:2]]
    cfg = _config(tmp_path / "run", _manifest(tmp_path / "train.jsonl", good + odd), "epochs=3",
                  f"data.dev_manifest={_manifest(tmp_path / 'dev.jsonl', good[:1] + odd[1:])}", "data.num_workers=1")
    with caplog.at_level(logging.WARNING, logger="asr.audio"):
        result = train(cfg)
    assert result.epochs_done == 3 and result.best_dev_wer is not None
    warnings = [r.getMessage() for r in caplog.records if r.name == "asr.audio"]
    assert sorted(warnings) == sorted(f"{path}: its channels cancel out in the mono mix, {how}: one in opposite phase? "
                                      "read as it is" for path, how in zip(cancelled, ["to silence", "to 48 dB below"
                                                                                       " their level"]))


def test_sentencepiece_vocabulary_too_large_or_small_for_the_text_is_a_one_line_error(libri, tmp_path, capsys):
    from asr.cli import main
    from asr.tokenizer import TokenizerError

    manifest = _manifest(tmp_path / "train.jsonl", [libri[u] for u in SHORT[:2]])
    with pytest.raises(TokenizerError, match=r"^tokenizer\.vocab_size=256: too large for the training text "
                                             r"\(sentencepiece bpe allows at most \d+\)$"):
        train(_config(tmp_path / "run", manifest, "tokenizer.kind=bpe"))  # was a ValueError traceback
    with pytest.raises(TokenizerError, match=r"^tokenizer\.vocab_size=3: too small .*needs at least \d+\)$"):
        train(_config(tmp_path / "run", manifest, "tokenizer.kind=unigram", "tokenizer.vocab_size=3"))
    assert not (tmp_path / "run").exists()  # a refused run leaves no folder behind
    conf = tmp_path / "conf.yaml"
    conf.write_text(f"preset: tiny\ndevice: cpu\nthreads: 1\ndata:\n  train_manifest: {manifest}\n")
    for override, key in [("tokenizer.kind=bpe", "tokenizer.vocab_size=256: too large"),
                          ("features.window_ms=1e400", "features.window_ms"), ("optim.betas=[2,3]", "optim.betas")]:
        assert main(["train", str(conf), f"out_dir={tmp_path / 'run'}", override]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("asr: error: ") and key in err[0], err
    assert not (tmp_path / "run").exists()


def test_empty_transcripts_train_as_silence_with_a_warning(libri, tmp_path, caplog):
    """A batch of utterances without transcript (empty, or punctuation only) padded its labels to
    (B, 0), and the CTC feasibility check failed with a RuntimeError traceback."""
    entries = [dict(libri[u]) for u in SHORT[:3]]
    entries[0]["text"] = entries[1]["text"] = ""
    entries[2]["text"] = "?!"  # nothing left once normalized
    manifest = _manifest(tmp_path / "train.jsonl", entries)
    with caplog.at_level(logging.WARNING, logger="asr.run_data"):
        result = train(_config(tmp_path / "run", manifest, "data.max_batch_size=2", "epochs=1"))
    assert result.steps == 2 and result.zeroed_utterances == 0
    assert f"{manifest}: 3 of 3 training utterances have an empty transcript and are trained as silence, " \
           f"e.g. {manifest}:1" in caplog.text
    steps = _steps(tmp_path / "run")
    assert all(math.isfinite(e["loss"]) and e["loss"] > 0 for e in steps)


def test_transcripts_outside_the_vocabulary_are_warned_of_before_training_naming_a_line(libri, tmp_path, caplog):
    """Characters the model has no label for were reported only after training, by the count of
    those the trainer process had met (none with loader workers), naming no line; a transcript of
    them alone was trained as silence unannounced."""
    entries = [dict(libri[u]) for u in SHORT[:4]]
    entries[1]["text"] = "一二"  # nothing the model can write
    entries[3]["text"] += " Ω"
    manifest = _manifest(tmp_path / "train.jsonl", entries)
    with caplog.at_level(logging.WARNING, logger="asr"):
        train(_config(tmp_path / "run", manifest, "epochs=1", "data.num_workers=1"))
    warned = [r.getMessage() for r in caplog.records if "outside the model's vocabulary" in r.getMessage()]
    assert warned == [f"{manifest}: 2 of 4 training transcripts hold characters outside the model's vocabulary, "
                      f"which training leaves out ('一'×1, '二'×1, 'ω'×1), e.g. {manifest}:2; 1 of them have no "
                      "character left and are trained as silence"], caplog.text
    assert sum("vocabulary" in r.getMessage() for r in caplog.records) == 1  # not again after training


def test_a_dev_manifest_without_a_usable_line_is_an_error(libri, tmp_path, capsys):
    """Every dev line skipped (missing audio) or none at all: the run used to train unscored, as if
    no dev set had been given, and exit 0 with 'best dev WER n/a'."""
    from asr.cli import main

    train_manifest = _manifest(tmp_path / "train.jsonl", [libri[u] for u in SHORT[:2]])
    missing = _manifest(tmp_path / "dev.jsonl", [{**libri[SHORT[2]], "audio_filepath": str(tmp_path / "gone.flac")}])
    empty = _manifest(tmp_path / "empty.jsonl", [])
    for dev in (missing, empty):
        with pytest.raises(TrainError, match=rf"^{dev}: no usable dev utterances \(data\.dev_manifest\); "
                                             "nothing to score the model on$"):
            train(_config(tmp_path / "run", train_manifest, f"data.dev_manifest={dev}"))
    assert not (tmp_path / "run").exists()
    conf = tmp_path / "conf.yaml"
    conf.write_text(f"preset: tiny\ndevice: cpu\nthreads: 1\ndata:\n  train_manifest: {train_manifest}\n"
                    f"  dev_manifest: {missing}\n")
    assert main(["train", str(conf), f"out_dir={tmp_path / 'run'}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"asr: error: {missing}: no usable dev utterances (data.dev_manifest); nothing to score the model on"]


def test_epoch_and_stop_events_carry_the_peak_memory(libri, tmp_path):
    """An epoch's end and a stop inside an epoch log the process's peak resident memory (on CUDA also
    the peak allocated on the device, ``gpu_peak_gb``: what a larger data.max_batch_s would need)."""
    import resource

    two = _manifest(tmp_path / "two.jsonl", [libri[u] for u in SHORT[:2]])
    run = tmp_path / "run"
    train(_config(run, two, f"data.dev_manifest={two}", "data.max_batch_size=1", "epochs=2", "max_steps=3"))
    events = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    ends = [e for e in events if e["event"] in ("epoch", "stop")]
    assert [e["event"] for e in ends] == ["epoch", "stop"]  # 2 batches an epoch: step 3 is inside epoch 2
    peak_now = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB -> GiB
    for e in ends:
        assert 0.05 < e["rss_peak_gb"] <= peak_now + 1e-3, e  # this process: torch alone is over 50 MB
        assert "gpu_peak_gb" not in e
