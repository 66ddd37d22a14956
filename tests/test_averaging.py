"""EMA of the weights during training and ``asr average``: math, identity, refusals, exact resume."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import soundfile as sf
import torch
from torch import nn

from asr.averaging import ModelEMA, average_checkpoints, write_average
from asr.checkpoint import CheckpointError, checkpoint_payload, export_payload, load_checkpoint, save_checkpoint
from asr.cli import main
from asr.features import FeatureConfig, FeatureExtractor
from asr.model import DeepSpeech2, load_preset
from asr.recognizer import Recognizer
from asr.tokenizer import CharTokenizer
from asr.train import train
from asr.train_config import resolve_config

SHORT = ["8226-274371-0020", "5652-19215-0032", "4088-158077-0078", "4406-16882-0033"]


# ------------------------------------------------------------------------------------------- EMA
def test_ema_update_math():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))  # BatchNorm: float and integer buffers
    ema = ModelEMA(model, decay=0.9)
    expected = {k: v.clone() for k, v in model.state_dict().items()}
    for t in range(1, 31):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        model.train()(torch.randn(4, 3))  # moves the running statistics and num_batches_tracked
        ema.update(model)
        d = min(0.9, (1 + t) / (10 + t))
        assert ema.decay_at(t) == d
        for k, v in model.state_dict().items():
            expected[k] = d * expected[k] + (1 - d) * v if v.is_floating_point() else v.clone()
    got = ema.module.state_dict()
    for k, v in expected.items():
        assert torch.allclose(got[k], v, atol=1e-6), k
    assert int(got["1.num_batches_tracked"]) == 30  # integer buffers are copied, not averaged
    assert ema.decay_at(1000) == 0.9
    assert not any(p.requires_grad for p in ema.module.parameters())


def test_ema_state_round_trips():
    model = nn.Linear(2, 2)
    ema = ModelEMA(model, decay=0.5)
    ema.update(model)
    other = ModelEMA(nn.Linear(2, 2), decay=0.5)
    other.load_state_dict(ema.state_dict())
    assert other.num_updates == 1
    assert all(torch.equal(a, b) for a, b in zip(ema.module.state_dict().values(), other.module.state_dict().values()))
    with pytest.raises(ValueError, match="decay"):
        ModelEMA(model, decay=1.0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_ema_copy_of_a_cuda_gru_keeps_its_weights_in_one_chunk():
    # On an H100 the dev scoring of the EMA's copy warned that the RNN weights "are not part of single
    # contiguous chunk of memory" and so are compacted at every call (2026-11-25, exp/gpu/A3)
    model = nn.GRU(4, 8, num_layers=2, bidirectional=True, batch_first=True).cuda()
    ema = ModelEMA(model, decay=0.9)
    for _ in range(2):  # after an update (in place) too
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            ema.module(torch.randn(2, 5, 4, device="cuda"))
        ema.update(model)


# -------------------------------------------------------------------------------- averaging
def _checkpoint(path: Path, seed: int, **model_overrides) -> Path:
    torch.manual_seed(seed)
    features = FeatureExtractor(FeatureConfig(kind="fbank"))
    cfg = load_preset("tiny")
    if model_overrides:
        from dataclasses import replace
        cfg = replace(cfg, **model_overrides)
    tok = CharTokenizer()
    model = DeepSpeech2(cfg, num_features=features.num_features, vocab_size=tok.vocab_size)
    save_checkpoint(checkpoint_payload(Recognizer(features, model, tok), {"name": "x"},
                                       train_state={"step": seed}), path)
    return path


def test_average_of_identical_checkpoints_is_the_identity(tmp_path):
    a = _checkpoint(tmp_path / "a.pt", seed=1)
    copies = [a, tmp_path / "b.pt", tmp_path / "c.pt"]
    for c in copies[1:]:
        c.write_bytes(a.read_bytes())
    out = write_average(copies, tmp_path / "avg.pt")
    original, averaged = load_checkpoint(a), load_checkpoint(out)
    assert original["model_state"].keys() == averaged["model_state"].keys()
    for k, v in original["model_state"].items():
        assert torch.equal(averaged["model_state"][k], v), k
        assert averaged["model_state"][k].dtype == v.dtype
    assert "train_state" not in averaged and averaged["metrics"]["averaged_from"] == [str(c) for c in copies]
    for key in ("features_state", "tokenizer", "model_config", "config"):
        assert str(averaged[key]) == str(original[key])


def test_average_is_the_mean_of_the_weights(tmp_path):
    paths = [_checkpoint(tmp_path / f"{i}.pt", seed=i) for i in range(3)]
    averaged = average_checkpoints(paths)["model_state"]
    states = [load_checkpoint(p)["model_state"] for p in paths]
    for k, v in averaged.items():
        if v.is_floating_point():
            assert torch.allclose(v, sum(s[k] for s in states) / 3, atol=1e-6)


def test_average_refuses_mismatch_and_overwrite(tmp_path, capsys):
    a = _checkpoint(tmp_path / "a.pt", seed=0)
    wide = _checkpoint(tmp_path / "wide.pt", seed=0, rnn_hidden=32)
    assert main(["average", str(a), str(wide), "--out", str(tmp_path / "out.pt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("asr: error: ") and "model config differs" in err[0]
    assert "rnn_hidden" in err[0] and not (tmp_path / "out.pt").exists()

    existing = tmp_path / "existing.pt"
    existing.write_bytes(b"keep me")
    assert main(["average", str(a), str(a), "--out", str(existing)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "refusing to overwrite" in err[0]
    assert existing.read_bytes() == b"keep me"
    with pytest.raises(CheckpointError, match="no checkpoints"):
        average_checkpoints([])


def test_average_takes_one_file_as_a_string_or_path(tmp_path, capsys):
    a = _checkpoint(tmp_path / "epoch-4.pt", seed=4)
    original = load_checkpoint(a)["model_state"]
    for one in (str(a), a):  # a string was split into one-character file names ('e', 'p', ...)
        averaged = average_checkpoints(one)
        assert averaged["metrics"]["averaged_from"] == [str(a)]
        assert all(torch.equal(averaged["model_state"][k], v) for k, v in original.items())
    out = write_average(str(a), tmp_path / "avg.pt")
    assert load_checkpoint(out)["metrics"]["averaged_from"] == [str(a)]
    assert main(["average", str(a), "--out", str(tmp_path / "one.pt")]) == 0  # was 'average of 1 checkpoints'
    assert capsys.readouterr().out == (f"{tmp_path / 'one.pt'}: the weights of {a} (one checkpoint: nothing averaged), "
                                       "training state dropped\n")


def test_average_keeps_the_widest_precision_whichever_file_comes_last(tmp_path):
    """An exported fp16 checkpoint named last turned the average of fp32 ones into fp16 weights, and
    the result's metrics called it an export of that one file."""
    full = _checkpoint(tmp_path / "full.pt", seed=1)
    other = _checkpoint(tmp_path / "other.pt", seed=2)
    half = tmp_path / "half.pt"
    save_checkpoint({**export_payload(load_checkpoint(other), "fp16"), "metrics": {"exported_from": "x", "dtype": "fp16"}},
                    half)
    averaged = average_checkpoints([full, half])
    a, b = load_checkpoint(full)["model_state"], load_checkpoint(half)["model_state"]
    for k, v in averaged["model_state"].items():
        if v.is_floating_point():
            assert v.dtype == torch.float32, k
            assert torch.equal(v, ((a[k].double() + b[k].double()) / 2).float()), k
    assert averaged["metrics"] == {"averaged_from": [str(full), str(half)]}
    assert average_checkpoints([half, half])["metrics"]["dtype"] == "fp16"  # all half: stays half
    bf16 = tmp_path / "bf16.pt"
    save_checkpoint(export_payload(load_checkpoint(full), "bf16"), bf16)
    mixed = average_checkpoints([half, bf16])  # neither holds the other: float32
    assert {v.dtype for v in mixed["model_state"].values() if v.is_floating_point()} == {torch.float32}
    assert "dtype" not in mixed["metrics"]


def test_average_refuses_checkpoints_with_another_feature_normalization(tmp_path, capsys):
    """Two runs of one preset on different data (another CMVN) were averaged, and the result used the
    last one's CMVN for weights trained half under the other's."""
    a = _checkpoint(tmp_path / "a.pt", seed=1)
    other_run = load_checkpoint(_checkpoint(tmp_path / "b.pt", seed=2))
    other_run["features_state"]["cmvn_mean"] = other_run["features_state"]["cmvn_mean"] + 0.5
    save_checkpoint(other_run, tmp_path / "b.pt")
    assert main(["average", str(a), str(tmp_path / "b.pt"), "--out", str(tmp_path / "avg.pt")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"asr: error: {a}: feature normalization (cmvn_mean) differs from {tmp_path / 'b.pt'}'s: "
                   "a checkpoint of another run; cannot average"]
    assert not (tmp_path / "avg.pt").exists()


def test_average_refuses_a_checkpoint_with_non_finite_weights(tmp_path, capsys):
    """An epoch checkpoint of a run that diverged made every weight it touched NaN in the average,
    which then transcribed everything as ''."""
    a = _checkpoint(tmp_path / "a.pt", seed=1)
    diverged = load_checkpoint(_checkpoint(tmp_path / "nan.pt", seed=2))
    name = "rnns.0.fwd.weight_hh_l0"
    diverged["model_state"][name][0, 0] = float("nan")
    save_checkpoint(diverged, tmp_path / "nan.pt")
    for order in ([a, tmp_path / "nan.pt"], [tmp_path / "nan.pt", a]):  # the last one is checked too
        assert main(["average", *map(str, order), "--out", str(tmp_path / "avg.pt")]) == 2
        assert capsys.readouterr().err == (f"asr: error: {tmp_path / 'nan.pt'}: {name} holds NaN or infinite "
                                           "values (a run that diverged?); cannot average\n")
    assert not (tmp_path / "avg.pt").exists()


def test_average_warns_of_one_file_given_under_two_names(tmp_path, capsys):
    """A hard link (or a symbolic one) to a file already given was averaged as another checkpoint."""
    a = _checkpoint(tmp_path / "a.pt", seed=1)
    _checkpoint(tmp_path / "b.pt", seed=2)
    (tmp_path / "hard.pt").hardlink_to(a)
    (tmp_path / "soft.pt").symlink_to(a)
    for i, other in enumerate(("hard.pt", "soft.pt")):
        given = [str(a), str(tmp_path / "b.pt"), str(tmp_path / other)]
        assert main(["average", *given, "--out", str(tmp_path / f"avg{i}.pt")]) == 0
        assert capsys.readouterr().err == (f"asr: warning: {tmp_path / other}: given more than once; "
                                           "each time counts in the average\n")


# ---------------------------------------------------------------------- EMA in training, resume
@pytest.fixture(scope="module")
def manifest(shared_data: Path, tmp_path_factory) -> Path:
    root = shared_data / "LibriSpeech" / "dev-4spk"
    lines = []
    for uid in SHORT:
        speaker, chapter, _ = uid.split("-")
        folder = root / speaker / chapter
        texts = dict(line.split(" ", 1) for line in (folder / f"{speaker}-{chapter}.trans.txt").read_text().splitlines())
        path = folder / f"{uid}.flac"
        lines.append(json.dumps({"audio_filepath": str(path), "duration": sf.info(path).duration, "text": texts[uid]}))
    out = tmp_path_factory.mktemp("ema") / "train.jsonl"
    out.write_text("\n".join(lines) + "\n")
    return out


def _cfg(out_dir: Path, manifest: Path, *extra: str):
    return resolve_config(None, [
        "preset=tiny", f"out_dir={out_dir}", f"data.train_manifest={manifest}", "device=cpu", "threads=1",
        "log_every_steps=1", "features.kind=fbank", "epochs=3", "data.max_batch_size=2", "seed=3",
        "model.dropout=0.3", "optim.schedule=constant", "optim.warmup_steps=20", "ema_decay=0.9",
        "keep_epoch_checkpoints=2", *extra])


def test_ema_training_resumes_exactly_and_ships_the_average(manifest, tmp_path, capsys, caplog):
    train(_cfg(tmp_path / "a", manifest))  # 4 utterances, 2 per batch: 6 steps
    first = train(_cfg(tmp_path / "b", manifest, "max_steps=3"))
    assert first.steps == 3 and first.stopped_early
    second = train(_cfg(tmp_path / "b", manifest), resume=True)
    assert second.steps == 6

    for name in ("model.pt", "epoch-2.pt", "epoch-3.pt"):
        wa, wb = (load_checkpoint(tmp_path / run / name)["model_state"] for run in ("a", "b"))
        assert all(torch.equal(wa[k], wb[k]) for k in wa), name
    last = load_checkpoint(tmp_path / "a" / "last.pt")
    ema = last["train_state"]["ema"]
    assert ema["num_updates"] == 6
    shipped = load_checkpoint(tmp_path / "a" / "model.pt")["model_state"]
    assert all(torch.equal(shipped[k], ema["weights"][k]) for k in shipped)  # model.pt holds the EMA
    assert any(not torch.equal(shipped[k], last["model_state"][k]) for k in shipped)  # not the trained weights
    assert not (tmp_path / "a" / "epoch-1.pt").exists()  # keep_epoch_checkpoints=2

    out = tmp_path / "avg.pt"
    assert main(["average", str(tmp_path / "a" / "epoch-2.pt"), str(tmp_path / "a" / "epoch-3.pt"), "--out", str(out)]) == 0
    assert load_checkpoint(out)["model_state"].keys() == shipped.keys()
    assert "warning" not in capsys.readouterr().err
    twice = tmp_path / "a" / ".." / "a" / "epoch-3.pt"  # the same file under another name
    assert main(["average", str(tmp_path / "a" / "epoch-3.pt"), str(twice), "--out", str(tmp_path / "twice.pt")]) == 0
    assert capsys.readouterr().err == f"asr: warning: {twice}: given more than once; each time counts in the average\n"

    # last.pt holds the trained weights and the EMA in its training state: export and average take the
    # former, which once happened without a word (a user exporting last.pt shipped weights without the EMA)
    last_pt = tmp_path / "a" / "last.pt"
    caplog.clear()
    assert main(["export", str(last_pt), "--out", str(tmp_path / "last-half.pt")]) == 0
    assert main(["average", str(last_pt), str(tmp_path / "a" / "model.pt"), "--out", str(tmp_path / "mixed.pt")]) == 0
    assert [r.getMessage() for r in caplog.records] == 2 * [
        f"{last_pt}: its weights are the trained ones; their moving average (EMA), in its training state, is dropped "
        "(model.pt, best.pt and the epoch checkpoints of the run hold the EMA)"]
    caplog.clear()
    assert main(["export", str(tmp_path / "a" / "model.pt"), "--out", str(tmp_path / "model-half.pt")]) == 0
    assert caplog.records == []
