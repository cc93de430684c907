"""On a small real corpus, both the reference and gensim put related words closer than unrelated.

3,000 Multi30k English captions, lower-cased whitespace words. The pairs are frequent in these
captions; the test compares averages over eight pairs, so one noisy word cannot flip it.
"""

import gzip
import itertools
import re
from collections import Counter

import pytest
import torch

from transformer_mt.word2vec.gensim_trainer import Word2VecSettings, train_gensim
from transformer_mt.word2vec.reference_train import train_reference

RELATED = [("man", "woman"), ("boy", "girl"), ("men", "women"), ("red", "blue")]
RELATED += [("white", "black"), ("shirt", "jacket"), ("water", "snow"), ("street", "beach")]
UNRELATED = [("man", "water"), ("boy", "blue"), ("men", "street"), ("red", "woman")]
UNRELATED += [("white", "girl"), ("shirt", "snow"), ("water", "women"), ("street", "black")]
MIN_COUNT = 5


@pytest.fixture(scope="module")
def captions(shared_data) -> list[list[str]]:
    with gzip.open(shared_data / "multi30k" / "train.en.gz", "rt", encoding="utf-8") as f:
        return [re.findall(r"[a-z]+", line.lower()) for line in itertools.islice(f, 3000)]


def assert_related_closer(similarity) -> None:
    related = [similarity(a, b) for a, b in RELATED]
    unrelated = [similarity(a, b) for a, b in UNRELATED]
    gap = sum(related) / len(related) - sum(unrelated) / len(unrelated)
    wins = sum(r > u for r, u in zip(related, unrelated, strict=True))
    assert gap > 0.2 and wins >= 6, f"related {related}\nunrelated {unrelated}"


@pytest.mark.parametrize(
    ("skip_gram", "window", "epochs", "lr", "batch_size"),
    [(True, 2, 4, 0.025, 1024), (False, 3, 6, 0.05, 512)],
)
def test_reference_learns_similarity(captions, skip_gram, window, epochs, lr, batch_size) -> None:
    counts = Counter(w for sent in captions for w in sent)
    vocab = {w: i for i, w in enumerate(w for w, c in counts.items() if c >= MIN_COUNT)}
    ids = [[vocab[w] for w in sent if w in vocab] for sent in captions]
    result = train_reference(
        ids, len(vocab), 32, skip_gram=skip_gram, window=window, negative=5, epochs=epochs, lr=lr,
        batch_size=batch_size, seed=0,
    )  # fmt: skip
    assert result.epoch_losses[-1] < result.epoch_losses[0]
    E = torch.nn.functional.normalize(result.W_in, dim=1)
    assert_related_closer(lambda a, b: float(E[vocab[a]] @ E[vocab[b]]))


@pytest.mark.parametrize(("skip_gram", "epochs"), [(True, 10), (False, 20)])
def test_gensim_learns_similarity(captions, skip_gram, epochs) -> None:
    settings = Word2VecSettings(
        skip_gram=skip_gram,
        vector_size=32,
        window=3,
        negative=5,
        min_count=MIN_COUNT,
        epochs=epochs,
    )
    result = train_gensim(captions, settings)
    assert result.raw_words == epochs * sum(len(s) for s in captions)
    assert result.words_per_second > 0
    assert_related_closer(lambda a, b: float(result.vectors.similarity(a, b)))
