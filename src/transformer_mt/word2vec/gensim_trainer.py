"""Train Word2Vec with gensim (the fast, maintained implementation) on SentencePiece pieces."""

import logging
import time
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from gensim.models import KeyedVectors, Word2Vec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Word2VecSettings:
    """gensim Word2Vec settings, filled from the Hydra ``embeddings`` group."""

    skip_gram: bool
    """True: skip-gram (the centre predicts each context word); False: CBOW (the mean of the
    context predicts the centre)."""
    vector_size: int
    """Embedding size d; must equal the Transformer's d_model to initialise its embeddings."""
    window: int = 5
    """Maximum distance between centre and context (gensim samples a smaller one per word)."""
    negative: int = 5
    """Negative samples per positive example (hs=0: negative sampling, no hierarchical softmax)."""
    sample: float = 1e-3
    """Frequent-piece downsampling threshold (0 disables)."""
    min_count: int = 5
    """Pieces seen fewer times get no vector (their rows stay uncovered)."""
    epochs: int = 5
    alpha: float = 0.025
    """Initial learning rate, decayed linearly to min_alpha."""
    min_alpha: float = 1e-4
    workers: int = 1
    """Worker threads; only workers=1 is exactly reproducible (threads reorder the updates)."""
    seed: int = 0

    def __post_init__(self) -> None:
        positive = ("vector_size", "window", "negative", "epochs", "workers", "min_count")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"embeddings.{name} must be >= 1, got {getattr(self, name)}")
        if self.sample < 0:
            raise ValueError(f"embeddings.sample must be >= 0, got {self.sample}")
        if not 0 < self.min_alpha <= self.alpha:
            raise ValueError(
                "need 0 < embeddings.min_alpha <= embeddings.alpha, "
                f"got min_alpha={self.min_alpha}, alpha={self.alpha}"
            )

    def to_dict(self) -> dict:
        return asdict(self)


def stable_hash(text: str) -> int:
    """Seeds gensim's per-word initial vectors; Python's ``hash`` changes per process."""
    return zlib.crc32(text.encode("utf-8"))


@dataclass(frozen=True)
class GensimResult:
    vectors: KeyedVectors
    seconds: float  # wall time of the training passes (vocabulary building excluded)
    raw_words: int  # pieces read over all epochs
    effective_words: int  # pieces left after frequent-piece downsampling and min_count
    words_per_second: float  # raw_words / seconds, as gensim's own progress log counts it


def train_gensim(sentences: Sequence[Sequence[str]], settings: Word2VecSettings) -> GensimResult:
    """Train on sentences of pieces (each a list of strings); the list is read once per epoch."""
    if not sentences:
        raise ValueError("no sentences to train Word2Vec on")
    model = Word2Vec(
        vector_size=settings.vector_size,
        window=settings.window,
        negative=settings.negative,
        hs=0,
        sg=1 if settings.skip_gram else 0,
        sample=settings.sample,
        min_count=settings.min_count,
        alpha=settings.alpha,
        min_alpha=settings.min_alpha,
        workers=settings.workers,
        seed=settings.seed,
        hashfxn=stable_hash,
    )
    model.build_vocab(sentences)
    if not model.wv.index_to_key:
        raise ValueError(f"no piece occurs min_count={settings.min_count} times; nothing to train")
    start = time.perf_counter()
    effective, raw = model.train(
        sentences, total_examples=model.corpus_count, epochs=settings.epochs
    )
    seconds = time.perf_counter() - start
    log.info("gensim Word2Vec: %d pieces in %.2f s (%.0f pieces/s)", raw, seconds, raw / seconds)
    return GensimResult(
        vectors=model.wv,
        seconds=seconds,
        raw_words=raw,
        effective_words=effective,
        words_per_second=raw / seconds,
    )
