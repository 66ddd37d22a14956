"""Greedy CTC decoding on constructed posteriors; the joins of pieces' n-best lists against brute force;
WER/CER counts against hand-computed values."""

from __future__ import annotations

import itertools
import math
import random
import re

import pytest
import torch

from asr.decode import JOINS_PER_ENTRY, Hypothesis, best_sums, ctc_collapse, greedy_decode, join_hypotheses, join_nbest
from asr.metrics import ErrorCounts, error_report
from asr.tokenizer import CharTokenizer

TOK = CharTokenizer()
A, B, C, SPACE = TOK.encode("a")[0], TOK.encode("b")[0], TOK.encode("c")[0], TOK.encode(" ")[0]


# --------------------------------------------------------------------------------- ctc_collapse
@pytest.mark.parametrize(
    ("path", "tokens", "frames"),
    [
        ([], [], []),
        ([0, 0, 0], [], []),
        ([3], [3], [0]),
        ([3, 3, 3], [3], [0]),
        ([3, 0, 3], [3, 3], [0, 2]),  # a blank separates a repeated label
        ([3, 4, 3], [3, 4, 3], [0, 1, 2]),
        ([0, 3, 3, 0, 0, 4, 4, 4, 0, 4], [3, 4, 4], [1, 5, 9]),
        ([5, 5, 0, 0], [5], [0]),
    ],
)
def test_ctc_collapse(path, tokens, frames):
    assert ctc_collapse(path, blank_id=0) == (tokens, frames)


def test_ctc_collapse_other_blank_id():
    assert ctc_collapse([2, 1, 1, 2, 1, 3], blank_id=2) == ([1, 1, 3], [1, 4, 5])


# -------------------------------------------------------------------------------- greedy_decode
def _posteriors(paths: list[list[int]], vocab: int = 29, peak: float = 0.9) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T, V) log-probs whose argmax follows ``paths`` (padded with frames that favour 'c')."""
    T = max(len(p) for p in paths)
    probs = torch.full((len(paths), T, vocab), (1 - peak) / (vocab - 1))
    for b, path in enumerate(paths):
        for t in range(T):
            label = path[t] if t < len(path) else C  # padding frames would decode as 'c'
            probs[b, t] = (1 - peak) / (vocab - 1)
            probs[b, t, label] = peak
    return probs.log(), torch.tensor([len(p) for p in paths])


def test_greedy_decode_batch_ignores_padding_frames():
    paths = [
        [0, A, A, 0, B, B, 0, A],  # "aba"
        [A, 0, A, SPACE, B],  # "aa b"
        [0, 0, 0],  # nothing
    ]
    log_probs, lens = _posteriors(paths)
    hyps = greedy_decode(log_probs, lens, TOK)
    assert [h.text for h in hyps] == ["aba", "aa b", ""]
    assert hyps[0].tokens == [A, B, A] and hyps[0].frames == [1, 4, 7]
    assert hyps[1].frames == [0, 2, 3, 4]
    assert hyps[2].tokens == [] and hyps[2].frames == []
    for h, path in zip(hyps, paths):
        assert isinstance(h, Hypothesis)
        assert h.score == pytest.approx(len(path) * math.log(0.9), rel=1e-5)


def test_greedy_decode_batched_equals_single():
    torch.manual_seed(0)
    log_probs = torch.randn(3, 20, 29).log_softmax(-1)
    lens = torch.tensor([20, 13, 7])
    batched = greedy_decode(log_probs, lens, TOK)
    for b in range(3):
        single = greedy_decode(log_probs[b : b + 1, : lens[b]], lens[b : b + 1], TOK)[0]
        assert single.text == batched[b].text and single.frames == batched[b].frames
        assert single.score == pytest.approx(batched[b].score)


def test_greedy_decode_accepts_logits_and_zero_length():
    logits, lens = _posteriors([[A, B], [C]])
    hyps = greedy_decode(logits * 3 + 1, torch.tensor([2, 0]), TOK)  # monotone transform: same argmax
    assert [h.text for h in hyps] == ["ab", ""]
    assert hyps[1].score == 0.0


def test_greedy_text_has_single_spaces_between_words():
    """A space emitted twice, or at either end, is not a character error of the hypothesis."""
    log_probs, lens = _posteriors([[SPACE, A, SPACE, 0, SPACE, B, SPACE]])  # " a  b "
    hyp = greedy_decode(log_probs, lens, TOK)[0]
    assert hyp.text == "a b" and hyp.tokens == [SPACE, A, SPACE, SPACE, B, SPACE]
    assert error_report(["a b"], [hyp.text]).cer == 0.0


@pytest.mark.parametrize(("log_probs", "lengths", "message"), [
    (torch.zeros(5, 29), torch.tensor([5]), r"log_probs: expected a \(B, T, V\) tensor, got \(5, 29\)"),
    (torch.zeros(1, 5, 29), [5], r"lengths: expected a \(1,\) integer tensor, got list"),
    (torch.zeros(2, 5, 29), torch.tensor([5]), r"lengths: expected a \(2,\) integer tensor, got \(1,\)"),
    (torch.zeros(1, 5, 29), torch.tensor([5.0]), r"lengths: expected a \(1,\) integer tensor"),
    (torch.zeros(1, 5, 29), torch.tensor([6]), r"lengths: each must be from 0 to the 5 frames given, got \[6\]"),
])
def test_greedy_decode_refuses_malformed_batches(log_probs, lengths, message):
    with pytest.raises(ValueError, match=message):
        greedy_decode(log_probs, lengths, TOK)


# ------------------------------------------------------------------------ joins of n-best lists
def _random_lists(rng: random.Random) -> list[list[float]]:
    """0-4 lists of 0-4 scores each, best first; whole numbers half the time, so that totals tie."""
    lists = []
    for _ in range(rng.randrange(5)):
        draw = (lambda: float(rng.randrange(-3, 1))) if rng.random() < 0.5 else (lambda: rng.uniform(-5, 0))
        lists.append(sorted((draw() for _ in range(rng.randrange(5))), reverse=True))
    return lists


def test_best_sums_lists_every_combination_in_the_order_brute_force_gives():
    rng = random.Random(0)
    for _ in range(300):
        lists = _random_lists(rng)
        combos = itertools.product(*(range(len(column)) for column in lists))
        expected = sorted(((sum(column[i] for column, i in zip(lists, idx)), idx) for idx in combos),
                          key=lambda pair: (-pair[0], pair[1]))  # ties: by indices
        assert list(best_sums(lists)) == expected, lists
        assert list(itertools.islice(best_sums(lists), 3)) == expected[:3]
    assert list(best_sums([])) == [(0, ())] and list(best_sums([[0.0], []])) == []
    with pytest.raises(ValueError, match=r"^scores\[1\]: not best first \(non-increasing\): \[-2.0, -1.0\]"):
        list(best_sums([[0.0], [-2.0, -1.0]]))


def test_join_nbest_is_the_best_joins_by_brute_force_each_text_once():
    rng = random.Random(1)
    words = ["", "a", "b", "a b", "b a"]  # joins of these repeat texts ("a" + "b" == "a b" + "")
    for _ in range(200):
        pieces = [sorted((Hypothesis(rng.choice(words), score=float(rng.randrange(-6, 1))) for _ in range(rng.randrange(4))),
                         key=lambda h: -h.score) for _ in range(rng.randrange(1, 4))]
        n = rng.randrange(1, 5)
        lists = [p or [Hypothesis("")] for p in pieces]
        combos = sorted(itertools.product(*(range(len(p)) for p in lists)),
                        key=lambda idx: (-sum(p[i].score for p, i in zip(lists, idx)), idx))
        expected: dict[str, float] = {}
        for idx in combos[: JOINS_PER_ENTRY * n]:
            text = " ".join(p[i].text for p, i in zip(lists, idx) if p[i].text)
            expected.setdefault(text, sum(p[i].score for p, i in zip(lists, idx)))
        got = join_nbest(pieces, [0, 100, 200], None, n)
        assert [(h.text, h.score) for h in got] == list(expected.items())[:n] if any(pieces) else got == []
    # the best join is join_hypotheses of each piece's best: tokens with a separator, frames shifted
    pieces = [[Hypothesis("a", [A], [2], -1.0, am_score=-0.5), Hypothesis("b", [B], [1], -3.0, am_score=-2.0)],
              [Hypothesis("c", [C], [0], -0.5, am_score=-0.25)]]
    best = join_nbest(pieces, [0, 50], SPACE, 2)
    assert best[0] == join_hypotheses([pieces[0][0], pieces[1][0]], [0, 50], SPACE)
    assert (best[0].text, best[0].tokens, best[0].frames, best[0].score, best[0].am_score) == (
        "a c", [A, SPACE, C], [2, 50, 50], -1.5, -0.75)
    assert [h.text for h in best] == ["a c", "b c"]


# ---------------------------------------------------------------------------------- error_report
def test_word_and_char_counts_hand_computed():
    # utt 1: "a x c d e" vs "a b c d": b->x substitution, e inserted; 3 hits.
    # utt 2: "hello word" vs "hello world": 'world'->'word' substitution at word level;
    #        at character level one deletion ('l'), 10 hits of 11 characters (space included).
    refs = ["a b c d", "hello world"]
    hyps = ["a x c d e", "hello word"]
    r = error_report(refs, hyps, ids=["u1", "u2"])
    assert r.words == ErrorCounts(substitutions=2, deletions=0, insertions=1, hits=4)
    assert r.words.errors == 3 and r.words.ref_units == 6
    assert r.wer == pytest.approx(3 / 6)
    # chars: utt 1 "a b c d" (7) vs "a x c d e" (9): b->x sub, " e" 2 ins; utt 2: 1 del.
    assert r.chars == ErrorCounts(substitutions=1, deletions=1, insertions=2, hits=6 + 10)
    assert r.cer == pytest.approx(4 / 18)


def test_deletions_only_and_perfect():
    r = error_report(["one two three four"], ["one four"])
    assert r.words == ErrorCounts(substitutions=0, deletions=2, insertions=0, hits=2)
    assert r.wer == 0.5
    perfect = error_report(["same words"], ["same words"])
    assert perfect.wer == 0.0 and perfect.cer == 0.0


def test_rate_can_exceed_one_and_empty_reference():
    r = error_report(["a"], ["b c d"])
    assert r.words == ErrorCounts(substitutions=1, deletions=0, insertions=2, hits=0)
    assert r.wer == 3.0
    assert ErrorCounts(0, 0, 0, 0).rate == 0.0
    assert ErrorCounts(0, 0, 2, 0).rate == 1.0  # errors against no reference units


def test_error_report_rejects_bad_input():
    with pytest.raises(ValueError, match="2 references but 1 hypotheses"):
        error_report(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="nothing to score"):
        error_report([], [])
    # a string is not a list of utterances: "abc" against "abd" scored 3 one-character utterances
    with pytest.raises(TypeError, match="refs: expected a list of transcripts .* got a string: 'abc'"):
        error_report("abc", "abd")
    with pytest.raises(TypeError, match="hyps: expected a list"):
        error_report(["abc"], "abd")
    with pytest.raises(TypeError, match=r"hyps\[1\]: expected a string, got NoneType None"):
        error_report(["a", "b"], ["a", None])
    # ids: one per utterance; zip() cut the report short without a word before
    with pytest.raises(ValueError, match="1 utterance ids for 2 references"):
        error_report(["a b", "c"], ["a b", "c"], ids=["u1"])
    with pytest.raises(ValueError, match="3 utterance ids for 2 references"):
        error_report(["a b", "c"], ["a b", "c"], ids=["u1", "u2", "u3"])
    with pytest.raises(TypeError, match="ids: expected a list of names"):
        error_report(["a", "b"], ["a", "b"], ids="u1")
    r = error_report(("a b", "c"), iter(["a x", "c"]), ids=(f"u{i}" for i in range(2)))  # any iterables
    assert r.words.substitutions == 1 and [a.split("\n")[0] for a in r.alignments] == ["u0", "u1"]


def _columns(row: str) -> list[int]:
    """Start offsets of the words of an aligned row (after the 'REF: '/'HYP: ' prefix)."""
    return [m.start() for m in re.finditer(r"\S+", row[5:])]


def test_aligned_blocks():
    r = error_report(["the cat sat down", "a b"], ["the bat sat", "x a b"], ids=["utt-1", "utt-2"])
    block = r.alignments[0].split("\n")
    assert block[0] == "utt-1"
    assert block[1] == "REF: the cat sat down"
    assert block[2] == "HYP: the bat sat ****"
    assert block[3] == "         S       D"
    assert _columns(block[1]) == _columns(block[2])
    assert r.alignments[1] == "utt-2\nREF: * a b\nHYP: x a b\n     I"
    # marks sit under the first character of their column, words of unequal length are padded
    r = error_report(["ab cdefgh i"], ["abcdef c i"])
    ref, hyp, ops = r.alignments[0].split("\n")[1:]
    assert ref == "REF: ab     cdefgh i"
    assert hyp == "HYP: abcdef c      i"
    assert ops == "     S      S"
    assert _columns(ref) == _columns(hyp)
    assert r.alignments[0].split("\n")[0] == "0"  # default ids are indices


def test_error_counts_summary():
    counts = ErrorCounts(substitutions=2, deletions=1, insertions=3, hits=5)
    assert counts.summary("WER") == "WER 75.00 % [ 6 / 8, 3 ins, 1 del, 2 sub ]"
    assert ErrorCounts(0, 0, 0, 4).summary("CER") == "CER 0.00 % [ 0 / 4, 0 ins, 0 del, 0 sub ]"
    r = error_report(["the cat sat"], ["the cat sit down"])
    assert r.words.summary("WER") == "WER 66.67 % [ 2 / 3, 1 ins, 0 del, 1 sub ]"
