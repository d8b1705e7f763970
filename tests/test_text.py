"""tlbook.text: the BBC News loader (real data and a synthetic zip), the embedding cache, bad input, and mean pooling.

The real corpus and encoder come from ``$TLBOOK_DATA`` (``bbc/``, ``all-MiniLM-L6-v2/``); tests that need them
skip when they are absent. Mean pooling is checked against the token states of the underlying transformer,
averaged and normalised here by hand.
"""
import io
import sys
import zipfile

import pytest
import torch
import torch.nn.functional as F

import tlbook.text as text
from tlbook.cache import load_weights


@pytest.fixture(scope="module")
def bbc():
    try:
        return text.load_bbc_news()
    except (FileNotFoundError, RuntimeError, OSError) as err:  # no offline copy and no network
        pytest.skip(f"BBC News unavailable: {err}")


@pytest.fixture(scope="module")
def encoder():
    try:
        return text.sentence_encoder(device="cpu")
    except (ImportError, FileNotFoundError, OSError) as err:
        pytest.skip(f"sentence encoder unavailable: {err}")


def synthetic_bbc(path, counts=text.BBC_COUNTS, latin1_member="bbc/sport/199.txt"):
    """A zip in the official layout: tiny articles, one of them Latin-1 (a pound sign as the byte 0xa3)."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("bbc/README.TXT", "not an article")
        for name, count in zip(text.BBC_CLASSES, counts):
            for j in range(1, count + 1):
                member = f"bbc/{name}/{j:03d}.txt"
                if member == latin1_member:
                    archive.writestr(member, "Prize of \u00a35m\n\nLatin-1 file.".encode("latin-1"))
                elif j == 1:
                    archive.writestr(member, f"{name} {j}\n\nUTF-8 \u00a3 and caf\u00e9.".encode("utf-8"))
                else:
                    archive.writestr(member, f"{name} {j}\n\nplain ASCII.")
    return path


def test_load_bbc_news_real(bbc):
    texts, labels, classes = bbc
    assert classes == ("business", "entertainment", "politics", "sport", "tech")
    assert len(texts) == 2225 and labels.shape == (2225,) and labels.dtype == torch.long
    assert torch.bincount(labels).tolist() == [510, 386, 417, 511, 401]
    assert all(isinstance(t, str) and t.strip() for t in texts)
    sport = [t for t, y in zip(texts, labels.tolist()) if y == 3]
    assert "\u00a3" in sport[198]  # bbc/sport/199.txt: its Latin-1 pound sign decoded, not dropped
    assert not any("\ufffd" in t for t in texts)  # no replacement characters anywhere


def test_decoding_falls_back_to_latin1_per_file(tmp_path):
    texts, labels = text.read_bbc_zip(synthetic_bbc(tmp_path / "bbc-fulltext.zip"))
    assert len(texts) == 2225 and torch.bincount(labels).tolist() == list(text.BBC_COUNTS)
    sport = [t for t, y in zip(texts, labels.tolist()) if y == 3]
    assert sport[198].startswith("Prize of \u00a35m")   # Latin-1 file
    assert "\u00a3 and caf\u00e9" in sport[0]           # UTF-8 file, not mangled into Latin-1
    assert text.decode(b"caf\xc3\xa9") == "caf\u00e9" and text.decode(b"caf\xe9") == "caf\u00e9"


def test_official_zip_found_offline_and_counts_checked(tmp_path, monkeypatch):
    (tmp_path / "bbc").mkdir()
    synthetic_bbc(tmp_path / "bbc" / "bbc-fulltext.zip")
    monkeypatch.setenv("TLBOOK_DATA", str(tmp_path))
    texts, labels, classes = text.load_bbc_news()
    assert len(texts) == 2225 and classes == text.BBC_CLASSES
    short = tmp_path / "short"
    (short / "bbc").mkdir(parents=True)
    synthetic_bbc(short / "bbc" / "bbc-fulltext.zip", counts=(510, 386, 417, 511, 400))
    monkeypatch.setenv("TLBOOK_DATA", str(short))
    with pytest.raises(RuntimeError, match="expected .*2,225"):
        text.load_bbc_news()


def test_bad_input_missing_corpus_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("TLBOOK_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="never downloads.*unset TLBOOK_DATA"):
        text.load_bbc_news()


def test_bad_input_damaged_offline_copy(tmp_path, monkeypatch):
    (tmp_path / "bbc").mkdir()
    synthetic_bbc(tmp_path / text.BBC_REPACKED)  # right name, wrong bytes
    monkeypatch.setenv("TLBOOK_DATA", str(tmp_path))
    with pytest.raises(RuntimeError, match="Checksum mismatch"):
        text.load_bbc_news()


class FakeEncoder:
    """What embed needs of a SentenceTransformer; counts how often it really encodes."""

    tlbook_id = "fake@1"

    def __init__(self):
        self.max_seq_length = 16
        self.calls = 0

    def encode(self, texts, **kwargs):
        self.calls += 1
        torch.manual_seed(len(texts) + self.max_seq_length)
        return F.normalize(torch.randn(len(texts), 8), dim=1)


def test_embedding_cache_roundtrip_and_key(tmp_path, monkeypatch):
    monkeypatch.setenv("TLBOOK_CACHE", str(tmp_path))
    fake = FakeEncoder()
    first = text.embed(["one", "two"], fake, progress=False)
    again = text.embed(["one", "two"], fake, progress=False)
    assert fake.calls == 1 and torch.equal(first, again) and again.dtype == torch.float32
    files = list((tmp_path / "embeddings").glob("*.pt"))
    assert len(files) == 1 and torch.equal(load_weights(files[0]), first)  # readable with weights_only=True
    text.embed(["one", "two!"], fake, progress=False)           # a changed text: a new key
    text.embed(["one", "two"], fake, max_seq_length=8, progress=False)  # another token limit: a new key
    assert fake.calls == 3 and len(list((tmp_path / "embeddings").glob("*.pt"))) == 3
    assert fake.max_seq_length == 16  # restored after encoding at 8
    text.embed(["one", "two"], fake, cache=False, progress=False)
    assert fake.calls == 4
    assert text.texts_hash(["ab", "c"]) != text.texts_hash(["a", "bc"])


@pytest.mark.parametrize(
    "texts, encoder, kwargs, error, match",
    [
        ("one string", FakeEncoder(), {}, TypeError, "wrap it"),
        ([], FakeEncoder(), {}, ValueError, "empty"),
        (["fine", "  "], FakeEncoder(), {}, ValueError, r"texts\[1\] is empty"),
        (["fine", 3], FakeEncoder(), {}, TypeError, r"texts\[1\] is a int"),
        (None, FakeEncoder(), {}, TypeError, "list of strings"),
        (["fine"], object(), {}, TypeError, "SentenceTransformer"),
        (["fine"], FakeEncoder(), {"max_seq_length": 0}, ValueError, "max_seq_length"),
        (["fine"], FakeEncoder(), {"batch_size": 1.5}, TypeError, "batch_size"),
    ],
)
def test_bad_input_embed(texts, encoder, kwargs, error, match, tmp_path, monkeypatch):
    monkeypatch.setenv("TLBOOK_CACHE", str(tmp_path))
    with pytest.raises(error, match=match):
        text.embed(texts, encoder, **kwargs)


@pytest.mark.parametrize("name", [None, 3, "  "])
def test_bad_input_encoder_name(name):
    pytest.importorskip("sentence_transformers")
    with pytest.raises(TypeError, match="encoder's name"):
        text.sentence_encoder(name)


def test_bad_input_encoder_missing_offline(tmp_path, monkeypatch):
    pytest.importorskip("sentence_transformers")
    monkeypatch.setenv("TLBOOK_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="no modules.json"):
        text.sentence_encoder("all-MiniLM-L6-v2", device="cpu")


def test_bad_input_sentence_transformers_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "sentence_transformers", None)
    with pytest.raises(ImportError, match="pip install sentence-transformers"):
        text.sentence_encoder()


def test_embedding_is_mean_pooled_normalised_token_states(encoder, tmp_path, monkeypatch):
    """The method's core step, computed independently from the transformer's token states."""
    monkeypatch.setenv("TLBOOK_CACHE", str(tmp_path))
    sentences = ["Shares in the bank fell sharply.", "The striker scored twice in the second half of the final."]
    embeddings = text.embed(sentences, encoder, progress=False)
    assert embeddings.shape == (2, 384) and embeddings.dtype == torch.float32
    model, tokenizer = encoder[0].auto_model, encoder[0].tokenizer
    for sentence, embedding in zip(sentences, embeddings):  # one at a time: no padding involved
        ids = tokenizer(sentence, return_tensors="pt")
        with torch.no_grad():
            states = model(**ids).last_hidden_state[0]  # (T, 384)
        by_hand = states.mean(0)
        by_hand = by_hand / by_hand.norm()
        torch.testing.assert_close(embedding, by_hand, atol=1e-5, rtol=1e-4)
    # cut to a token limit: the embedding is the mean over the kept tokens only
    cut = text.embed(sentences[1:], encoder, max_seq_length=6, progress=False)[0]
    ids = tokenizer(sentences[1], return_tensors="pt", truncation=True, max_length=6)
    with torch.no_grad():
        states = model(**ids).last_hidden_state[0]
    assert states.shape[0] == 6
    torch.testing.assert_close(cut, F.normalize(states.mean(0), dim=0), atol=1e-5, rtol=1e-4)
