"""Beam search with n-gram LMs (flashlight-text) and alpha/beta tuning, on synthetic CTC posteriors.

Posteriors are built from a transcript: each character holds 1-2 frames, then a blank frame; at chosen
characters a wrong label outscores the right one, so greedy decoding makes a known error that an LM
trained on the domain's text should repair.
"""

from __future__ import annotations

import math
import os
import random
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from asr.beam_search import BeamSearchConfig, BeamSearchDecoder
from asr.decode import DecodeError, Hypothesis, decode_utterances, greedy_decode
from asr.lm_build import build_lm, estimate_kneser_ney, find_kenlm
from asr.tokenizer import CharTokenizer, SentencePieceTokenizer
from asr.tune import MAX_GRID_POINTS, decode_wer, parse_grid, tune_weights

TOK = CharTokenizer()
CORPUS = [
    "the cat sat on the mat", "the dog sat on the log", "a cat ran to the house", "the dog ran away",
    "my cat likes the mat", "the big dog likes the log", "a small cat sat down", "the cat and the dog",
    "we saw the cat on the mat", "the dog saw a big log", "she said the cat ran away",
]
# (sentence, {character position: wrong label that wins that frame})
ERRORS = [("the cat sat on the mat", {4: "k", 13: "u"}), ("the dog ran away", {5: "a"}),
          ("a small cat sat down", {9: "i", 15: "e"}), ("the big dog likes the log", {5: "e", 19: "i"})]


def posteriors(text: str, swaps: dict[int, str], tokenizer=TOK, ids: list[int] | None = None,
               seed: int = 0) -> torch.Tensor:
    """(T, V) log-probabilities of ``text`` (or of label ``ids``), with wrong labels winning at ``swaps``."""
    rng = random.Random(seed)
    labels = ids if ids is not None else tokenizer.encode(text)
    frames = []
    for i, label in enumerate(labels):
        for _ in range(rng.choice((1, 2))):
            p = torch.full((tokenizer.vocab_size,), 0.02 / tokenizer.vocab_size)
            if i in swaps:
                p[tokenizer.encode(swaps[i])[0]] += 0.55
                p[label] += 0.43
            else:
                p[label] += 0.9
                p[rng.randrange(1, tokenizer.vocab_size)] += 0.08
            frames.append(p)
        blank = torch.full((tokenizer.vocab_size,), 0.05 / tokenizer.vocab_size)
        blank[0] += 0.95
        frames.append(blank)
    return (torch.stack(frames) / torch.stack(frames).sum(-1, keepdim=True)).log()  # (T, V)


def batch(items: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([x.size(0) for x in items])
    out = torch.zeros(len(items), int(lengths.max()), items[0].size(1))  # (B, T, V), zero padding
    for b, x in enumerate(items):
        out[b, : x.size(0)] = x
    return out, lengths


@pytest.fixture(scope="module")
def lms(tmp_path_factory) -> dict[str, str]:
    tmp = tmp_path_factory.mktemp("lm")
    text = tmp / "corpus.txt"
    text.write_text("\n".join(CORPUS) + "\n", encoding="utf-8")
    words = build_lm([text], order=3, out=tmp / "words.arpa", backend="python").path
    chars = build_lm([text], order=6, out=tmp / "chars.arpa", units="chars", backend="python").path
    return {"words": str(words), "chars": str(chars), "text": str(text), "tmp": str(tmp)}


@pytest.fixture(scope="module")
def error_set() -> tuple[list[torch.Tensor], list[str]]:
    return [posteriors(s, swaps, seed=i) for i, (s, swaps) in enumerate(ERRORS)], [s for s, _ in ERRORS]


def test_a_character_lm_of_one_word_lines_is_taken_for_one(tmp_path):
    """Its vocabulary has no word boundary "|"; it is still a character LM, not a lexicon of letters."""
    text = tmp_path / "digits.txt"
    text.write_text("zero\none\ntwo\nthree\n")
    lm = build_lm([text], order=4, out=tmp_path / "chars.arpa", units="chars", backend="python").path
    decoder = BeamSearchDecoder(TOK, lm=lm, config=BeamSearchConfig(lm_weight=0.5))
    assert decoder.mode == "lexicon-free"
    log_probs, lengths = batch([posteriors("one", [])])
    assert decoder(log_probs, lengths)[0].text == "one"


def test_lexicon_free_decoding_refuses_a_word_lm(lms, error_set, tmp_path):
    """It asks the LM for units, which a word LM scores all alike as unknown: the LM changed
    nothing, silently, while its scores were reported. A character LM with a few letters the model
    lacks is still one."""
    with pytest.raises(DecodeError, match=rf"^{re.escape(lms['words'])}: a word LM \(\d+ of its \d+ words, e\.g\. "
                                          r"'\w+'.*, are not the model's units\); --lexicon-free needs"):
        BeamSearchDecoder(TOK, lm=lms["words"], lexicon_free=True)
    text = tmp_path / "corpus.txt"
    text.write_text(Path(lms["text"]).read_text(encoding="utf-8") + "the cat is 猫\n", encoding="utf-8")
    chars = build_lm([text], order=6, out=tmp_path / "chars.arpa", units="chars", backend="python").path
    decoder = BeamSearchDecoder(TOK, lm=chars, lexicon_free=True, config=BeamSearchConfig(lm_weight=1.0))
    log_probs, refs = error_set
    assert [h.text for h in decoder(*batch(log_probs))] == refs


def test_greedy_makes_the_planted_errors(error_set):
    log_probs, refs = error_set
    hyps = greedy_decode(*batch(log_probs), TOK)
    assert all(h.text != r for h, r in zip(hyps, refs))
    assert hyps[0].text == "the kat sat ou the mat"


@pytest.mark.parametrize("mode", ["lexicon", "lexicon-free"])
def test_lm_decoding_fixes_greedy_errors(lms, error_set, mode):
    log_probs, refs = error_set
    lm = lms["words"] if mode == "lexicon" else lms["chars"]
    decoder = BeamSearchDecoder(TOK, lm=lm, config=BeamSearchConfig(lm_weight=1.0, word_score=0.0))
    assert decoder.mode == mode  # chosen from the LM's vocabulary
    hyps = decoder(*batch(log_probs))
    assert [h.text for h in hyps] == refs
    greedy = greedy_decode(*batch(log_probs), TOK)
    assert sum(h.am_score for h in hyps) < sum(h.score for h in greedy)  # the LM overrode the acoustics
    assert all(h.lm_score is not None and h.lm_score < 0 for h in hyps)


def test_lexicon_decoding_never_leaves_the_lexicon(lms):
    lexicon = {"the", "cat", "dog", "sat", "mat", "on", "a"}
    generator = torch.Generator().manual_seed(0)
    noise = [(3 * torch.randn(int(t), TOK.vocab_size, generator=generator)).log_softmax(-1)
             for t in torch.randint(10, 60, (12,), generator=generator)]
    for lm in (None, lms["words"]):
        decoder = BeamSearchDecoder(TOK, lm=lm, lexicon=sorted(lexicon), config=BeamSearchConfig(nbest=5))
        for nbest in decoder.decode_nbest(*batch(noise)):
            assert nbest
            for hyp in nbest:
                assert set(hyp.text.split()) <= lexicon and hyp.words == hyp.text.split()


def test_lexicon_file_with_spellings(lms, tmp_path, error_set):
    path = tmp_path / "lexicon.txt"
    path.write_text("the t h e\ncat c a t\nkat c a t |\nsat\non\nmat\ncafé\n", encoding="utf-8")
    decoder = BeamSearchDecoder(TOK, lm=lms["words"], lexicon=path)
    assert decoder.words == ["<unk>", "the", "cat", "kat", "sat", "on", "mat"]  # café cannot be spelled
    assert decoder(*batch(error_set[0][:1]))[0].text in ("the cat sat on the mat", "the kat sat on the mat")


def test_upper_case_lexicon_words_are_scored_as_the_references(tmp_path, error_set):
    """OpenSLR's LibriSpeech lexicon and LMs are in upper case: the beam search writes THE CAT, and
    tuning scores it against the normalized reference "the cat" (every word was an error)."""
    log_probs, refs = error_set
    words = sorted({w for line in CORPUS for w in line.split()})
    wers = []
    for case in (str.lower, str.upper):
        path = tmp_path / f"{case.__name__}.txt"
        path.write_text("".join(f"{case(w)} {' '.join(w)}\n" for w in words), encoding="utf-8")
        decoder = BeamSearchDecoder(TOK, lexicon=path)
        assert decoder(*batch(log_probs[:1]))[0].text == case(decoder(*batch(log_probs[:1]))[0].text)
        wers.append(decode_wer(decoder, log_probs, refs))
    assert wers[0] == wers[1] < 0.5, wers


def test_nbest_is_sorted_and_its_head_is_the_best(lms, error_set):
    decoder = BeamSearchDecoder(TOK, lm=lms["words"], config=BeamSearchConfig(lm_weight=1.0, nbest=4))
    for nbest, best in zip(decoder.decode_nbest(*batch(error_set[0])), decoder(*batch(error_set[0]))):
        assert 1 < len(nbest) <= 4
        scores = [h.score for h in nbest]
        assert scores == sorted(scores, reverse=True) and nbest[0].text == best.text


def test_nbest_lists_each_text_once():
    """A last frame split between blank and space gives paths "the cat" and "the cat " of one score:
    one text, once."""
    end = torch.full((1, TOK.vocab_size), -20.0)  # (1, V)
    end[0, 0] = end[0, TOK.encode(" ")[0]] = math.log(0.5)
    log_probs = torch.cat([posteriors("the cat", {}), end])  # (T, V)
    decoder = BeamSearchDecoder(TOK, lexicon_free=True, config=BeamSearchConfig(beam_size=10, nbest=3))
    nbest = decoder.decode_nbest(*batch([log_probs]))[0]
    texts = [h.text for h in nbest]
    assert texts[0] == "the cat" and len(texts) == 3 and len(set(texts)) == 3, texts
    scores = [h.score for h in nbest]
    assert scores == sorted(scores, reverse=True)


def test_best_path_beam_without_lm_equals_greedy_and_batched_equals_single():
    generator = torch.Generator().manual_seed(1)
    items = [(2 * torch.randn(int(t), TOK.vocab_size, generator=generator)).log_softmax(-1)
             for t in (40, 7, 25)]
    decoder = BeamSearchDecoder(TOK, config=BeamSearchConfig(beam_size=20, log_add=False))
    assert decoder.mode == "lexicon-free"
    batched = decoder(*batch(items))
    single = [decoder(*batch([x]))[0] for x in items]
    greedy = greedy_decode(*batch(items), TOK)
    assert [h.text for h in batched] == [h.text for h in single] == [" ".join(g.text.split()) for g in greedy]
    assert [h.tokens for h in batched] == [g.tokens for g in greedy]
    assert [h.frames for h in batched] == [g.frames for g in greedy]


def test_summed_alignments_beat_the_single_best_path(lms):
    """Two frames where "b" has the best single CTC path (b then blank: 0.45 x 0.5) but "a" the larger
    sum over its paths (aa + a- + -a = 0.365 against 0.345 for "b"): summing finds "a", Viterbi "b"."""
    frames = torch.full((2, TOK.vocab_size), 1e-6)
    a, b = TOK.encode("a")[0], TOK.encode("b")[0]
    frames[0, [a, b, TOK.blank_id]] = torch.tensor([0.4, 0.45, 0.15])
    frames[1, [a, b, TOK.blank_id]] = torch.tensor([0.3, 0.2, 0.5])
    log_probs = batch([(frames / frames.sum(-1, keepdim=True)).log()])
    assert greedy_decode(*log_probs, TOK)[0].text == "b"
    for lexicon in (None, ["a", "b"]):
        summed = BeamSearchDecoder(TOK, lexicon=lexicon, config=BeamSearchConfig(beam_size=10))
        best_path = BeamSearchDecoder(TOK, lexicon=lexicon, config=BeamSearchConfig(beam_size=10, log_add=False))
        assert (summed(*log_probs)[0].text, best_path(*log_probs)[0].text) == ("a", "b"), lexicon


def test_word_score_controls_word_insertions(lms, error_set):
    decoder = BeamSearchDecoder(TOK, lm=lms["words"], config=BeamSearchConfig(lm_weight=1.0))
    log_probs = batch(error_set[0][:1])
    many = decoder.with_weights(1.0, 30.0)(*log_probs)[0].text.split()
    few = decoder.with_weights(1.0, -30.0)(*log_probs)[0].text.split()
    assert len(many) > len(few)
    assert decoder.config.word_score == 0.0  # with_weights leaves the original alone


def test_sentencepiece_lexicon_decoding(lms):
    sp = SentencePieceTokenizer.train(CORPUS * 3, vocab_size=40)
    decoder = BeamSearchDecoder(sp, lm=lms["words"], config=BeamSearchConfig(lm_weight=1.0))
    assert decoder.mode == "lexicon"
    clean = [posteriors(s, {}, tokenizer=sp, seed=i) for i, s in enumerate(CORPUS[:4])]
    assert [h.text for h in decoder(*batch(clean))] == CORPUS[:4]


def test_decoder_errors(lms, tmp_path):
    with pytest.raises(DecodeError, match="no such language model"):
        BeamSearchDecoder(TOK, lm=tmp_path / "missing.arpa")
    binary = tmp_path / "model.bin"
    binary.write_bytes(b"mmap lm http://kheafield.com/code format version 5\n\0")
    with pytest.raises(DecodeError, match="--lexicon"):
        BeamSearchDecoder(TOK, lm=binary)
    with pytest.raises(DecodeError, match="KenLM cannot load"):
        BeamSearchDecoder(TOK, lm=binary, lexicon=["cat"])
    with pytest.raises(DecodeError, match="none of its 2 words"):
        BeamSearchDecoder(TOK, lexicon=["café", "日本"])
    with pytest.raises(DecodeError, match="not both"):
        BeamSearchDecoder(TOK, lm=lms["chars"], lexicon=["cat"], lexicon_free=True)
    with pytest.raises(ValueError, match="beam_size"):
        BeamSearchConfig(beam_size=0)
    with pytest.raises(TypeError, match="config: expected a BeamSearchConfig, got dict"):
        BeamSearchDecoder(TOK, config={"beam_size": 5})
    assert BeamSearchDecoder(TOK, config=BeamSearchConfig(beam_size=np.int64(3))).config.beam_size == 3


@pytest.mark.parametrize("setting, message", [
    ({"beam_size": -3}, "beam_size=-3: must be >= 1"),
    ({"nbest": 0}, "nbest=0: must be >= 1"),
    ({"nbest": 4, "beam_size": 3}, "nbest=4: must be at most the beam size (3), the hypotheses a beam search keeps"),
    ({"beam_size_token": -1}, "beam_size_token=-1: must be >= 0"),
    ({"beam_threshold": -1.0}, "beam_threshold=-1: must be positive"),
    ({"beam_threshold": math.nan}, "beam_threshold=nan: must be positive"),
    ({"lm_weight": math.nan}, "lm_weight=nan: must be a finite number"),  # decoded to empty text
    ({"lm_weight": math.inf}, "lm_weight=inf: must be a finite number"),
    ({"word_score": math.inf}, "word_score=inf: must be a finite number"),  # decoded to letter soup
    ({"word_score": -math.inf}, "word_score=-inf: must be a finite number"),
    ({"unk_score": math.nan}, "unk_score=nan: must be a finite number or -inf"),
    ({"beam_size": 10.5}, "beam_size=10.5: must be a whole number"),  # was pybind's "incompatible arguments"
    ({"nbest": True}, "nbest=True: must be a whole number"),
])
def test_beam_settings_are_refused_where_they_are_made(lms, setting, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        BeamSearchConfig(**setting)
    if set(setting) <= {"lm_weight", "word_score"}:  # tuning replaces these two: refused there too
        with pytest.raises(ValueError, match=re.escape(message)):
            BeamSearchDecoder(TOK, lm=lms["chars"]).with_weights(setting.get("lm_weight", 1.0),
                                                                 setting.get("word_score", 0.0))


def test_unbounded_threshold_and_unknown_word_penalty_are_allowed(error_set):
    decoder = BeamSearchDecoder(TOK, config=BeamSearchConfig(beam_size=5, beam_threshold=math.inf,
                                                             unk_score=-math.inf))
    assert len(decoder(*batch(error_set[0][:1]))) == 1


# --------------------------------------------------------------------------------------- tuning
def test_tuning_returns_the_best_pair_of_its_grid(lms, error_set):
    log_probs, refs = error_set
    decoder = BeamSearchDecoder(TOK, lm=lms["chars"])  # lexicon-free: alpha 0 keeps greedy's errors
    alphas, betas = [0.0, 0.5, 2.0], [-3.0, 0.0, 3.0]
    result = tune_weights(decoder, log_probs, refs, alphas, betas)
    grid = {(a, b): decode_wer(decoder.with_weights(a, b), log_probs, refs) for a in alphas for b in betas}
    assert {(a, b): w for a, b, w in result.tried} == grid
    assert result.wer == min(grid.values()) == grid[(result.lm_weight, result.word_score)]
    assert result.wer == 0.0 and grid[(0.0, 0.0)] > 0  # the LM is what fixes the errors
    refined = tune_weights(decoder, log_probs, refs, alphas, betas, refine_rounds=1)
    assert len(refined.tried) > len(grid) and refined.wer <= result.wer
    assert "*" in refined.table()


@pytest.mark.parametrize("lm", ["words", "chars"])
def test_decoding_on_several_processes_equals_one(lms, error_set, lm):
    log_probs, refs = error_set
    log_probs = log_probs * 3  # more utterances than workers, each in several chunks
    # Viterbi scores are exact; summed ones may differ in the 6th digit from run to run when
    # alignments tie exactly, as in these made-up posteriors (flashlight merges them in varying order)
    decoder = BeamSearchDecoder(TOK, lm=lms[lm], config=BeamSearchConfig(lm_weight=1.0, word_score=0.0, log_add=False))
    serial = decode_utterances(decoder, log_probs, jobs=1)
    assert [h.text for h in serial] == refs * 3  # the LM repairs the planted errors
    assert decode_utterances(decoder, log_probs, jobs=2) == serial  # text, tokens, frames, scores
    assert decode_utterances(decoder, log_probs, jobs=0) == serial  # one per core
    summed = BeamSearchDecoder(TOK, lm=lms[lm], config=BeamSearchConfig(lm_weight=1.0, word_score=0.0))
    serial = decode_utterances(summed, log_probs, jobs=1)
    assert [h.text for h in serial] == refs * 3
    for parallel in decode_utterances(summed, log_probs, jobs=2), decode_utterances(summed, log_probs, jobs=0):
        assert [(h.text, h.tokens, h.frames) for h in parallel] == [(h.text, h.tokens, h.frames) for h in serial]
        assert [h.score for h in parallel] == pytest.approx([h.score for h in serial], rel=1e-5)
    where = decode_utterances(lambda lp, n: [Hypothesis(text=str(os.getpid()))], log_probs, jobs=2)
    assert 1 <= len({h.text for h in where}) <= 2 and str(os.getpid()) not in {h.text for h in where}
    grid = ([0.0, 1.0], [-1.0, 1.0])
    assert tune_weights(decoder, log_probs, refs * 3, *grid, jobs=2) == tune_weights(decoder, log_probs, refs * 3, *grid)


@pytest.mark.parametrize("spec, message", [
    ("0:1e4:1", "grid '0:1e4:1': 10,001 values; at most 1,000 are tried"),  # a typo'd step once ran for ever
    ("0:inf:1", "grid '0:inf:1': expected 'a,b,c' or 'start:stop:step' (the values must be finite numbers)"),
    ("0,nan", "grid '0,nan': expected 'a,b,c' or 'start:stop:step' (the values must be finite numbers)"),
    ("1:2:0", "grid '1:2:0': expected 'a,b,c' or 'start:stop:step' (the step must be positive)"),
    ("3:0:1", "grid '3:0:1': no values (the start is above the stop)"),  # was an empty grid
    (" , ", "grid ' , ': no values"),
    ("0:1", "grid '0:1': expected 'a,b,c' or 'start:stop:step' (a range has three parts)"),  # was Python's unpacking
    ("0:1:0.5:2", "grid '0:1:0.5:2': expected 'a,b,c' or 'start:stop:step' (a range has three parts)"),
])
def test_grids_that_would_not_end_or_mean_nothing_are_refused(spec, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        parse_grid(spec)
    assert len(parse_grid(f"0:{MAX_GRID_POINTS - 1}:1")) == MAX_GRID_POINTS
    assert len(parse_grid(",".join(["0"] * MAX_GRID_POINTS))) == MAX_GRID_POINTS


def test_lm_estimate_is_usable_directly(tmp_path):
    """An in-memory estimate written as ARPA decodes like one built by build_lm."""
    path = tmp_path / "lm.arpa"
    estimate_kneser_ney([s.split() for s in CORPUS], order=2).write_arpa(path)
    decoder = BeamSearchDecoder(TOK, lm=path, config=BeamSearchConfig(lm_weight=1.0))
    assert decoder(*batch([posteriors("the cat sat on the mat", {4: "k"})]))[0].text == "the cat sat on the mat"


@pytest.mark.skipif(find_kenlm() is None or find_kenlm()[1] is None, reason="KenLM not built (tools/build_kenlm.sh)")
def test_binary_lm_decodes_like_its_arpa(lms, error_set):
    binary = build_lm([lms["text"]], order=3, out=f"{lms['tmp']}/words.bin").path
    decoder = BeamSearchDecoder(TOK, lm=binary, config=BeamSearchConfig(lm_weight=1.0))
    assert decoder.mode == "lexicon"  # its words come from the binary's stored vocabulary
    assert [h.text for h in decoder(*batch(error_set[0]))] == error_set[1]
