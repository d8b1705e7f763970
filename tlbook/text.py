"""The book's text data and text encoder: BBC News and the all-MiniLM-L6-v2 sentence encoder.

* :func:`load_bbc_news`: the BBC News corpus of Greene & Cunningham (2006), *Practical solutions to the
  problem of diagonal dominance in kernel document clustering* (ICML): 2,225 articles in 5 topics.
* :func:`sentence_encoder`: all-MiniLM-L6-v2, a 6-layer MiniLM (Wang et al. 2020) trained by the
  sentence-transformers project (Reimers & Gurevych 2019, *Sentence-BERT*) on over a billion sentence
  pairs with a contrastive loss; an article's embedding is the mean of its token states, L2-normalised.
* :func:`embed`: embeddings ``(N, 384)`` float32, computed once and cached on disk.

As for the image datasets (:mod:`tlbook.files`): with ``$TLBOOK_DATA`` set, files are read from there and
nothing is downloaded; without it, the corpus comes from its official source and the encoder from the
Hugging Face hub (what Colab does).
"""
from __future__ import annotations

import hashlib
import io
import re
import zipfile
from pathlib import Path

import torch

from .cache import cache_dir, config_key, load_weights, save_atomic
from .checks import whole_number
from .files import DATA_ENV, _prepare_lock, _work_dir, data_root

BBC_URL = "http://mlg.ucd.ie/files/datasets/bbc-fulltext.zip"
# Folder names of the official zip, in label order.
BBC_CLASSES = ("business", "entertainment", "politics", "sport", "tech")
BBC_COUNTS = (510, 386, 417, 511, 401)  # articles per class, 2,225 in all (Greene & Cunningham 2006)
# The offline copy (shared/data/README.md, note 4): a repack of a transcoded copy, so its md5 is not the
# official zip's; the official zip's md5 is not published, which is why members and counts are checked too.
BBC_REPACKED = "bbc/bbc-fulltext-repacked.zip"
BBC_REPACKED_MD5 = "03ab0e0e83aa7e41345dcd0f7b0c1ffa"

ENCODER_NAME = "all-MiniLM-L6-v2"
ENCODER_HUB = "sentence-transformers/all-MiniLM-L6-v2"
ENCODER_REVISION = "1110a243fdf4706b3f48f1d95db1a4f5529b4d41"  # the revision of the offline copy

_MEMBER = re.compile(r"(?:^|/)bbc/([a-z]+)/(\d+)\.txt$")
_MEMO: dict = {}


def load_bbc_news() -> tuple:
    """The BBC News corpus: ``(texts, labels, classes)``.

    Returns:
        texts: list of 2,225 ``str`` (title on the first line, then the article), sorted by class
            and file name; labels: ``(2225,)`` int64 in ``[0, 5)``; classes: ``BBC_CLASSES``
            (``'business', 'entertainment', 'politics', 'sport', 'tech'``; 510/386/417/511/401 articles).

    Where the file comes from:
        * ``$TLBOOK_DATA`` set: ``$TLBOOK_DATA/bbc/bbc-fulltext-repacked.zip`` (md5 checked), or the official
          ``bbc-fulltext.zip`` placed at ``$TLBOOK_DATA/bbc/bbc-fulltext.zip``. Never downloads.
        * unset: the official zip, downloaded once from :data:`BBC_URL` into the tlbook cache. Its md5
          is not published, so what can be checked is checked instead: exactly 2,225 members
          ``bbc/<class>/NNN.txt`` with the per-class counts above. A file that fails is an error.

    Each file is decoded as UTF-8, falling back to Latin-1 per file: the official zip is Latin-1, the
    offline copy mostly UTF-8 with one Latin-1 byte (``bbc/sport/199.txt``, a pound sign).
    """
    path = _bbc_zip()
    key = (str(path), path.stat().st_mtime_ns)
    if key not in _MEMO:
        _MEMO[key] = read_bbc_zip(path)
    texts, labels = _MEMO[key]
    return list(texts), labels.clone(), BBC_CLASSES


def _bbc_zip() -> Path:
    """The path of a BBC News zip that passed its md5 (offline copy) or will be checked by count."""
    from torchvision.datasets.utils import check_integrity

    root = data_root()
    if root is not None:
        repacked = root / BBC_REPACKED
        if repacked.is_file():
            if not check_integrity(repacked, BBC_REPACKED_MD5):
                from .files import _md5_error

                raise _md5_error(repacked, BBC_REPACKED_MD5, BBC_URL)
            return repacked
        official = root / "bbc" / "bbc-fulltext.zip"
        if official.is_file():
            return official
        raise FileNotFoundError(
            f"BBC News: {DATA_ENV}={root} is set, so tlbook reads files from there and never downloads, but "
            f"neither {repacked} nor {official} exists. Put the official zip ({BBC_URL}) at {official}, "
            f"or unset {DATA_ENV} to let tlbook download it."
        )
    target = _work_dir() / "bbc" / "bbc-fulltext.zip"
    with _prepare_lock("bbc"):
        if not target.is_file():
            from torchvision.datasets.utils import download_url

            download_url(BBC_URL, str(target.parent), target.name)  # no md5 published: checked by counts
    return target


def read_bbc_zip(path) -> tuple:
    """Read a BBC News zip: ``(texts (list of str), labels (N,) int64)``; checks members and counts.

    Members ``.../bbc/<class>/NNN.txt`` are read (others, e.g. ``README.TXT``, are skipped), sorted by
    class then file name. Raises ``RuntimeError`` naming the problem when the zip does not hold exactly
    :data:`BBC_COUNTS` articles of :data:`BBC_CLASSES`.
    """
    found = []
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            match = _MEMBER.search(info.filename)
            if match and match.group(1) in BBC_CLASSES:
                found.append((BBC_CLASSES.index(match.group(1)), match.group(2), decode(archive.read(info))))
    counts = tuple(sum(1 for label, _, _ in found if label == k) for k in range(len(BBC_CLASSES)))
    if counts != BBC_COUNTS:
        raise RuntimeError(
            f"{path} is not the BBC News corpus tlbook expects: articles per class {dict(zip(BBC_CLASSES, counts))}, "
            f"expected {dict(zip(BBC_CLASSES, BBC_COUNTS))} (2,225 in all). The file is damaged or a different "
            f"version: delete it and load again (official source: {BBC_URL})."
        )
    found.sort(key=lambda item: (item[0], item[1]))
    return [text for _, _, text in found], torch.tensor([label for label, _, _ in found], dtype=torch.long)


def decode(raw: bytes) -> str:
    """One file's text: UTF-8, or Latin-1 when the bytes are not valid UTF-8 (the official files' encoding)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def sentence_encoder(name: str = ENCODER_NAME, device=None):
    """A ``SentenceTransformer`` in eval mode on ``device`` (default :func:`tlbook.device`).

    ``name`` is a folder name under ``$TLBOOK_DATA`` (offline; ``$TLBOOK_DATA/all-MiniLM-L6-v2`` holds the
    Hugging Face repository's files) or, with ``$TLBOOK_DATA`` unset, a hub name (``'all-MiniLM-L6-v2'``
    means ``'sentence-transformers/all-MiniLM-L6-v2'`` at :data:`ENCODER_REVISION`, the offline copy's
    revision). The encoder maps a text to ``(384,)``: token states of the last layer ``(T, 384)``,
    averaged over the non-padding tokens, L2-normalised. It reads at most ``encoder.max_seq_length``
    tokens (256 by default; longer texts are cut).
    """
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise ImportError(
            "tlbook.text needs the sentence-transformers package: pip install sentence-transformers"
        ) from None
    if not isinstance(name, str) or not name.strip():
        raise TypeError(f"name must be the encoder's name, e.g. {ENCODER_NAME!r}, got {name!r}.")
    from .datasets import _checked_device

    dev = _checked_device(device)
    root = data_root()
    if root is not None:
        folder = root / name
        if not (folder / "modules.json").is_file():
            raise FileNotFoundError(
                f"Sentence encoder {name!r}: {DATA_ENV}={root} is set, so tlbook loads encoders from there and never "
                f"downloads, but {folder} holds no sentence-transformers model (no modules.json). Copy the files of "
                f"the Hugging Face repository {ENCODER_HUB if name == ENCODER_NAME else name} there, or unset "
                f"{DATA_ENV} to download it."
            )
        encoder = SentenceTransformer(str(folder), device=str(dev))
        revision = ENCODER_REVISION if name == ENCODER_NAME else "local"
    else:
        hub = ENCODER_HUB if name == ENCODER_NAME else name
        revision = ENCODER_REVISION if name == ENCODER_NAME else None
        encoder = SentenceTransformer(hub, device=str(dev), revision=revision)
    encoder.tlbook_id = f"{name}@{revision}"  # what the embedding cache is keyed by
    return encoder.eval()


def embed(texts, encoder, *, max_seq_length: int | None = None, batch_size: int = 32,
          progress: bool = True, cache: bool = True) -> torch.Tensor:
    """Sentence embeddings of ``texts``: ``(N, D)`` float32 on the CPU (D = 384 for all-MiniLM-L6-v2).

    Args:
        texts: list of N non-empty strings.
        encoder: a ``SentenceTransformer`` (:func:`sentence_encoder`).
        max_seq_length: tokens read per text (longer texts are cut); default the encoder's own.
        batch_size: texts per forward pass (32 suits a CPU; a GPU takes more).
        progress: show a progress bar while encoding.
        cache: keep the result in ``$TLBOOK_CACHE/embeddings`` and reuse it. The key is the encoder
            (name and revision, or a hash of its weights), ``max_seq_length`` and a hash of every text,
            so a changed text, model or length is a new entry. Written atomically, read with
            ``weights_only=True``.
    """
    texts = _checked_texts(texts)
    if not (hasattr(encoder, "encode") and hasattr(encoder, "max_seq_length")):
        raise TypeError(f"encoder must be a SentenceTransformer (tl.text.sentence_encoder()), got {type(encoder).__name__}.")
    length = encoder.max_seq_length if max_seq_length is None else whole_number(max_seq_length, "max_seq_length")
    batch_size = whole_number(batch_size, "batch_size")
    key = config_key({"encoder": _encoder_id(encoder), "max_seq_length": length, "texts": texts_hash(texts)})
    path = cache_dir() / "embeddings" / f"{key}.pt"
    if cache and path.exists():
        stored = load_weights(path)
        if torch.is_tensor(stored) and stored.shape[0] == len(texts):
            return stored
    kept = encoder.max_seq_length
    encoder.max_seq_length = length
    try:
        with torch.inference_mode():
            out = encoder.encode(texts, batch_size=batch_size, show_progress_bar=progress,
                                 convert_to_tensor=True, normalize_embeddings=False)
    finally:
        encoder.max_seq_length = kept
    out = out.float().cpu().contiguous().clone()
    if cache:
        save_atomic(out, path)
    return out


def texts_hash(texts) -> str:
    """sha256 of the texts in order (each UTF-8, separated by a byte no text contains)."""
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8", "surrogatepass"))
        digest.update(b"\x00\xff")
    return digest.hexdigest()


def _encoder_id(encoder) -> str:
    known = getattr(encoder, "tlbook_id", None)
    if known:
        return known
    digest = hashlib.sha256()  # an encoder tlbook did not load: identify it by its weights
    for name, tensor in encoder.state_dict().items():
        digest.update(name.encode())
        buffer = io.BytesIO()
        torch.save(tensor.detach().cpu(), buffer)
        digest.update(buffer.getvalue())
    return "weights:" + digest.hexdigest()


def _checked_texts(texts) -> list:
    if isinstance(texts, str):
        raise TypeError("texts must be a list of strings, got one string; wrap it: [text].")
    try:
        texts = list(texts)
    except TypeError:
        raise TypeError(f"texts must be a list of strings, got {type(texts).__name__}.") from None
    if not texts:
        raise ValueError("texts is empty: pass at least one text.")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"texts[{i}] is a {type(text).__name__} ({text!r:.40}), not a string.")
        if not text.strip():
            raise ValueError(f"texts[{i}] is empty or blank; drop it (an empty text has no embedding).")
    return texts
