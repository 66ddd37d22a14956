"""Tests for asr.model: presets, shapes and lengths, padding invariance, gradients, overfitting."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from asr.config import ConfigError, config_from_dict
from asr.model import DeepSpeech2, ModelConfig, list_presets, load_preset, reverse_padded
from asr.recurrence import gru_recurrence, use_gru_recurrence

NUM_FEATURES, VOCAB = 161, 29

# Small architectures over 20 feature bins covering every front-end / RNN / direction option.
SMALL_CONV = dict(conv_channels=(3, 4), conv_kernels=((5, 7), (3, 5)),
                  conv_strides=((2, 2), (1, 2)), rnn_hidden=12, rnn_layers=2)
VARIANTS = {
    "gru-bi-sum": ModelConfig(**SMALL_CONV),
    "lstm-bi-concat": ModelConfig(**SMALL_CONV, rnn_type="lstm", bidirectional_merge="concat"),
    "rnn-bi-bnfirst-head": ModelConfig(**SMALL_CONV, rnn_type="rnn", rnn_batch_norm_first=True,
                                       head_sizes=(10,)),
    "gru-fwd-lookahead": ModelConfig(**SMALL_CONV, bidirectional=False, lookahead_context=3),
    "lstm-fwd-lookahead-3conv": ModelConfig(
        conv_channels=(2, 3, 4), conv_kernels=((4, 5), (3, 3), (5, 3)),
        conv_strides=((2, 1), (1, 2), (2, 1)), conv_paddings=((1, 2), (0, 1), (2, 0)),
        rnn_type="lstm", rnn_hidden=10, rnn_layers=3, bidirectional=False, lookahead_context=2),
    "rnn-fwd-nobn": ModelConfig(**SMALL_CONV, rnn_type="rnn", bidirectional=False,
                                rnn_batch_norm=False),
    "fc-gru-bi": ModelConfig(frontend="fc", fc_context=2, fc_stride=2, fc_sizes=(16, 16),
                             rnn_hidden=12, rnn_layers=2),
    "fc-lstm-fwd-lookahead": ModelConfig(frontend="fc", fc_context=1, fc_sizes=(16,),
                                         rnn_type="lstm", rnn_hidden=8, rnn_layers=1,
                                         bidirectional=False, lookahead_context=4),
}
PARAM_RANGES = {"tiny": (50e3, 200e3), "small": (4e6, 6e6), "medium": (25e6, 35e6),
                "ds2": (85e6, 115e6), "ds1": (20e6, 60e6)}


@pytest.fixture(autouse=True)
def one_thread():
    """These models are tiny: one thread avoids spin-waiting on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def padded_batch(lens: list[int], num_features: int,
                 seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random features (B, T, F) whose padded frames hold large garbage, and lengths (B,)."""
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(len(lens), max(lens) + 7, num_features, generator=g)  # (B, T, F)
    lens_t = torch.tensor(lens, dtype=torch.long)
    pad = torch.arange(feats.size(1))[None, :] >= lens_t[:, None]  # (B, T)
    feats[pad] = 1e3 * torch.randn(int(pad.sum()), num_features, generator=g)
    return feats, lens_t


def trained_bn(model: DeepSpeech2, num_features: int) -> DeepSpeech2:
    """A few training-mode passes so BatchNorm running statistics are not the identity."""
    model.train()
    for seed in range(3):
        feats, lens = padded_batch([30, 19, 25], num_features, seed=100 + seed)
        model(feats, lens)
    return model.eval()


def ctc_loss(logits: torch.Tensor, out_lens: torch.Tensor, targets: torch.Tensor,
             target_lens: torch.Tensor) -> torch.Tensor:
    log_probs = logits.log_softmax(-1).transpose(0, 1)  # (T', B, V)
    return F.ctc_loss(log_probs, targets, out_lens, target_lens, blank=0, zero_infinity=True)


def test_list_and_unknown_preset() -> None:
    assert set(PARAM_RANGES) <= set(list_presets())
    with pytest.raises(ValueError, match=r"available: .*tiny"):
        load_preset("huge")


@pytest.mark.parametrize("name", sorted(PARAM_RANGES))
def test_preset_param_counts(name: str) -> None:
    with torch.device("meta"):  # no memory or init time for the big ones
        model = DeepSpeech2(load_preset(name), NUM_FEATURES, VOCAB)
    low, high = PARAM_RANGES[name]
    assert low <= model.num_params() <= high


@pytest.mark.parametrize("name", ["tiny", "small", "ds1"])
def test_preset_shapes_and_lengths(name: str) -> None:
    torch.manual_seed(0)
    model = DeepSpeech2(load_preset(name), NUM_FEATURES, VOCAB).eval()
    feats, lens = padded_batch([33, 20, 1], NUM_FEATURES)
    with torch.no_grad():
        logits, out_lens = model(feats, lens)
        assert logits.shape[0] == 3 and logits.shape[2] == VOCAB
        assert out_lens.dtype == torch.long
        assert torch.equal(out_lens, model.output_lengths(lens))
        for i, n in enumerate(lens.tolist()):
            alone, alone_lens = model(feats[i : i + 1, :n], lens[i : i + 1])
            assert alone.shape[1] == alone_lens.item() == out_lens[i].item()


@pytest.mark.parametrize("name", ["medium", "ds2"])
def test_big_preset_output_lengths(name: str) -> None:
    with torch.device("meta"):
        model = DeepSpeech2(load_preset(name), NUM_FEATURES, VOCAB)
    lens = torch.tensor([1, 2, 3, 100, 101])
    assert model.output_lengths(lens).tolist() == [1, 1, 2, 50, 51]  # time stride 2, "same" padding


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_padding_invariance(variant: str) -> None:
    """An utterance alone gives the same logits as inside a padded batch with longer ones."""
    torch.manual_seed(0)
    model = trained_bn(DeepSpeech2(VARIANTS[variant], 20, 11), 20)
    feats, lens = padded_batch([41, 17, 29, 11], 20, seed=1)
    with torch.no_grad():
        logits, out_lens = model(feats, lens)  # (B, T', V)
        assert torch.equal(out_lens, model.output_lengths(lens))
        for i, n in enumerate(lens.tolist()):
            alone, alone_lens = model(feats[i : i + 1, :n], lens[i : i + 1])
            assert alone.shape[1] == alone_lens.item() == out_lens[i].item()
            torch.testing.assert_close(logits[i, : out_lens[i]], alone[0], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("variant", ["gru-bi-sum", "lstm-fwd-lookahead-3conv"])
def test_training_mode_ignores_padding_amount(variant: str) -> None:
    """Masked BatchNorm statistics: extra padding does not change training-mode outputs."""
    torch.manual_seed(0)
    model = DeepSpeech2(VARIANTS[variant], 20, 11).train()
    feats, lens = padded_batch([30, 18, 25], 20, seed=2)
    longer = torch.cat([feats, 50 * torch.randn(3, 12, 20)], dim=1)  # (B, T + 12, F)
    a, a_lens = model(feats, lens)
    b, _ = model(longer, lens)
    for i, n in enumerate(a_lens.tolist()):
        torch.testing.assert_close(a[i, :n], b[i, :n], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("batch, steps", [(3, 9), (1, 1), (2, 40)])
def test_gru_recurrence_has_the_values_and_gradients_of_nn_gru(batch: int, steps: int) -> None:
    """asr.recurrence's own backward (CPU training) against autograd through nn.GRU, in float64."""
    torch.manual_seed(batch * steps)
    gru = torch.nn.GRU(6, 5, batch_first=True).double()
    x = torch.randn(batch, steps, 6, dtype=torch.double, requires_grad=True)
    grad_out = torch.randn(batch, steps, 5, dtype=torch.double)
    theirs, ours = gru(x)[0], gru_recurrence(gru, x)
    torch.testing.assert_close(ours, theirs, atol=1e-12, rtol=1e-12)
    wrt = [x, *gru.parameters()]
    for a, b, name in zip(torch.autograd.grad(ours, wrt, grad_out), torch.autograd.grad(theirs, wrt, grad_out),
                          ["input", "weight_ih", "weight_hh", "bias_ih", "bias_hh"]):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-12, msg=name)


def test_cpu_training_of_a_gru_model_takes_the_recurrence_with_the_gradients_of_nn_gru() -> None:
    """A whole bidirectional GRU model trained on CPU (float32: asr.recurrence) has the loss and
    gradients of the same model in float64, which runs nn.GRU."""
    torch.manual_seed(0)
    model = DeepSpeech2(VARIANTS["gru-bi-sum"], 20, 11).train()
    feats, lens = padded_batch([40, 26, 33], 20)
    targets, target_lens = torch.randint(1, 11, (3, 5)), torch.tensor([5, 4, 5])
    gru, x = model.rnns[0].fwd, feats[:, :, :12]
    assert use_gru_recurrence(gru, x)
    with torch.no_grad():
        assert not use_gru_recurrence(gru, x)  # inference: nn.GRU's forward is as fast
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not use_gru_recurrence(gru, x)
    assert not use_gru_recurrence(gru.double(), x.double())
    gru.float()
    grads = {}
    for dtype in (torch.float32, torch.float64):
        model.to(dtype).zero_grad()
        logits, out_lens = model(feats.to(dtype), lens)
        loss = ctc_loss(logits, out_lens, targets, target_lens)
        loss.backward()
        grads[dtype] = (loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()})
    (loss32, g32), (loss64, g64) = grads[torch.float32], grads[torch.float64]
    torch.testing.assert_close(loss32.double(), loss64, atol=1e-4, rtol=1e-5)
    for name in g64:
        torch.testing.assert_close(g32[name].double(), g64[name], atol=1e-4, rtol=1e-3, msg=name)


def test_reverse_padded_is_per_sequence_involution() -> None:
    x = torch.arange(10.0).view(2, 5, 1).expand(2, 5, 3)  # (B, T, D)
    lens = torch.tensor([5, 3])
    rev = reverse_padded(x, lens)
    assert rev[1, :, 0].tolist() == [7.0, 6.0, 5.0, 8.0, 9.0]
    assert rev[0, :, 0].tolist() == [4.0, 3.0, 2.0, 1.0, 0.0]
    assert torch.equal(reverse_padded(rev, lens), x)


@pytest.mark.parametrize("variant", ["rnn-bi-bnfirst-head", "lstm-fwd-lookahead-3conv",
                                     "fc-lstm-fwd-lookahead"])
def test_gradients_reach_every_parameter(variant: str) -> None:
    torch.manual_seed(0)
    model = DeepSpeech2(VARIANTS[variant], 20, 11).train()
    feats, lens = padded_batch([40, 26], 20)
    logits, out_lens = model(feats, lens)
    targets = torch.randint(1, 11, (2, 5))
    ctc_loss(logits, out_lens, targets, torch.tensor([5, 4])).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_tiny_preset_overfits_one_batch() -> None:
    torch.manual_seed(0)
    model = DeepSpeech2(load_preset("tiny"), 40, VOCAB).train()
    feats, lens = padded_batch([40, 32], 40)
    targets = torch.randint(1, VOCAB, (2, 6))
    target_lens = torch.tensor([6, 5])
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        loss = ctc_loss(*model(feats, lens), targets, target_lens)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 20, (losses[0], losses[-1])


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="lookahead_context"):
        ModelConfig(bidirectional=True, lookahead_context=2)
    with pytest.raises(ValueError, match="rnn_layers"):
        ModelConfig(rnn_layers=8)
    with pytest.raises(ValueError, match="conv_strides"):
        ModelConfig(conv_channels=(8,), conv_kernels=((3, 3),))
    with pytest.raises(ConfigError, match="rnn_hiden"):
        config_from_dict(ModelConfig, {"rnn_hiden": 10})
    cfg = config_from_dict(ModelConfig, {"conv_kernels": [[3, 3], [3, 3]], "rnn_type": "lstm"})
    assert cfg.conv_kernels == ((3, 3), (3, 3)) and cfg.rnn_type == "lstm"


def test_forward_rejects_bad_inputs() -> None:
    model = DeepSpeech2(VARIANTS["gru-bi-sum"], 20, 11).eval()
    with pytest.raises(ValueError, match="feats"):
        model(torch.zeros(2, 10, 21), torch.tensor([10, 5]))
    with pytest.raises(ValueError, match="feat_lens"):
        model(torch.zeros(2, 10, 20), torch.tensor([11, 5]))
    with pytest.raises(ValueError, match="no frequency bins"):
        DeepSpeech2(ModelConfig(conv_channels=(2,), conv_kernels=((3, 9),), conv_strides=((1, 1),),
                                conv_paddings=((1, 0),)), 5, 11)


def test_input_too_short_for_an_unpadded_front_end_is_refused_before_the_convolutions() -> None:
    """Without padding the kernels need more frames than a short input has: a ValueError naming
    the lengths (torch's "kernel size can't be greater" before), and output_lengths says 0."""
    cfg = ModelConfig(conv_channels=(4, 4), conv_kernels=((5, 5), (3, 3)), conv_strides=((2, 2), (2, 1)),
                      conv_paddings=((0, 0), (0, 0)), rnn_hidden=16, rnn_layers=1)
    model = DeepSpeech2(cfg, num_features=40, vocab_size=11).eval()
    assert model.output_lengths(torch.tensor([4, 8, 9, 30])).tolist() == [0, 0, 1, 6]
    for lens in ([4], [30, 4]):
        feats = torch.randn(len(lens), max(lens), 40)  # (B, T, F)
        with pytest.raises(ValueError, match=rf"feat_lens \[{', '.join(map(str, lens))}\]: too short for the front-end"):
            model(feats, torch.tensor(lens))
    logits, out_lens = model(torch.randn(1, 9, 40), torch.tensor([9]))
    assert out_lens.tolist() == [1] and logits.shape[:2] == (1, 1)
