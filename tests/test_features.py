"""Tests for asr.features on real LibriSpeech speech (dev-4spk), with librosa as the reference."""

from __future__ import annotations

import io
from pathlib import Path

import librosa
import numpy as np
import pytest
import soundfile as sf
import torch

from asr.features import FeatureConfig, FeatureExtractor, compute_cmvn, num_frames

# Three real utterances: 4.9 s, 12.8 s and 15.6 s.
UTTERANCES = [
    "LibriSpeech/dev-4spk/4088/158077/4088-158077-0006.flac",
    "LibriSpeech/dev-4spk/4088/158077/4088-158077-0000.flac",
    "LibriSpeech/dev-4spk/4088/158077/4088-158077-0001.flac",
]
KINDS = ["spectrogram", "fbank", "mfcc"]


@pytest.fixture(scope="module")
def waves(shared_data: Path) -> list[np.ndarray]:
    out = []
    for rel in UTTERANCES:
        wave, sr = sf.read(shared_data / rel, dtype="float32")
        assert sr == 16000 and wave.ndim == 1
        out.append(wave)
    return out


def extract(fx: FeatureExtractor, wave: np.ndarray, device: str = "cpu") -> np.ndarray:
    """Features (T, F) of one utterance run alone."""
    x = torch.from_numpy(wave).to(device)[None]  # (1, S)
    feats, frames = fx(x, torch.tensor([wave.size], device=device))  # (1, T, F), (1,)
    assert feats.shape[1] == int(frames[0]) == num_frames(wave.size, fx.cfg)
    return feats[0].cpu().numpy()


def pad_batch(wave_list: list[np.ndarray], fill: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    lens = torch.tensor([w.size for w in wave_list])
    batch = torch.full((len(wave_list), int(lens.max())), fill)  # (B, S)
    for i, w in enumerate(wave_list):
        batch[i, : w.size] = torch.from_numpy(w)
    return batch, lens


# ---- agreement with librosa -------------------------------------------------------------------
# All three are compared in the log domain on the raw features (normalize="none"). Both sides run
# the STFT in float32, so the residual is float32 rounding of the FFT and the mel weights (observed:
# spectrogram 6e-7, log-mel 7e-5, MFCC 4e-5 max abs). Tolerances leave ~15x headroom: 1e-4 for the
# spectrogram, 1e-3 for log-mel (0.1 % relative mel energy), 1e-3 abs for MFCC (values up to ~70)
# plus a per-coefficient correlation > 0.9999.


def test_spectrogram_matches_librosa(waves):
    wave = waves[0]
    fx = FeatureExtractor(FeatureConfig(kind="spectrogram", normalize="none")).eval()
    ours = extract(fx, wave)
    stft = librosa.stft(wave, n_fft=320, hop_length=160, win_length=320, window="hamming",
                        center=False)
    ref = np.log1p(np.abs(stft) ** 2).T  # (T, 161)
    assert ours.shape == ref.shape == (num_frames(wave.size, FeatureConfig()), 161)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-4)


def librosa_log_mel(wave: np.ndarray, n_mels: int = 80) -> np.ndarray:
    # Our frame t covers samples [160 t, 160 t + 320) inside a 512-point FFT with the window centred
    # as librosa centres it; padding (512 - 320) / 2 = 96 zeros on each side gives the same frames.
    mel = librosa.feature.melspectrogram(
        y=np.pad(wave, (96, 96)), sr=16000, n_fft=512, hop_length=160, win_length=320,
        window="hamming", center=False, power=2.0, n_mels=n_mels, htk=True, norm=None, fmin=0.0,
        fmax=8000.0)
    return np.log(mel + 1e-6).T  # (T, n_mels)


def test_fbank_matches_librosa(waves):
    wave = waves[0]
    ours = extract(FeatureExtractor(FeatureConfig(kind="fbank", normalize="none")).eval(), wave)
    ref = librosa_log_mel(wave)
    assert ours.shape == ref.shape == (num_frames(wave.size, FeatureConfig()), 80)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-3)


@pytest.mark.parametrize("n_mfcc", [13, 40])
def test_mfcc_matches_librosa(waves, n_mfcc):
    wave = waves[0]
    cfg = FeatureConfig(kind="mfcc", n_mfcc=n_mfcc, normalize="none")
    ours = extract(FeatureExtractor(cfg).eval(), wave)
    ref = librosa.feature.mfcc(S=librosa_log_mel(wave).T, n_mfcc=n_mfcc, dct_type=2, norm="ortho").T
    assert ours.shape == ref.shape == (num_frames(wave.size, cfg), n_mfcc)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-3)
    for k in range(n_mfcc):
        assert np.corrcoef(ours[:, k], ref[:, k])[0, 1] > 0.9999, f"coefficient {k}"


# ---- framing ---------------------------------------------------------------------------------

# 16 kHz: win 320, hop 160. Below one window: zero-padded to one frame; no samples: no frames.
FRAME_CASES = [(0, 0), (1, 1), (100, 1), (319, 1), (320, 1), (321, 1), (479, 1), (480, 2),
               (481, 2), (16000, 99), (16001, 99), (16160, 100)]


@pytest.mark.parametrize("kind", KINDS)
def test_exact_frame_counts(kind):
    cfg = FeatureConfig(kind=kind)
    fx = FeatureExtractor(cfg).eval()
    rng = np.random.default_rng(0)
    for samples, expected in FRAME_CASES:
        assert num_frames(samples, cfg) == expected, samples
        wave = rng.standard_normal(samples).astype(np.float32) * 0.1
        feats, frames = fx(torch.from_numpy(wave)[None], torch.tensor([samples]))
        assert feats.shape == (1, expected, fx.num_features) and frames.tolist() == [expected]
        assert torch.isfinite(feats).all()
    # All lengths in one padded batch: per-row counts, T from the padded width.
    lens = torch.tensor([s for s, _ in FRAME_CASES])
    feats, frames = fx(torch.randn(len(lens), int(lens.max())) * 0.1, lens)
    assert frames.tolist() == [e for _, e in FRAME_CASES]
    assert feats.shape[1] == num_frames(int(lens.max()), cfg)


def test_frame_counts_other_rates_and_errors():
    cfg8k = FeatureConfig(sample_rate=8000)  # win 160, hop 80
    assert (cfg8k.win_length, cfg8k.hop_length) == (160, 80)
    assert [num_frames(s, cfg8k) for s in (159, 160, 239, 240, 8000)] == [1, 1, 1, 2, 99]
    cfg25 = FeatureConfig(window_ms=25.0)  # win 400, hop 160
    assert [num_frames(s, cfg25) for s in (399, 400, 559, 560)] == [1, 1, 1, 2]
    with pytest.raises(ValueError, match="num_samples=-1"):
        num_frames(-1, cfg8k)
    with pytest.raises(ValueError, match="features.kind: 'logmel' is not one of"):
        FeatureConfig(kind="logmel")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="n_mfcc=90"):
        FeatureConfig(kind="mfcc", n_mfcc=90)
    fx = FeatureExtractor(FeatureConfig())
    with pytest.raises(ValueError, match="outside 0..100"):
        fx(torch.zeros(2, 100), torch.tensor([100, 101]))
    with pytest.raises(ValueError, match=r"\(B, S\) float"):
        fx(torch.zeros(100), torch.tensor([100]))
    with pytest.raises(ValueError, match="wave_lens must be integer"):
        fx(torch.zeros(1, 100), torch.tensor([100.0]))


# ---- padding invariance ------------------------------------------------------------------------


@pytest.mark.parametrize("normalize", ["utterance", "global"])
@pytest.mark.parametrize("kind", KINDS)
def test_padded_in_batch_equals_alone(waves, kind, normalize):
    fx = FeatureExtractor(FeatureConfig(kind=kind, normalize=normalize)).eval()
    if normalize == "global":
        fx.set_cmvn(*compute_cmvn(fx, waves))
    # The short utterance sits between longer ones; the padding holds garbage, not zeros.
    batch_waves = [waves[2], waves[0], waves[1]]
    batch, lens = pad_batch(batch_waves, fill=0.5)
    feats, frames = fx(batch, lens)  # (3, T, F), (3,)
    assert feats.shape[1] == num_frames(batch.shape[1], fx.cfg)
    for i, wave in enumerate(batch_waves):
        alone = extract(fx, wave)
        n = alone.shape[0]
        assert int(frames[i]) == n
        np.testing.assert_allclose(feats[i, :n].numpy(), alone, rtol=0, atol=1e-4)
        assert (feats[i, n:] == 0).all()
        if normalize == "utterance":  # normalized over the valid frames only
            np.testing.assert_allclose(alone.mean(0), 0, atol=1e-4)
            np.testing.assert_allclose(alone.std(0), 1, atol=1e-3)


# ---- dither ------------------------------------------------------------------------------------


def test_dither_only_in_training_mode(waves):
    wave = waves[0][:32000]
    plain = extract(FeatureExtractor(FeatureConfig(kind="fbank")).eval(), wave)
    fx = FeatureExtractor(FeatureConfig(kind="fbank", dither=1.0))
    fx.eval()
    np.testing.assert_array_equal(extract(fx, wave), plain)
    fx.train()
    torch.manual_seed(0)
    first, second = extract(fx, wave), extract(fx, wave)
    assert not np.array_equal(first, plain) and not np.array_equal(first, second)
    # One LSB of noise barely moves speech features.
    assert np.abs(first - plain).mean() < 0.05


# ---- CMVN ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_compute_cmvn_equals_concatenated_stats(waves, kind):
    fx = FeatureExtractor(FeatureConfig(kind=kind, normalize="global", dither=1.0)).train()
    inputs = [waves[0], torch.from_numpy(waves[1]), waves[2][:1000]]  # numpy and tensors mixed
    mean, std = compute_cmvn(fx, inputs)
    assert fx.training, "compute_cmvn restores the training mode"
    fx.eval()
    raw = [fx.raw(torch.as_tensor(w)[None], torch.tensor([len(w)]))[0][0] for w in inputs]
    all_feats = torch.cat(raw).double()  # (sum T, F)
    assert mean.shape == std.shape == (fx.num_features,)
    np.testing.assert_allclose(mean.numpy(), all_feats.mean(0).numpy(), rtol=1e-5, atol=1e-5)
    ref_std = all_feats.std(0, unbiased=False).numpy()
    np.testing.assert_allclose(std.numpy(), ref_std, rtol=1e-5, atol=1e-5)
    # Globally normalized training data then has zero mean and unit variance.
    fx.set_cmvn(mean, std)
    normed = torch.cat([fx(torch.as_tensor(w)[None], torch.tensor([len(w)]))[0][0] for w in inputs])
    np.testing.assert_allclose(normed.double().mean(0).numpy(), 0, atol=1e-4)
    np.testing.assert_allclose(normed.double().std(0, unbiased=False).numpy(), 1, atol=1e-3)
    with pytest.raises(ValueError, match="no feature frames"):
        compute_cmvn(fx, [np.zeros(0, dtype=np.float32)])


def test_state_dict_round_trip_keeps_cmvn(waves):
    cfg = FeatureConfig(kind="mfcc", normalize="global")
    fx = FeatureExtractor(cfg)
    mean, std = compute_cmvn(fx, waves[:1])
    fx.set_cmvn(mean, std)
    state = fx.state_dict()
    assert set(state) == {"cmvn_mean", "cmvn_std"}  # transform constants are rebuilt, not saved
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    restored = FeatureExtractor(cfg)
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    assert torch.equal(restored.cmvn_mean, mean) and torch.equal(restored.cmvn_std, std)
    np.testing.assert_array_equal(extract(restored.eval(), waves[0]), extract(fx.eval(), waves[0]))
    with pytest.raises(ValueError, match="shape"):
        fx.set_cmvn(torch.zeros(3), torch.ones(3))
    with pytest.raises(ValueError, match="std positive"):
        fx.set_cmvn(mean, torch.zeros_like(std))


# ---- devices -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_explicit_device_path(waves, kind):
    """The device code path (module.to(device), tensors created on it) run on the CPU device."""
    device = torch.device("cpu")
    reference = FeatureExtractor(FeatureConfig(kind=kind, normalize="global"))
    reference.set_cmvn(*compute_cmvn(reference, waves[:1]))
    fx = FeatureExtractor(FeatureConfig(kind=kind, normalize="global")).to(device).eval()
    fx.load_state_dict(reference.state_dict())
    assert all(b.device == device for b in fx.buffers())
    batch, lens = pad_batch(waves[:2])
    feats, frames = fx(batch.to(device), lens.to(device))
    assert feats.device == device and frames.device == device and frames.dtype == torch.int64
    expected, _ = reference.eval()(batch, lens)
    torch.testing.assert_close(feats, expected)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("normalize", ["utterance", "none"])
@pytest.mark.parametrize("kind", KINDS)
def test_cuda_matches_cpu(waves, kind, normalize):
    fx = FeatureExtractor(FeatureConfig(kind=kind, normalize=normalize)).eval()
    batch, lens = pad_batch(waves)
    cpu_feats, cpu_frames = fx(batch, lens)
    fx.to("cuda")
    gpu_feats, gpu_frames = fx(batch.cuda(), lens.cuda())
    assert gpu_feats.is_cuda and torch.equal(gpu_frames.cpu(), cpu_frames)
    # cuFFT vs pocketfft in float32: agree to float32 rounding in the log domain.
    torch.testing.assert_close(gpu_feats.cpu(), cpu_feats, rtol=0, atol=1e-3)


def test_mel_filters_without_an_fft_bin_are_named(caplog):
    """128 mel filters at 8 kHz with a 256-point FFT: 6 triangles fall between FFT bins, so their
    log energies are constant. A warning says so (a checkpoint with such features still loads)."""
    with caplog.at_level("WARNING", logger="asr.features"):
        fx = FeatureExtractor(FeatureConfig(kind="fbank", sample_rate=8000, n_mels=128))
    assert [r.getMessage()[:93] for r in caplog.records] == [
        "features: n_mels=128 at 8000 Hz with a 256-point FFT (20 ms window) leaves 6 mel filters with"]
    rng = np.random.default_rng(0)
    wave = torch.from_numpy(rng.standard_normal(8000).astype(np.float32))  # white noise: every bin has energy
    fx = FeatureExtractor(FeatureConfig(kind="fbank", sample_rate=8000, n_mels=128, normalize="none")).eval()
    feats, _ = fx(wave[None], torch.tensor([8000]))  # (1, T, 128)
    assert int((feats[0].std(dim=0) == 0).sum()) == 6
    caplog.clear()
    with caplog.at_level("WARNING", logger="asr.features"):
        FeatureExtractor(FeatureConfig(kind="fbank", sample_rate=8000, n_mels=40))
    assert caplog.records == []
