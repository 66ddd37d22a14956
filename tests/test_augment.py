import numpy as np
import pytest
import soundfile as sf
import torch

from asr.augment import AugmentConfig, SpecAugment, WaveAugment, speed_perturb
from asr.data import SpeechDataset, Utterance
from asr.features import FeatureConfig, FeatureExtractor
from asr.text import CharTokenizer


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
