"""Claims of Chapter 7, case 7.3 (a real pretrained sentence encoder on BBC News), at a size CPU CI can afford.

1. Zero-shot classification by cosine similarity to "A news article about <topic>." is far above chance (0.2).
2. With one labelled article per class, that zero-shot classifier (no labels at all) beats both the frozen
   all-MiniLM-L6-v2 embeddings + logistic regression and a from-scratch TF-IDF + logistic regression trained
   on those labels, on each label draw: the class names are worth more than one example per class.
3. Adding the class names to one labelled article per class (prototype q_k + normalised class mean) beats the
   logistic regression on the same embeddings, on each draw.

Not asserted: that the frozen embeddings beat TF-IDF at one label per class on each draw. In the chapter's
full run (1,000 test articles, 10 draws) the encoder is ahead on average but not on every draw, and at 128
tokens it is not ahead at all (see the chapter and the case's report); a per-draw assertion would be false.

A stratified subset of 400 articles (test 300, pool 100) encodes in about 15 s on one CPU thread the first time;
the embeddings are then cached (tl.text.embed). 128 tokens
per article, the length the encoder was trained at, keep it fast. The chapter's draws, classifier settings (C = 1, fixed a
priori) and TF-IDF settings are used as they are. Skips where the encoder or the corpus is unavailable.
"""
import numpy as np
import pytest

import tlbook.text as text

ARTICLES, TEST = 400, 300
DRAWS = (0, 1, 2, 3, 4)
# Measured here (2-core CPU, 300 test articles): zero-shot 0.817; with 1 label/class per draw encoder + LR
# 0.687 0.710 0.377 0.553 0.603, TF-IDF + LR 0.717 0.603 0.500 0.583 0.657, names + labels 0.830 0.810 0.643
# 0.800 0.840. Smallest margins: zero-shot - best one-label run 0.10; names + labels - encoder + LR 0.10.
PROMPT, TOPICS = "A news article about {}.", ("business", "entertainment", "politics", "sport", "technology")


@pytest.fixture(scope="module")
def news():
    from sklearn.model_selection import train_test_split

    try:
        texts, labels, classes = text.load_bbc_news()
        encoder = text.sentence_encoder(device="cpu")
    except (ImportError, FileNotFoundError, RuntimeError, OSError) as err:
        pytest.skip(f"encoder or corpus unavailable: {err}")
    labels = labels.numpy()
    index = train_test_split(np.arange(len(texts)), train_size=ARTICLES, stratify=labels, random_state=0)[0]
    pool, test = train_test_split(index, test_size=TEST, stratify=labels[index], random_state=0)
    emb = text.embed([texts[i] for i in index], encoder, max_seq_length=128, progress=False).numpy()
    row = {int(i): r for r, i in enumerate(index)}
    prompts = text.embed([PROMPT.format(t) for t in TOPICS], encoder, progress=False, cache=False).numpy()
    return dict(texts=texts, labels=labels, pool=pool, test=test, emb=emb, row=row, prompts=prompts)


def draw(news, per_class, seed):
    rng = np.random.default_rng([per_class, seed])
    pool, labels = news["pool"], news["labels"]
    return np.concatenate([rng.choice(pool[labels[pool] == k], per_class, replace=False) for k in range(5)])


@pytest.fixture(scope="module")
def one_label(news):
    """Test accuracies per draw at one labelled article per class: encoder + LR, TF-IDF + LR, names + labels."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    texts, labels, test, row = news["texts"], news["labels"], news["test"], news["row"]
    vectorizer = TfidfVectorizer(sublinear_tf=True, stop_words="english", min_df=2).fit([texts[i] for i in news["pool"]])
    x_test_tfidf = vectorizer.transform([texts[i] for i in test])
    x_test_emb = news["emb"][[row[int(i)] for i in test]]
    out = {"encoder": [], "tfidf": [], "names + labels": []}
    for seed in DRAWS:
        chosen = draw(news, 1, seed)
        y = labels[chosen]
        x_emb = news["emb"][[row[int(i)] for i in chosen]]
        emb = LogisticRegression(C=1.0, max_iter=2000).fit(x_emb, y)
        bow = LogisticRegression(C=1.0, max_iter=2000).fit(vectorizer.transform([texts[i] for i in chosen]), y)
        out["encoder"].append((emb.predict(x_test_emb) == labels[test]).mean())
        out["tfidf"].append((bow.predict(x_test_tfidf) == labels[test]).mean())
        means = np.stack([x_emb[y == k].mean(0) for k in range(5)])
        prototypes = news["prompts"] + means / np.linalg.norm(means, axis=1, keepdims=True)
        out["names + labels"].append(((x_test_emb @ prototypes.T).argmax(1) == labels[test]).mean())
    return {k: np.array(v) for k, v in out.items()}


def zero_shot_accuracy(news):
    emb = news["emb"][[news["row"][int(i)] for i in news["test"]]]
    return ((emb @ news["prompts"].T).argmax(1) == news["labels"][news["test"]]).mean()


def test_zero_shot_is_far_above_chance(news):
    accuracy = zero_shot_accuracy(news)
    assert accuracy > 0.6, f"zero-shot accuracy {accuracy:.3f} (chance 0.2)"


def test_zero_shot_beats_one_label_per_class_on_each_draw(news, one_label):
    accuracy = zero_shot_accuracy(news)
    for method in ("encoder", "tfidf"):
        assert (accuracy > one_label[method]).all(), (
            f"zero-shot {accuracy:.3f} vs {method} with 1 label/class per draw {np.round(one_label[method], 3).tolist()}")


def test_class_names_plus_one_label_beat_the_logistic_regression_on_each_draw(one_label):
    gaps = one_label["names + labels"] - one_label["encoder"]
    assert (gaps > 0).all(), f"names + labels - encoder + LR per draw: {np.round(gaps, 3).tolist()}"
