"""Word timestamps by CTC forced alignment, and SRT output."""

from __future__ import annotations

import re

import pytest
import torch

from asr.align import AlignmentError, WordTiming, align_words, to_srt
from asr.tokenizer import CharTokenizer, SentencePieceTokenizer

TOK = CharTokenizer()


def _path_posteriors(path: str, confidence: float = 0.9) -> torch.Tensor:
    """(T, V) log-probs whose best path is ``path`` ('_' = blank, one character per frame)."""
    lp = torch.full((len(path), TOK.vocab_size), (1 - confidence) / (TOK.vocab_size - 1))
    for t, c in enumerate(path):
        lp[t, 0 if c == "_" else TOK.encode(c)[0]] = confidence
    return lp.log()


def test_word_spans_follow_the_frames():
    lp = _path_posteriors("__thhe_ _ccat___  _sat__")
    words = align_words(lp, "the cat sat", TOK, frame_shift_s=0.02)
    assert [w.word for w in words] == ["the", "cat", "sat"]
    assert [(round(w.start_s / 0.02), round(w.end_s / 0.02)) for w in words] == [(2, 6), (9, 13), (19, 22)]
    assert all(w.confidence == pytest.approx(0.9, abs=1e-4) for w in words)


def test_blank_frames_inside_a_word_do_not_lower_its_confidence():
    """A word spoken slowly, its letters apart among blanks as CTC emits them, scored 0.2 for 0.9."""
    lp = _path_posteriors("_z___e___r___o_ _one_")
    slow, quick = align_words(lp, "zero one", TOK, 0.02)
    assert (slow.start_s, slow.end_s) == (0.02, 0.28)
    assert slow.confidence == pytest.approx(0.9, abs=1e-4) and quick.confidence == pytest.approx(0.9, abs=1e-4)


def test_alignment_of_other_text_is_less_confident():
    lp = _path_posteriors("__thhe_ _ccat___  _sat__")
    right = align_words(lp, "the cat sat", TOK, 0.02)
    wrong = align_words(lp, "the cot sat", TOK, 0.02)
    assert wrong[1].confidence < right[1].confidence - 0.2
    assert [w.confidence for w in wrong[::2]] == pytest.approx([w.confidence for w in right[::2]])


@pytest.mark.parametrize("seed", range(5))
def test_timestamps_are_monotone_and_inside_the_audio(seed):
    generator = torch.Generator().manual_seed(seed)
    words = ["the", "cat", "sat", "on", "a", "mat", "see", "all"]
    text = " ".join(words[int(i)] for i in torch.randint(0, len(words), (6,), generator=generator))
    num_frames = 80
    lp = torch.randn(num_frames, TOK.vocab_size, generator=generator).log_softmax(-1)  # (T, V)
    duration_s = num_frames * 0.02 - 0.013  # the last frame reaches past the audio
    timings = align_words(lp, text, TOK, 0.02, duration_s=duration_s)
    assert [w.word for w in timings] == text.split()
    for w in timings:
        assert 0 <= w.start_s < w.end_s <= duration_s and 0 <= w.confidence <= 1
    for a, b in zip(timings, timings[1:]):
        assert a.end_s <= b.start_s


def test_sentencepiece_words():
    sp = SentencePieceTokenizer.train(["the cat sat on the mat"] * 5, vocab_size=40)
    ids = sp.encode("the cat sat")
    lp = torch.full((2 * len(ids) + 1, sp.vocab_size), -8.0)
    for i, label in enumerate(ids):  # blank, piece, blank, piece, ..., blank
        lp[2 * i + 1, label] = 0.0
    lp[::2, 0] = 0.0
    timings = align_words(lp.log_softmax(-1), "the cat sat", sp, 0.04)
    assert [w.word for w in timings] == ["the", "cat", "sat"]
    assert timings[0].start_s == pytest.approx(0.04) and timings[-1].end_s == pytest.approx(0.04 * 2 * len(ids))


def test_too_long_text_and_empty_text():
    lp = _path_posteriors("_cat_")
    with pytest.raises(AlignmentError, match="need 7 frames, the output has 5"):
        align_words(lp, "cat sat", TOK, 0.02)
    with pytest.raises(AlignmentError, match="need 9 frames"):  # each "ll" needs a blank between the l's
        align_words(lp, "all all", TOK, 0.02)
    assert [w.word for w in align_words(_path_posteriors("_al_l"), "all", TOK, 0.02)] == ["all"]
    assert align_words(lp, "  ", TOK, 0.02) == []


def test_srt_cues():
    words = [WordTiming(f"w{i}", i * 0.5, i * 0.5 + 0.4, 1.0) for i in range(12)]
    words.append(WordTiming("late", 3725.0, 3725.25, 1.0))
    srt = to_srt(words, max_words=5)
    blocks = srt.strip().split("\n\n")
    assert len(blocks) == 4  # 5 + 5 + 2 words, then a cue after the long pause
    assert blocks[0].splitlines() == ["1", "00:00:00,000 --> 00:00:02,400", "w0 w1 w2 w3 w4"]
    assert blocks[2].splitlines()[1] == "00:00:05,000 --> 00:00:06,000"  # 0.9 s of words, shown for 1 s
    assert blocks[3].splitlines()[1] == "01:02:05,000 --> 01:02:06,000"
    assert to_srt(words, max_words=5, min_shown_s=0).strip().split("\n\n")[3].splitlines()[1] == \
        "01:02:05,000 --> 01:02:05,250"
    assert all(re.fullmatch(r"\d\d:\d\d:\d\d,\d{3} --> \d\d:\d\d:\d\d,\d{3}", b.splitlines()[1]) for b in blocks)
    assert to_srt([]) == ""
