"""Fixtures for the data tests: small slices of the shared corpora written into tmp folders."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from transformer_mt.data.corpus import TextPairSource
from transformer_mt.data.tokenizer import TokenizerConfig
from transformer_mt.data.vocab import load_or_train_tokenizer


def read_gz_lines(path: Path, n: int | None = None) -> list[str]:
    """Reference reader: the whole file through gzip + str.split (independent of readers.py)."""
    lines = gzip.decompress(path.read_bytes()).decode("utf-8").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines[:n] if n is not None else lines


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def slice_files(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """2,000 train and 200 val pairs of Multi30k de-en as plain text files."""
    folder = tmp_path_factory.mktemp("m30k_slice")
    files = {}
    for split, n in (("train", 2000), ("val", 200)):
        for lang in ("de", "en"):
            lines = read_gz_lines(shared_data / "multi30k" / f"{split}.{lang}.gz", n)
            files[f"{split}.{lang}"] = write_lines(folder / f"{split}.{lang}", lines)
    return files


SMALL_VOCAB = TokenizerConfig(vocab_size=300)


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache shared by tests that use `SMALL_VOCAB` on the slice: trained once."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session")
def small_tokenizer(slice_files: dict[str, Path], session_cache: Path):
    """A joint 300-piece unigram model trained on the 2,000-pair slice (a few seconds)."""
    source = TextPairSource(slice_files["train.de"], slice_files["train.en"])
    return load_or_train_tokenizer(source, SMALL_VOCAB, session_cache)
