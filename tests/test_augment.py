import json
import logging
import math

import numpy as np
import pytest
import soundfile as sf
import torch

from asr.audio import AudioError, audio_info, load_audio
from asr.augment import (AugmentConfig, NoiseSource, SpecAugment, WaveAugment, loop_to_length, mix_at_snr,
                         speed_perturb, time_warp, trim_edges)
from asr.data import SpeechDataset
from asr.features import FeatureConfig, FeatureExtractor
from asr.manifest import ManifestError, Utterance, read_manifest
from asr.tokenizer import CharTokenizer


@pytest.fixture(scope="module")
def real_feats(shared_data):
    """Features of three real dev-4spk utterances, padded into one batch."""
    paths = sorted((shared_data / "LibriSpeech" / "dev-4spk").rglob("*.flac"))[:3]
    waves = [torch.from_numpy(sf.read(p, dtype="float32")[0]) for p in paths]
    lens = torch.tensor([len(w) for w in waves])
    batch = torch.zeros(len(waves), int(lens.max()))
    for i, w in enumerate(waves):
        batch[i, : len(w)] = w
    extractor = FeatureExtractor(FeatureConfig()).eval()
    return extractor(batch, lens)


SPEC = AugmentConfig(freq_masks=2, freq_mask_width=27, time_masks=2, time_mask_width=40)


def test_spec_augment_is_identity_in_eval_mode(real_feats):
    feats, lens = real_feats
    aug = SpecAugment(SPEC).eval()
    assert torch.equal(aug(feats, lens), feats)


def test_spec_augment_deterministic_under_seed(real_feats):
    feats, lens = real_feats
    aug = SpecAugment(SPEC).train()
    torch.manual_seed(3)
    a = aug(feats, lens)
    torch.manual_seed(3)
    b = aug(feats, lens)
    torch.manual_seed(4)
    c = aug(feats, lens)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_spec_augment_masks_stay_in_bounds(real_feats):
    feats, lens = real_feats
    aug = SpecAugment(SPEC).train()
    torch.manual_seed(0)
    for _ in range(20):
        out = aug(feats, lens)
        masked = (out == 0) & (feats != 0)  # (B, T, F) cells zeroed by a mask
        for b, n in enumerate(lens.tolist()):
            assert not masked[b, n:].any()  # nothing beyond the valid frames
            # Masked time frames: whole rows; at most time_masks * width frames in total.
            rows = masked[b, :n].all(dim=1)
            assert int(rows.sum()) <= SPEC.time_masks * SPEC.time_mask_width
            # Masked bins: whole columns over the utterance; at most freq_masks * width bins.
            cols = masked[b, :n].all(dim=0)
            assert int(cols.sum()) <= SPEC.freq_masks * SPEC.freq_mask_width
    assert masked.any()


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_speed_perturbation_changes_duration_by_factor(shared_data, factor):
    path = sorted((shared_data / "LibriSpeech" / "dev-4spk").rglob("*.flac"))[0]
    wave = torch.from_numpy(sf.read(path, dtype="float32")[0])
    out = speed_perturb(wave, factor, 16000)
    assert abs(len(out) - len(wave) / factor) <= 2
    # The content is the same, played faster or slower: the energy envelope keeps its shape.
    env_in = wave.abs().reshape(-1)[: len(wave) // 160 * 160].reshape(-1, 160).mean(1).numpy()
    env_out = out.abs()[: len(out) // 160 * 160].reshape(-1, 160).mean(1).numpy()
    stretched = np.interp(np.linspace(0, len(env_in) - 1, len(env_out)), np.arange(len(env_in)), env_in)
    assert np.corrcoef(stretched, env_out)[0, 1] > 0.95


def test_wave_augment_in_dataset_keeps_transcript(shared_data):
    flac = sorted((shared_data / "LibriSpeech" / "dev-4spk").rglob("*.flac"))[0]
    info = sf.info(flac)
    utt = Utterance(audio_filepath=str(flac), duration=info.duration, text="HELLO WORLD")
    tok = CharTokenizer()
    plain = SpeechDataset([utt], tok)[0]
    aug = SpeechDataset([utt], tok, wave_transform=WaveAugment(AugmentConfig(speed_factors=(1.1,)), 16000))[0]
    assert torch.equal(plain.tokens, aug.tokens)
    assert abs(len(aug.wave) - len(plain.wave) / 1.1) <= 2



def test_dataset_augmentation_is_a_function_of_seed_epoch_and_utterance(shared_data, noise_manifest):
    """An item's augmentation does not depend on the order items are read in (a loader worker reads
    every n-th batch, a resumed run starts mid-epoch) nor on the global generator; it changes with
    the epoch and the seed."""
    flacs = sorted((shared_data / "LibriSpeech" / "dev-4spk").rglob("*.flac"))[:3]
    utts = [Utterance(audio_filepath=str(f), duration=sf.info(f).duration, text="A") for f in flacs]
    augment = WaveAugment(AugmentConfig(speed_factors=(0.9, 1.0, 1.1), gain_db=6.0, edge_trim=0.1,
                                        noise_manifest=str(noise_manifest), noise_prob=0.5), 16000)

    def waves(epoch: int, order: list[int], seed: int = 0) -> dict[int, torch.Tensor]:
        ds = SpeechDataset(utts, CharTokenizer(), wave_transform=augment, seed=seed)
        ds.set_epoch(epoch)
        torch.manual_seed(len(order))  # the global generator plays no part
        return {i: ds[i].wave for i in order}

    forward, backward = waves(1, [0, 1, 2]), waves(1, [2, 1, 0, 0])
    assert all(torch.equal(forward[i], backward[i]) for i in range(3))
    for other in (waves(2, [0, 1, 2]), waves(1, [0, 1, 2], seed=1)):
        assert not any(forward[i].shape == other[i].shape and torch.equal(forward[i], other[i]) for i in range(3))


def test_gain_is_within_range_and_seeded():
    wave = torch.ones(1000) * 0.1
    aug = WaveAugment(AugmentConfig(gain_db=6.0), 16000)
    torch.manual_seed(1)
    a = aug(wave)
    torch.manual_seed(1)
    assert torch.equal(a, aug(wave))
    gain_db = 20 * np.log10(float(a[0]) / 0.1)
    assert -6.0 <= gain_db <= 6.0


def test_bad_augment_config_rejected():
    with pytest.raises(ValueError, match="speed_factors"):
        AugmentConfig(speed_factors=(3.0,))
    with pytest.raises(ValueError, match="time_mask_ratio"):
        AugmentConfig(time_mask_ratio=1.5)
    with pytest.raises(ValueError, match="edge_trim"):
        AugmentConfig(edge_trim=0.5)


# ------------------------------------------------------------------------------ additive noise
@pytest.fixture(scope="module")
def noise_manifest(shared_data, tmp_path_factory):
    """Real noise: a short FSDD recording (8 kHz, looped) and a long dev-4spk utterance (cut)."""
    short = shared_data / "fsdd" / "recordings" / "0_george_0.wav"
    long = sorted((shared_data / "LibriSpeech" / "dev-4spk").rglob("*.flac"))[-1]
    path = tmp_path_factory.mktemp("noise") / "noise.jsonl"
    path.write_text("".join(json.dumps({"audio_filepath": str(p), "duration": sf.info(p).duration, "text": ""}) + "\n"
                            for p in (short, long)))
    return path


@pytest.fixture(scope="module")
def speech(shared_data):
    path = sorted((shared_data / "LibriSpeech" / "dev-4spk").rglob("*.flac"))[0]
    return torch.from_numpy(sf.read(path, dtype="float32")[0])  # (S,) 16 kHz


def _snr_db(speech: torch.Tensor, mixed: torch.Tensor) -> float:
    noise = (mixed - speech).double()
    return 10 * math.log10(float(speech.double().pow(2).mean()) / float(noise.pow(2).mean()))


@pytest.mark.parametrize("snr_db", [0.0, 7.5, 20.0])
def test_noise_is_mixed_at_the_requested_snr(speech, noise_manifest, snr_db):
    aug = WaveAugment(AugmentConfig(noise_manifest=str(noise_manifest), noise_snr_db=(snr_db, snr_db)), 16000)
    for seed in range(4):  # both noise files: the short one looped, the long one cut
        torch.manual_seed(seed)
        mixed = aug(speech)
        assert mixed.shape == speech.shape
        assert abs(_snr_db(speech, mixed) - snr_db) < 0.5


def test_noise_snr_drawn_in_range_deterministic_and_off_in_eval(speech, noise_manifest):
    aug = WaveAugment(AugmentConfig(noise_manifest=str(noise_manifest), noise_snr_db=(5.0, 15.0)), 16000)
    snrs = []
    for seed in range(6):
        torch.manual_seed(seed)
        a = aug(speech)
        torch.manual_seed(seed)
        assert torch.equal(a, aug(speech))
        snrs.append(_snr_db(speech, a))
    assert all(5.0 - 0.5 < s < 15.0 + 0.5 for s in snrs)
    assert max(snrs) - min(snrs) > 1.0  # the SNR is drawn, not fixed
    assert torch.equal(aug.eval()(speech), speech)
    aug.train()
    torch.manual_seed(0)
    assert not torch.equal(aug(speech), speech)


def test_noise_prob_zero_and_one(speech, noise_manifest):
    never = WaveAugment(AugmentConfig(noise_manifest=str(noise_manifest), noise_prob=0.0), 16000)
    assert never.noise is None and torch.equal(never(speech), speech)
    half = WaveAugment(AugmentConfig(noise_manifest=str(noise_manifest), noise_prob=0.5), 16000)
    torch.manual_seed(0)
    noisy = [not torch.equal(half(speech[:16000]), speech[:16000]) for _ in range(20)]
    assert 0 < sum(noisy) < 20


def test_loop_and_mix_helpers():
    assert loop_to_length(torch.arange(3.0), 8).tolist() == [0, 1, 2, 0, 1, 2, 0, 1]
    s = torch.randn(1000)
    assert torch.equal(mix_at_snr(s, torch.zeros(1000), 10.0), s)  # silent noise: unchanged
    with pytest.raises(ValueError, match="differ in shape"):
        mix_at_snr(s, torch.zeros(10), 10.0)


def test_bad_noise_manifest_is_a_manifest_error(tmp_path):
    with pytest.raises(ManifestError, match="missing.jsonl"):
        WaveAugment(AugmentConfig(noise_manifest=str(tmp_path / "missing.jsonl")), 16000)
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(ManifestError, match="no usable recording"):
        WaveAugment(AugmentConfig(noise_manifest=str(empty)), 16000)
    with pytest.raises(ValueError, match="noise_snr_db"):
        AugmentConfig(noise_snr_db=(20.0, 10.0))
    with pytest.raises(ValueError, match="noise_prob"):
        AugmentConfig(noise_prob=1.5)


def _noise_line(path, duration: float) -> str:
    return json.dumps({"audio_filepath": str(path), "duration": duration, "text": ""}) + "\n"


def test_noise_recordings_without_a_header_or_shorter_than_listed_are_left_out_at_once(
        speech, noise_manifest, shared_data, tmp_path, caplog):
    """A text file saved as .wav in the noise manifest ended a training run at a random step; later
    such a file was left out by the worker that drew it only, so the draws depended on the workers."""
    bad = tmp_path / "text.wav"
    bad.write_text("not audio\n" * 100)
    short = shared_data / "fsdd" / "recordings" / "1_jackson_0.wav"  # 0.5 s, listed as 5 s
    manifest = tmp_path / "noise.jsonl"
    manifest.write_text(noise_manifest.read_text() + _noise_line(bad, 0.4) + _noise_line(short, 5.0))
    with caplog.at_level(logging.WARNING, logger="asr.augment"):
        aug = WaveAugment(AugmentConfig(noise_manifest=str(manifest), noise_snr_db=(10.0, 10.0)), 16000)
        assert [u.audio_filepath for u in aug.noise.utts] == [u.audio_filepath for u in read_manifest(noise_manifest)]
        assert len(caplog.records) == 1  # one warning for both, naming the manifest line of the first
        assert caplog.records[0].getMessage().startswith(
            f"{manifest}: 2 of 4 noise recordings left out (header unreadable, or audio shorter than the manifest "
            f"says), e.g. {manifest}:3: {bad}: unknown or unsupported audio format")
        for seed in range(12):
            assert torch.isfinite(aug(speech, torch.Generator().manual_seed(seed))).all()
        assert len(caplog.records) == 1
    only_bad = tmp_path / "only_bad.jsonl"
    only_bad.write_text(_noise_line(short, 5.0) + _noise_line(bad, 0.4))
    with pytest.raises(ManifestError, match=f"no usable recording: .* e.g. {only_bad}:1: {short}: "
                                            f"{sf.info(short).duration:.2f} s of audio, the manifest says 5.00 s"):
        WaveAugment(AugmentConfig(noise_manifest=str(only_bad)), 16000)


def _damaged_flac(shared_data, tmp_path, name: str, start: int, stop: int | None):
    """A copy of a real 14 s dev-4spk FLAC with bytes [start, stop) zeroed: its header still reads, its
    audio there does not decode."""
    original = sorted((shared_data / "LibriSpeech" / "dev-4spk").rglob("*.flac"))[-1]
    data = bytearray(original.read_bytes())
    stop = len(data) if stop is None else stop
    data[start:stop] = bytes(stop - start)
    path = tmp_path / name
    path.write_bytes(bytes(data))
    assert audio_info(path).duration_s == pytest.approx(sf.info(original).duration)
    with pytest.raises(AudioError, match="truncated or corrupt data"):
        load_audio(path)
    return path


def test_noise_draws_are_the_same_whether_or_not_a_damaged_recording_failed_before(shared_data, tmp_path, caplog):
    """The damage inside compressed data shows only when decoding: a segment over it fails, another
    recording is drawn from the same generator, and the file stays a candidate (its other segments decode)."""
    damaged = _damaged_flac(shared_data, tmp_path, "damaged.flac", 120_000, 140_000)  # about 1 s of 14
    short = shared_data / "fsdd" / "recordings" / "0_george_0.wav"  # always looped whole: one segment
    manifest = tmp_path / "noise.jsonl"
    manifest.write_text(_noise_line(short, sf.info(short).duration) + _noise_line(damaged, sf.info(damaged).duration))
    seeds = range(40)

    def draws(source: NoiseSource) -> list[torch.Tensor]:
        return [source.sample(16000, torch.Generator().manual_seed(seed)) for seed in seeds]

    with caplog.at_level(logging.WARNING, logger="asr.augment"):
        seasoned = NoiseSource(str(manifest), 16000)
        first = draws(seasoned)
        assert len(caplog.records) == 1  # some draws fell on the damage: warned once
        assert caplog.records[0].getMessage().startswith(
            f"{manifest}: a noise segment cannot be read, another recording is drawn instead (warned once per file): "
            f"{manifest}:2: {damaged}: truncated or corrupt data")
        again = draws(seasoned)  # after the failure
        assert len(caplog.records) == 1
        fresh = [NoiseSource(str(manifest), 16000).sample(16000, torch.Generator().manual_seed(seed)) for seed in seeds]
    looped = loop_to_length(torch.from_numpy(load_audio(short)), 16000)
    assert all(torch.equal(a, b) and torch.equal(a, c) for a, b, c in zip(first, again, fresh))
    assert sum(not torch.equal(a, looped) for a in again) > 5  # the damaged file's good segments are still drawn
    assert len(seasoned.utts) == 2


def test_noise_that_fails_everywhere_is_a_manifest_error(shared_data, tmp_path, caplog):
    damaged = [_damaged_flac(shared_data, tmp_path, f"damaged{i}.flac", 4000, None) for i in range(2)]
    manifest = tmp_path / "noise.jsonl"
    manifest.write_text("".join(_noise_line(p, sf.info(p).duration) for p in damaged))
    with caplog.at_level(logging.WARNING, logger="asr.augment"):
        source = NoiseSource(str(manifest), 16000)
        assert not caplog.records  # the headers read
        for _ in range(2):  # the same each time: the list of candidates stays whole
            with pytest.raises(ManifestError, match=f"{manifest}: none of its 2 noise recordings could be read"):
                source.sample(16000, torch.Generator().manual_seed(0))
        assert len(source.utts) == 2
    assert [sum(f"{p}: truncated or corrupt data" in r.getMessage() for r in caplog.records) for p in damaged] == [1, 1]


def test_speed_and_gain_off_in_eval_mode(speech):
    aug = WaveAugment(AugmentConfig(speed_factors=(0.9, 1.1), gain_db=6.0), 16000).eval()
    assert torch.equal(aug(speech), speech)


def test_edge_trim_cuts_a_contiguous_piece_within_the_share_seeded_and_off_in_eval(shared_data):
    wave = torch.from_numpy(sf.read(shared_data / "fsdd" / "recordings" / "3_nicolas_0.wav", dtype="float32")[0])
    aug = WaveAugment(AugmentConfig(edge_trim=0.2), 8000)
    heads, tails = [], []
    for seed in range(20):
        torch.manual_seed(seed)
        out = aug(wave)
        torch.manual_seed(seed)
        assert torch.equal(out, aug(wave))
        # A contiguous piece of the recording, at most 20 % shorter at either end.
        head = next(i for i in range(len(wave) - len(out) + 1) if torch.equal(wave[i:i + len(out)], out))
        tail = len(wave) - len(out) - head
        assert 0 <= head <= 0.2 * len(wave) and 0 <= tail <= 0.2 * len(wave)
        heads.append(head)
        tails.append(tail)
    assert len(set(heads)) > 10 and len(set(tails)) > 10  # the two ends are drawn, and independently
    assert heads != tails
    assert torch.equal(aug.eval()(wave), wave)
    assert torch.equal(trim_edges(wave, 0.0), wave)


# -------------------------------------------------------------------------------- time warp
WARP = AugmentConfig(time_warp=5)


def test_time_warp_deterministic_off_in_eval_and_padding_untouched(real_feats):
    feats, lens = real_feats
    assert torch.equal(SpecAugment(WARP).eval()(feats, lens), feats)
    aug = SpecAugment(WARP).train()
    torch.manual_seed(0)
    a = aug(feats, lens)
    torch.manual_seed(0)
    assert torch.equal(a, aug(feats, lens))
    torch.manual_seed(1)
    assert not torch.equal(a, aug(feats, lens))
    assert a.shape == feats.shape and not torch.equal(a, feats)
    for b, n in enumerate(lens.tolist()):
        assert torch.equal(a[b, n:], feats[b, n:])  # padding never moves
        # The first and last valid frames stay where they are.
        assert torch.allclose(a[b, 0], feats[b, 0]) and torch.allclose(a[b, n - 1], feats[b, n - 1])


def test_time_warp_batched_equals_single(real_feats):
    feats, lens = real_feats
    aug = SpecAugment(WARP).train()
    torch.manual_seed(5)
    batched = aug(feats, lens)
    torch.manual_seed(5)
    for b, n in enumerate(lens.tolist()):  # the same draws, utterance by utterance
        single = aug(feats[b : b + 1, :n], lens[b : b + 1])
        assert torch.allclose(single[0], batched[b, :n])


def test_time_warp_of_a_ramp_is_monotonic():
    ramp = torch.arange(100.0)[None, :, None].repeat(1, 1, 3)  # (1, 100, 3), frame t holds t
    torch.manual_seed(0)
    for _ in range(10):
        out = time_warp(ramp, torch.tensor([100]), 10)
        diffs = out[0, 1:, 0] - out[0, :-1, 0]
        assert (diffs > 0).all()  # order kept: a warp stretches and squeezes, never shuffles
        assert (out[0, :, 0] - ramp[0, :, 0]).abs().max() <= 10 + 1e-4  # no frame moves past the warp


# ------------------------------------------------------------------------------- in training
def test_training_with_every_augmentation(shared_data, noise_manifest, tmp_path):
    from asr.train import Trainer
    from asr.train_config import resolve_config

    flacs = sorted((shared_data / "LibriSpeech" / "dev-4spk" / "8226").rglob("*.flac"))[:2]
    manifest = tmp_path / "train.jsonl"
    manifest.write_text("".join(json.dumps({"audio_filepath": str(p), "duration": sf.info(p).duration,
                                            "text": "SOME WORDS"}) + "\n" for p in flacs))
    cfg = resolve_config(None, [
        "preset=tiny", f"out_dir={tmp_path / 'run'}", f"data.train_manifest={manifest}", "device=cpu", "threads=1",
        "features.kind=fbank", "max_steps=1", "data.max_batch_size=2", f"augment.noise_manifest={noise_manifest}",
        "augment.noise_snr_db=[5, 15]", "augment.speed_factors=[0.9, 1.0, 1.1]", "augment.gain_db=3",
        "augment.time_warp=5", "augment.freq_masks=2", "augment.freq_mask_width=10",
    ])
    assert cfg.augment.noise_snr_db == (5.0, 15.0)
    trainer = Trainer(cfg)
    assert trainer.dataset.wave_transform.noise is not None
    result = trainer.run()
    assert result.steps == 1 and (tmp_path / "run" / "model.pt").is_file()
