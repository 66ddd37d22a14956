import pickle
from collections import Counter
from pathlib import Path

import pytest
import torch

from asr.text import normalize_text, number_to_words, read_normalized_lines
from asr.tokenizer import CharTokenizer, SentencePieceTokenizer, Tokenizer, oov_report, tokenizer_from_dict


@pytest.fixture(scope="module")
def transcripts(shared_data: Path) -> list[str]:
    """The raw LibriSpeech dev-4spk transcripts (upper case, utterance id stripped)."""
    files = sorted((shared_data / "LibriSpeech" / "dev-4spk").glob("*/*/*.trans.txt"))
    assert files, "no LibriSpeech transcripts in shared data"
    lines = [line.split(" ", 1)[1] for f in files for line in f.read_text().splitlines() if line]
    assert len(lines) > 100
    return lines


@pytest.fixture(scope="module", params=["bpe", "unigram"])
def sp_tokenizer(request, transcripts: list[str]) -> SentencePieceTokenizer:
    return SentencePieceTokenizer.train(transcripts, vocab_size=200, model_type=request.param)


@pytest.mark.parametrize(
    "raw, expected",
    [
        # case, whitespace
        ("  HELLO\tWorld \n", "hello world"),
        ("", ""),
        (" ... ", ""),
        # apostrophes: in-word kept, quote-like dropped, unicode folded
        ("Don't stop, it's five o'clock", "don't stop it's five o'clock"),
        ("DON’T ‘quote’ ʼtis", "don't quote tis"),
        ("the boys' toys 'n' 'quoted'", "the boys toys n quoted"),
        ("rock'n'roll", "rock'n'roll"),
        # hyphens, dashes, punctuation
        ("well-known state-of-the-art", "well known state of the art"),
        ("wait—what?! yes–no; (maybe) [sic] {x} a/b", "wait what yes no maybe sic x a b"),
        ("“Quoted,” he said: «fine».", "quoted he said fine"),
        ("under_score e-mail me@x.com #tag", "under score e mail me x com tag"),
        ("salt & pepper, 50%", "salt and pepper fifty percent"),
        # unicode
        ("Café naïve Æsop STRASSE straße œuvre", "cafe naive aesop strasse strasse oeuvre"),
        ("ﬁne ＦＵＬＬ\u00a0width", "fine full width"),
        ("Привет мир", "привет мир"),
        # cardinals
        ("0 7 13 20 42 100 101 999", "zero seven thirteen twenty forty two one hundred "
         "one hundred one nine hundred ninety nine"),
        ("1,000,000 people", "one million people"),
        ("1000000000000", "one trillion"),
        ("2,147,483,647", "two billion one hundred forty seven million four hundred eighty three "
         "thousand six hundred forty seven"),
        ("in 1990-1995", "in one thousand nine hundred ninety "
         "one thousand nine hundred ninety five"),
        ("007", "zero zero seven"),
        ("mp3 4x4 5am", "mp three four x four five am"),
        # negatives and decimals
        ("-5 degrees", "minus five degrees"),
        ("from −3.25 to 0.5", "from minus three point two five to zero point five"),
        ("x-5", "x five"),
        ("3.14159", "three point one four one five nine"),
        (".5 of it", "point five of it"),
        ("the end 5.", "the end five"),
        # ordinals and plurals
        ("1st 2nd 3rd 4th 11th 12th 13th", "first second third fourth eleventh twelfth thirteenth"),
        ("21st 23rd 40th 100th 101st 1000th", "twenty first twenty third fortieth one hundredth "
         "one hundred first one thousandth"),
        ("the 1990s and the 90's", "the one thousand nine hundred nineties and the nineties"),
    ],
)
def test_normalize_text(raw: str, expected: str) -> None:
    assert normalize_text(raw) == expected
    assert normalize_text(expected) == expected  # idempotent


@pytest.mark.parametrize(
    "n, words",
    [
        (0, "zero"),
        (15, "fifteen"),
        (90, "ninety"),
        (110, "one hundred ten"),
        (1_001, "one thousand one"),
        (100_000, "one hundred thousand"),
        (1_000_000_000, "one billion"),
        (10**12, "one trillion"),
        (999_999_999_999, "nine hundred ninety nine billion nine hundred ninety nine million "
         "nine hundred ninety nine thousand nine hundred ninety nine"),
        (-42, "minus forty two"),
    ],
)
def test_number_to_words(n: int, words: str) -> None:
    assert number_to_words(n) == words


def test_number_to_words_ordinals_and_limits() -> None:
    ordinals = {1: "first", 2: "second", 3: "third", 5: "fifth", 8: "eighth", 9: "ninth",
                12: "twelfth", 20: "twentieth", 99: "ninety ninth", 10**6: "one millionth"}
    for n, words in ordinals.items():
        assert number_to_words(n, ordinal=True) == words
    assert number_to_words(10**36 - 1).startswith("nine hundred ninety nine decillion nine")
    with pytest.raises(ValueError, match="too large"):
        number_to_words(10**36)
    assert normalize_text("1" * 40) == " ".join(["one"] * 40)  # digit by digit beyond decillions


def test_normalize_librispeech_is_identity_up_to_case(transcripts: list[str]) -> None:
    # LibriSpeech is already normalized upper-case text with in-word apostrophes
    for line in transcripts:
        assert normalize_text(line) == line.lower()


def test_char_tokenizer_round_trip(transcripts: list[str]) -> None:
    tok = CharTokenizer()
    assert isinstance(tok, Tokenizer)
    assert (tok.blank_id, tok.vocab_size) == (0, 29)
    assert tok.encode(" 'az") == [1, 2, 3, 28]
    for line in transcripts:
        text = normalize_text(line)
        ids = tok.encode(text)
        assert len(ids) == len(text)
        assert all(0 < i < tok.vocab_size for i in ids)
        assert tok.decode(ids) == text
    assert tok.oov_counts == Counter()
    assert oov_report(tok) == "no characters outside the vocabulary"


def test_char_tokenizer_skips_and_counts_oov() -> None:
    tok = CharTokenizer()
    assert tok.encode("héllo, 1é!") == tok.encode("hllo ")
    assert tok.oov_counts == Counter({"é": 2, ",": 1, "1": 1, "!": 1})
    assert oov_report(tok) == (
        "skipped 5 characters outside the vocabulary: 'é'×2, ','×1, '1'×1, '!'×1"
    )
    assert oov_report(tok, max_items=1) == (
        "skipped 5 characters outside the vocabulary: 'é'×2, ... (3 more)"
    )
    tok.encode("ß")
    assert tok.oov_counts["ß"] == 1


def test_char_tokenizer_decode_blank_and_bad_ids() -> None:
    tok = CharTokenizer()
    assert tok.decode([0, 10, 0, 11, 0]) == "hi"  # blanks dropped, no collapsing
    assert tok.decode(torch.tensor([10, 10])) == "hh"
    with pytest.raises(ValueError, match="29"):
        tok.decode([29])
    with pytest.raises(ValueError):
        tok.decode([-1])


def test_sentencepiece_round_trip(
    sp_tokenizer: SentencePieceTokenizer, transcripts: list[str]
) -> None:
    tok = sp_tokenizer
    assert isinstance(tok, Tokenizer)
    assert (tok.blank_id, tok.vocab_size) == (0, 200)
    num_ids = num_chars = 0
    for line in transcripts:
        text = normalize_text(line)
        ids = tok.encode(text)
        assert all(0 < i < tok.vocab_size for i in ids)  # the blank is never a label
        assert tok.decode(ids) == text
        num_ids += len(ids)
        num_chars += len(text)
    assert num_ids < 0.6 * num_chars  # pieces are longer than characters
    assert tok.oov_counts == Counter()
    assert tok.encode("") == [] and tok.decode([]) == ""
    assert tok.decode([0] + tok.encode("the cat") + [0]) == "the cat"
    with pytest.raises(ValueError, match="200"):
        tok.decode([200])


def test_sentencepiece_oov(sp_tokenizer: SentencePieceTokenizer) -> None:
    tok = tokenizer_from_dict(sp_tokenizer.to_dict())  # a fresh oov_counts
    ids = tok.encode("héllo wörld 1 zebra")
    assert 0 not in ids
    assert tok.decode(ids) == "hllo wrld zebra"  # sentencepiece collapses the double space
    assert tok.oov_counts == Counter({"é": 1, "ö": 1, "1": 1})
    assert oov_report(tok).startswith("skipped 3 characters outside the vocabulary: ")


def test_sentencepiece_covers_all_letters_even_if_unseen() -> None:
    tok = SentencePieceTokenizer.train(["abc abc cab"] * 20, vocab_size=35)
    text = "the quick brown fox jumps over the lazy dog's back"
    assert tok.decode(tok.encode(text)) == text
    assert tok.oov_counts == Counter()


def test_sentencepiece_serialization(
    sp_tokenizer: SentencePieceTokenizer, transcripts: list[str], tmp_path: Path
) -> None:
    texts = [normalize_text(line) for line in transcripts[:50]]
    expected = [sp_tokenizer.encode(t) for t in texts]

    torch.save({"tokenizer": sp_tokenizer.to_dict()}, tmp_path / "ckpt.pt")
    d = torch.load(tmp_path / "ckpt.pt", weights_only=True)["tokenizer"]
    restored = tokenizer_from_dict(d)
    assert isinstance(restored, SentencePieceTokenizer)
    assert restored.vocab_size == sp_tokenizer.vocab_size
    assert [restored.encode(t) for t in texts] == expected

    sp_tokenizer.save(tmp_path / "sp.model")
    loaded = SentencePieceTokenizer.load(tmp_path / "sp.model")
    assert [loaded.encode(t) for t in texts] == expected

    unpickled = pickle.loads(pickle.dumps(sp_tokenizer))
    assert [unpickled.encode(t) for t in texts] == expected


def test_sentencepiece_training_is_deterministic(transcripts: list[str]) -> None:
    a = SentencePieceTokenizer.train(transcripts, vocab_size=150, model_type="unigram")
    b = SentencePieceTokenizer.train(transcripts, vocab_size=150, model_type="unigram")
    assert a.to_dict() == b.to_dict()


def test_char_tokenizer_serialization(tmp_path: Path) -> None:
    torch.save(CharTokenizer().to_dict(), tmp_path / "char.pt")
    tok = tokenizer_from_dict(torch.load(tmp_path / "char.pt", weights_only=True))
    assert isinstance(tok, CharTokenizer)
    assert tok.decode(tok.encode("it's ok")) == "it's ok"


def test_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="model_type='word'"):
        SentencePieceTokenizer.train(["a b"], 30, model_type="word")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no non-empty text"):
        SentencePieceTokenizer.train(["", "!!"], vocab_size=30)
    with pytest.raises(ValueError, match="vocab_size=5000"):
        SentencePieceTokenizer.train(["hello world"] * 10, vocab_size=5000, model_type="unigram")
    bad = tmp_path / "bad.model"
    bad.write_bytes(b"not a model")
    with pytest.raises(ValueError, match=f"{bad}: not a valid sentencepiece model"):
        SentencePieceTokenizer.load(bad)
    with pytest.raises(ValueError, match="unknown type 'word'"):
        tokenizer_from_dict({"type": "word"})
    with pytest.raises(ValueError, match="char vocabulary"):
        tokenizer_from_dict({"type": "char", "vocab": ["<blank>", "a"]})
    with pytest.raises(ValueError, match="sentencepiece 'model'"):
        tokenizer_from_dict({"type": "sentencepiece", "model": "%%%"})


def test_read_normalized_lines_skips_empty_lines_and_raises_the_callers_error(tmp_path):
    good = tmp_path / "a.txt"
    good.write_text("The Cat, sat!\n\n  \n42 cats\n", encoding="utf-8")
    latin = tmp_path / "latin1.txt"
    latin.write_bytes("caf\u00e9\n".encode("latin-1"))
    assert list(read_normalized_lines([good, good])) == ["the cat sat", "forty two cats"] * 2
    with pytest.raises(KeyError, match="latin1.txt: cannot read"):
        list(read_normalized_lines([good, latin], KeyError))
    with pytest.raises(ValueError, match="missing.txt: cannot read"):
        list(read_normalized_lines([tmp_path / "missing.txt"]))
