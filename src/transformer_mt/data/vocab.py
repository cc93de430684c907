"""Training the SentencePiece models on a training split, cached by corpus hash and settings."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

from transformer_mt.data.cache import build_atomically, settings_key
from transformer_mt.data.corpus import SplitSource
from transformer_mt.data.readers import ReadStats
from transformer_mt.data.tokenizer import Tokenizer, TokenizerConfig, train_sentencepiece

log = logging.getLogger(__name__)

VOCAB_FORMAT_VERSION = 1


def _sentences(source: SplitSource, sides: tuple[str, ...]) -> Iterator[str]:
    """Lines of the chosen sides of the kept pairs (empty pairs dropped, as when encoding)."""
    for chunk in source.read(ReadStats()):
        for side in sides:
            yield from getattr(chunk, side)


def tokenizer_key(source: SplitSource, config: TokenizerConfig) -> str:
    """Cache key: the training files' content, how they are read, and every setting."""
    return settings_key(
        version=VOCAB_FORMAT_VERSION, corpus=source.content_key(), settings=asdict(config)
    )


def load_or_train_tokenizer(
    source: SplitSource, config: TokenizerConfig, cache_dir: Path
) -> Tokenizer:
    """The tokenizer for `source` (a training split) under `cache_dir/tokenizers/<key>`."""
    folder = cache_dir / "tokenizers" / tokenizer_key(source, config)

    def build(tmp: Path) -> None:
        log.info("training SentencePiece (%s) on %s", config, ", ".join(map(str, source.files)))
        if config.joint:
            vocab, coverage = config.side(tgt=False)
            Tokenizer(
                train_sentencepiece(_sentences(source, ("src", "tgt")), vocab, coverage, config)
            ).save(tmp)
            return
        protos = [
            train_sentencepiece(_sentences(source, (side,)), *config.side(side == "tgt"), config)
            for side in ("src", "tgt")
        ]
        Tokenizer(*protos).save(tmp)

    if folder.is_dir():
        log.info("reusing SentencePiece models from %s", folder)
    return Tokenizer.load(build_atomically(folder, build))
