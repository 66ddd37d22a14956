"""The pure-Python Kneser-Ney estimator: normalization, KenLM compatibility, pruning, text policy."""

from __future__ import annotations

import logging
import math
import random
from pathlib import Path

import pytest

from asr.lm import BOS, EOS, KENLM_MAGIC, KENLM_MAX_ORDER, UNK, LMError, NgramModel, arpa_vocabulary, lm_vocabulary
from asr.lm_build import build_lm, estimate_kneser_ney, find_kenlm, read_sentences

WORDS = "the a cat dog sat on mat ran away home big small san francisco".split()


def _corpus(seed: int = 0, num: int = 400) -> list[list[str]]:
    rng = random.Random(seed)
    sentences = []
    for _ in range(num):
        s = [rng.choice(WORDS[:12]) for _ in range(rng.randint(1, 9))]
        if rng.random() < 0.3:
            s.insert(rng.randint(0, len(s)), "san")
            s.insert(s.index("san") + 1, "francisco")
        sentences.append(s)
    return sentences


def _sums(lm: NgramModel, rng: random.Random, per_order: int = 40) -> list[float]:
    """Sum of p(w | h) over the vocabulary for sampled histories of every order (seen and unseen)."""
    vocab = lm.predictable_words()
    histories: list[list[str]] = [[], [BOS], ["never", "seen"], [UNK, "cat"]]
    for n in range(1, lm.order):
        table = [g for g in lm.ngrams[n - 1] if g[-1] != EOS]
        histories += [list(g) for g in rng.sample(table, min(per_order, len(table)))]
    return [sum(10 ** lm.log10_prob(w, h) for w in vocab) for h in histories]


@pytest.mark.parametrize("prune", [(), (0, 0, 1), (0, 1, 1, 2)])
def test_conditional_probabilities_sum_to_one_in_the_written_arpa(tmp_path, prune):
    lm = estimate_kneser_ney(_corpus(), order=4, prune=prune)
    path = tmp_path / "lm.arpa"
    lm.write_arpa(path)
    back = NgramModel.read_arpa(path)  # the file, with its 7 significant digits
    assert [len(t) for t in back.ngrams] == [len(t) for t in lm.ngrams]
    sums = _sums(back, random.Random(1))
    assert len(sums) >= 100
    assert max(abs(s - 1) for s in sums) < 1e-4


def test_pruning_drops_singletons_of_higher_orders_only():
    full = estimate_kneser_ney(_corpus(), order=4)
    pruned = estimate_kneser_ney(_corpus(), order=4, prune=(0, 0, 1))
    assert [len(t) for t in pruned.ngrams[:2]] == [len(t) for t in full.ngrams[:2]]
    assert len(pruned.ngrams[2]) < len(full.ngrams[2]) and len(pruned.ngrams[3]) < len(full.ngrams[3])
    for n in (3, 4):  # every kept n-gram's prefix and suffix are in the model (ARPA needs them)
        for g in pruned.ngrams[n - 1]:
            assert g[:-1] in pruned.ngrams[n - 2] and g[1:] in pruned.ngrams[n - 2]


def test_bad_prune_thresholds():
    with pytest.raises(LMError, match="must start at 0"):
        estimate_kneser_ney(_corpus(), order=3, prune=(1,))
    with pytest.raises(LMError, match="not decrease"):
        estimate_kneser_ney(_corpus(), order=3, prune=(0, 2, 1))


def test_kneser_ney_continuation_counts():
    """'francisco' is frequent but follows only 'san': as a unigram it is rarer than 'cat'."""
    lm = estimate_kneser_ney(_corpus(), order=2)
    assert lm.log10_prob("francisco", []) < lm.log10_prob("cat", []) - 0.5
    assert lm.log10_prob("francisco", ["san"]) > math.log10(0.9)
    assert lm.log10_prob("zebra", ["the"]) == lm.log10_prob(UNK, ["the"]) < lm.log10_prob("cat", ["the"])


def test_arpa_loads_in_kenlm_with_the_same_scores(tmp_path):
    from flashlight.lib.text.decoder.kenlm import KenLM
    from flashlight.lib.text.dictionary import Dictionary

    path = tmp_path / "lm.arpa"
    estimate_kneser_ney(_corpus(), order=3, prune=(0, 0, 1)).write_arpa(path)
    ours = NgramModel.read_arpa(path)
    words = [UNK, BOS, EOS, *WORDS, "zebra"]
    dictionary = Dictionary()
    for w in words:
        dictionary.add_entry(w)
    kenlm = KenLM(str(path), dictionary)
    rng = random.Random(3)
    for _ in range(20):
        sentence = [rng.choice(WORDS + ["zebra"]) for _ in range(rng.randint(1, 8))]
        state, total = kenlm.start(False), 0.0
        for w in sentence:
            state, score = kenlm.score(state, dictionary.get_index(w))
            total += score
        total += kenlm.finish(state)[1]
        history, expected = [BOS], 0.0
        for w in [*sentence, EOS]:
            expected += ours.log10_prob(w, history)
            history.append(w)
        assert total == pytest.approx(expected, abs=1e-4), sentence


def test_char_units_and_normalized_text(tmp_path):
    text = tmp_path / "corpus.txt"
    text.write_text("The Cat, sat!\n\n  \n42 cats\n", encoding="utf-8")
    assert list(read_sentences([text])) == [["the", "cat", "sat"], ["forty", "two", "cats"]]
    with pytest.raises(LMError, match="nowhere.txt: cannot read"):
        list(read_sentences([tmp_path / "nowhere.txt"]))
    report = build_lm([text], order=3, out=tmp_path / "chars.arpa", units="chars", backend="python")
    assert report.backend == "python" and report.sentences == 2
    assert set(arpa_vocabulary(report.path)) == set("thecasfoywr") | {"|"}


def test_build_lm_errors(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n ... \n", encoding="utf-8")
    with pytest.raises(LMError, match="no text"):
        build_lm([empty], order=3, out=tmp_path / "x.arpa", backend="python")
    with pytest.raises(LMError, match="missing.txt"):
        build_lm([tmp_path / "missing.txt"], order=3, out=tmp_path / "x.arpa", backend="python")
    with pytest.raises(LMError, match="build_binary"):
        build_lm([empty], order=3, out=tmp_path / "x.bin", backend="python")
    with pytest.raises(LMError, match="units='word': must be one of words, chars"):  # was a word LM
        build_lm([empty], order=3, out=tmp_path / "x.arpa", units="word", backend="python")
    with pytest.raises(LMError, match="backend='pyhton': must be one of auto, kenlm, python"):
        build_lm([empty], order=3, out=tmp_path / "x.arpa", backend="pyhton")
    assert not (tmp_path / "x.arpa").exists()


def test_build_lm_refuses_a_manifest_or_an_lm_given_as_text(tmp_path):
    """Both were read as text: an LM of "audio filepath wav ... duration zero point six ..." or of
    an ARPA file's numbers, with status 0."""
    manifest = tmp_path / "train.jsonl"
    manifest.write_text('{"audio_filepath": "wav/0_george_5.wav", "duration": 0.64, "text": "zero"}\n', encoding="utf-8")
    with pytest.raises(LMError, match=rf"^{manifest}:1: a manifest \(JSON lines\), not text; its transcripts: "
                                      rf"python tools/lm_text.py {manifest} --format manifest --out TEXT$"):
        build_lm([manifest], order=2, out=tmp_path / "x.arpa", backend="python")
    text = tmp_path / "corpus.txt"
    text.write_text("the cat sat\n", encoding="utf-8")
    lm = build_lm([text], order=2, out=tmp_path / "lm.arpa", backend="python").path
    with pytest.raises(LMError, match=rf"^{lm}: an n-gram LM, not text$"):
        build_lm([text, lm], order=2, out=tmp_path / "x.arpa", backend="python")
    assert not (tmp_path / "x.arpa").exists()
    text.write_text('{"text": "a line of JSON without audio is text"}\n', encoding="utf-8")
    assert build_lm([text], order=2, out=tmp_path / "x.arpa", backend="python").sentences == 1
    empty = tmp_path / "punctuation.txt"  # named no file
    empty.write_text("\n?!\n", encoding="utf-8")
    with pytest.raises(LMError, match=rf"^{empty}: no text to estimate a language model from \(no line holds a word"):
        build_lm([empty], order=2, out=tmp_path / "y.arpa", backend="python")
    assert not (tmp_path / "y.arpa").exists()


def test_build_lm_takes_one_file_as_a_string_or_path(tmp_path):
    text = tmp_path / "corpus.txt"
    text.write_text("the cat sat\nthe cat ran\n", encoding="utf-8")
    from_list = build_lm([text], order=2, out=tmp_path / "list.arpa", backend="python")
    for one in (str(text), text):  # a string was split into one-character file names
        report = build_lm(one, order=2, out=tmp_path / f"{type(one).__name__}.arpa", backend="python")
        assert report.sentences == 2 and report.ngram_counts == from_list.ngram_counts
        assert report.path.read_text() == from_list.path.read_text()
    bad = tmp_path / "bad.arpa"
    bad.write_text("\\data\\\nngram 1=1\n\n\\1-grams:\n-1.0\n", encoding="utf-8")
    with pytest.raises(LMError, match="bad.arpa:5"):
        NgramModel.read_arpa(bad)


def test_build_lm_refuses_orders_kenlm_cannot_load(tmp_path):
    from flashlight.lib.text.decoder.kenlm import KenLM
    from flashlight.lib.text.dictionary import Dictionary

    text = tmp_path / "corpus.txt"
    text.write_text("\n".join(" ".join(s) for s in _corpus(num=50)) + "\n", encoding="utf-8")
    for order in (0, KENLM_MAX_ORDER + 1, 99):  # 99 once wrote a file beam search could not load
        with pytest.raises(LMError, match=rf"^order {order}: must be from 1 to {KENLM_MAX_ORDER} "):
            build_lm([text], order=order, out=tmp_path / "x.arpa", backend="python")
    assert not (tmp_path / "x.arpa").exists()
    # the limit is the real one: KenLM loads the highest order allowed, and refuses one more
    dictionary = Dictionary()
    for w in [UNK, BOS, EOS, *WORDS]:
        dictionary.add_entry(w)
    highest = build_lm([text], order=KENLM_MAX_ORDER, out=tmp_path / "highest.arpa", backend="python").path
    KenLM(str(highest), dictionary)
    beyond = tmp_path / "beyond.arpa"
    estimate_kneser_ney(_corpus(num=50), order=KENLM_MAX_ORDER + 1).write_arpa(beyond)
    with pytest.raises(Exception, match="max_order"):
        KenLM(str(beyond), dictionary)


def test_tiny_text_falls_back_to_default_discounts(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="asr.lm_build"):
        lm = estimate_kneser_ney([["hello", "world"]], order=3)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings  # one line for all orders, not one per discount
    assert "order 1: all three" in warnings[0] and "order 3: all three" in warnings[0]
    assert abs(sum(10 ** lm.log10_prob(w, ["hello"]) for w in lm.predictable_words()) - 1) < 1e-9
    path = Path(tmp_path / "tiny.arpa")
    lm.write_arpa(path)
    assert arpa_vocabulary(path) == ["hello", "world"]


def test_vocabulary_of_a_kenlm_binary(tmp_path):
    """build_binary stores the words NUL-separated at the end of the file, <unk> first."""
    path = tmp_path / "lm.bin"
    path.write_bytes(KENLM_MAGIC + b" format version 5\n\0" + bytes(range(256)) * 4 + b"<unk>\0<s>\0</s>\0the\0cat\0\0")
    assert lm_vocabulary(path) == ["the", "cat"]
    path.write_bytes(KENLM_MAGIC + b" format version 5\n\0" + bytes(range(256)))
    with pytest.raises(LMError, match="no vocabulary found"):
        lm_vocabulary(path)
    arpa = tmp_path / "lm.arpa"
    estimate_kneser_ney([["the", "cat"]], order=2).write_arpa(arpa)
    assert lm_vocabulary(arpa) == arpa_vocabulary(arpa) == ["cat", "the"]


KENLM = find_kenlm()
needs_kenlm = pytest.mark.skipif(KENLM is None or KENLM[1] is None,
                                 reason="KenLM's lmplz/build_binary not built (tools/build_kenlm.sh)")


@needs_kenlm
@pytest.mark.parametrize("prune", [(), (0, 0, 1)])
def test_estimator_matches_lmplz(tmp_path, prune):
    text = tmp_path / "text.txt"
    text.write_text("\n".join(" ".join(s) for s in _corpus(num=2000)) + "\n", encoding="utf-8")
    ours = NgramModel.read_arpa(build_lm([text], 3, tmp_path / "ours.arpa", prune, backend="python").path)
    theirs = NgramModel.read_arpa(build_lm([text], 3, tmp_path / "kenlm.arpa", prune, backend="kenlm").path)
    for a, b in zip(ours.ngrams, theirs.ngrams):
        assert set(a) == set(b)
        for g in a:
            if g != (BOS,):  # lmplz writes p(<s>) = 1, we write 10^-99: never used
                assert a[g] == pytest.approx(b[g], abs=2e-6), g


@needs_kenlm
def test_binary_output_and_its_vocabulary(tmp_path):
    text = tmp_path / "text.txt"
    text.write_text("the cat sat\nthe dog ran\n", encoding="utf-8")
    report = build_lm([text], 2, tmp_path / "lm.bin")
    assert report.backend == "kenlm" and report.path.read_bytes().startswith(KENLM_MAGIC)
    assert sorted(lm_vocabulary(report.path)) == ["cat", "dog", "ran", "sat", "the"]
