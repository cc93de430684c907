"""train_pairs: a seeded sample of the training split, checked against the files themselves."""

from __future__ import annotations

from pathlib import Path

import pytest

from transformer_mt.data.corpus import SubsetSource, TextCorpus, TextPairSource
from transformer_mt.data.datamodule import TranslationDataModule
from transformer_mt.data.readers import CorpusError, ReadStats

from .conftest import SMALL_VOCAB, read_gz_lines, write_lines


def _pairs(source) -> list[tuple[int, str, str]]:
    return [
        (n, s, t)
        for chunk in source.read(ReadStats(), chunk_size=97)  # chunks cut across the sample
        for n, s, t in zip(chunk.line_numbers, chunk.src, chunk.tgt, strict=True)
    ]


def test_subset_is_a_seeded_sample_of_the_file_lines(slice_files: dict[str, Path]) -> None:
    full = TextPairSource(slice_files["train.de"], slice_files["train.en"])
    de = slice_files["train.de"].read_text(encoding="utf-8").splitlines()
    en = slice_files["train.en"].read_text(encoding="utf-8").splitlines()
    sample = _pairs(SubsetSource(full, 300, seed=7))
    assert len(sample) == 300 == len({n for n, _, _ in sample})
    assert [n for n, _, _ in sample] == sorted(n for n, _, _ in sample)  # file order kept
    assert all((s, t) == (de[n - 1], en[n - 1]) for n, s, t in sample)  # aligned pairs
    assert sample == _pairs(SubsetSource(full, 300, seed=7))  # same seed, same pairs
    other = _pairs(SubsetSource(full, 300, seed=8))
    assert len(set(sample) & set(other)) < 100  # about 300 * 300/2000 = 45 expected in common
    assert max(n for n, _, _ in sample) > 1500  # drawn from the whole file, not its head
    key = SubsetSource(full, 300, seed=7).content_key()
    assert key != full.content_key() and key != SubsetSource(full, 300, seed=8).content_key()


def test_subset_larger_than_the_split_names_the_files(slice_files: dict[str, Path]) -> None:
    full = TextPairSource(slice_files["train.de"], slice_files["train.en"])
    with pytest.raises(CorpusError, match=r"train\.de.*train_pairs=5000 .* only 2000"):
        _pairs(SubsetSource(full, 5000))


def test_datamodule_prepares_the_sample_only(
    slice_files: dict[str, Path], shared_data: Path, tmp_path: Path
) -> None:
    val_de = read_gz_lines(shared_data / "multi30k" / "val.de.gz", 50)
    val_en = read_gz_lines(shared_data / "multi30k" / "val.en.gz", 50)
    corpus = TextCorpus(
        slice_files["train.de"], slice_files["train.en"],
        write_lines(tmp_path / "val.de", val_de), write_lines(tmp_path / "val.en", val_en),
        src_lang="de", tgt_lang="en",
    )  # fmt: skip
    dm = TranslationDataModule(
        corpus, SMALL_VOCAB, cache_dir=tmp_path / "cache", train_pairs=500, num_workers=0
    )
    dm.setup("fit")
    assert dm.splits["train"].meta["pairs"] == 500 and len(dm.sources("train")) == 500
    assert len(dm.references("val")) == 50  # val and test are never sampled
    sampled = {(s, t) for _, s, t in _pairs(SubsetSource(corpus.source("train"), 500))}
    assert set(zip(dm.sources("train"), dm.references("train"), strict=True)) == sampled
    with pytest.raises(ValueError, match="train_pairs=0: expected a positive count"):
        TranslationDataModule(corpus, SMALL_VOCAB, train_pairs=0)
