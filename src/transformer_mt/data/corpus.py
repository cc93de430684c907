"""Where each split's files are: Multi30k, TSV corpora (Tatoeba) and plain text pairs.

A corpus maps split names ("train", "val", "test") to split sources; a source knows its files,
reads aligned pairs in chunks and hashes its content (the cache key). Data configs choose the
corpus class by `_target_`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from transformer_mt.data.cache import file_sha256
from transformer_mt.data.download import (
    MULTI30K_SHA256,
    DownloadError,
    download_verified,
)
from transformer_mt.data.readers import (
    CorpusError,
    PairChunk,
    ReadStats,
    describe_missing,
    read_text_pairs,
    read_tsv_pairs,
    require_file,
)

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class TextPairSource:
    """A split stored as two line-aligned files (plain text or gzip)."""

    src_path: Path
    tgt_path: Path

    @property
    def files(self) -> tuple[Path, ...]:
        return (self.src_path, self.tgt_path)

    def read(self, stats: ReadStats, chunk_size: int = 1 << 16) -> Iterator[PairChunk]:
        return read_text_pairs(self.src_path, self.tgt_path, stats, chunk_size)

    def content_key(self) -> dict[str, object]:
        return {"format": "text", "sha256": [file_sha256(require_file(p)) for p in self.files]}


@dataclass(frozen=True)
class TsvSource:
    """A split stored as one tab-separated file; columns are 0-based."""

    path: Path
    src_column: int
    tgt_column: int

    @property
    def files(self) -> tuple[Path, ...]:
        return (self.path,)

    def read(self, stats: ReadStats, chunk_size: int = 1 << 16) -> Iterator[PairChunk]:
        return read_tsv_pairs(self.path, self.src_column, self.tgt_column, stats, chunk_size)

    def content_key(self) -> dict[str, object]:
        return {
            "format": "tsv",
            "sha256": file_sha256(require_file(self.path)),
            "columns": [self.src_column, self.tgt_column],
        }


@dataclass(frozen=True)
class SubsetSource:
    """A seeded random sample of `pairs` pairs of another source, in their file order.

    The low-resource setting of an experiment: the tokenizer, Word2Vec and the model all see
    only these pairs. Two passes (count, then keep the chosen indices), so nothing is held in
    memory beyond the indices.
    """

    inner: TextPairSource | TsvSource
    pairs: int
    seed: int = 1

    @property
    def files(self) -> tuple[Path, ...]:
        return self.inner.files

    def _chosen(self) -> np.ndarray:
        available = sum(len(chunk.src) for chunk in self.inner.read(ReadStats()))
        if self.pairs > available:
            raise CorpusError(
                f"{', '.join(map(str, self.files))}: train_pairs={self.pairs} requested but "
                f"only {available} non-empty pairs exist"
            )
        rng = np.random.default_rng(self.seed)
        return np.sort(rng.choice(available, size=self.pairs, replace=False))

    def read(self, stats: ReadStats, chunk_size: int = 1 << 16) -> Iterator[PairChunk]:
        chosen, start = self._chosen(), 0
        for chunk in self.inner.read(stats, chunk_size):
            stop = start + len(chunk.src)
            lo, hi = np.searchsorted(chosen, [start, stop])
            keep = chosen[lo:hi] - start
            start = stop
            if len(keep):
                yield PairChunk(
                    [chunk.src[i] for i in keep],
                    [chunk.tgt[i] for i in keep],
                    [chunk.line_numbers[i] for i in keep],
                )

    def content_key(self) -> dict[str, object]:
        return {**self.inner.content_key(), "subset": {"pairs": self.pairs, "seed": self.seed}}


SplitSource = TextPairSource | TsvSource | SubsetSource


class Corpus:
    """Base: a translation direction and the sources of its splits."""

    src_lang: str
    tgt_lang: str
    test_missing_reason: str | None = None

    def ensure_files(self) -> None:
        """Make the files available (download if possible), or raise naming what is missing."""
        for name in SPLITS:
            source = self.source(name)
            for path in source.files if source is not None else ():
                require_file(path)

    def source(self, split: str) -> SplitSource | None:
        """The source of `split`, or None if this corpus has no such split."""
        raise NotImplementedError


def _path_or_none(path: str | Path | None) -> Path | None:
    return None if path in (None, "") else Path(path).expanduser()


class TextCorpus(Corpus):
    """Any aligned text files given by path (the `custom` data config); test is optional."""

    def __init__(
        self,
        train_src: str | Path,
        train_tgt: str | Path,
        val_src: str | Path,
        val_tgt: str | Path,
        test_src: str | Path | None = None,
        test_tgt: str | Path | None = None,
        src_lang: str = "src",
        tgt_lang: str = "tgt",
    ) -> None:
        self.src_lang, self.tgt_lang = src_lang, tgt_lang
        paths = {
            "train": (train_src, train_tgt),
            "val": (val_src, val_tgt),
            "test": (test_src, test_tgt),
        }
        self._sources: dict[str, SplitSource] = {}
        for split, (src, tgt) in paths.items():
            src_p, tgt_p = _path_or_none(src), _path_or_none(tgt)
            if (src_p is None) != (tgt_p is None):
                raise ValueError(f"split {split!r}: give both source and target paths or neither")
            if src_p is not None and tgt_p is not None:
                self._sources[split] = TextPairSource(src_p, tgt_p)
        for split in ("train", "val"):
            if split not in self._sources:
                raise ValueError(f"split {split!r} needs source and target paths")

    def source(self, split: str) -> SplitSource | None:
        return self._sources.get(split)


class TsvCorpus(Corpus):
    """Tab-separated files, source and target in given columns (Tatoeba: en, zh, credit)."""

    def __init__(
        self,
        train: str | Path,
        val: str | Path,
        src_column: int,
        tgt_column: int,
        test: str | Path | None = None,
        src_lang: str = "src",
        tgt_lang: str = "tgt",
    ) -> None:
        if min(src_column, tgt_column) < 0 or src_column == tgt_column:
            raise ValueError(
                f"src_column={src_column} and tgt_column={tgt_column} must be distinct and >= 0"
            )
        self.src_lang, self.tgt_lang = src_lang, tgt_lang
        files = {"train": train, "val": val, "test": test}
        self._sources = {
            split: TsvSource(path, src_column, tgt_column)
            for split, p in files.items()
            if (path := _path_or_none(p)) is not None
        }

    def source(self, split: str) -> SplitSource | None:
        return self._sources.get(split)


class Multi30k(Corpus):
    """Multi30k Task 1 raw captions under `<root>/multi30k/{split}.{lang}.gz`, any direction.

    `test_set` names the published test file stem (test_2016_flickr, test_2017_flickr,
    test_2017_mscoco) or is None. Missing train/val files are downloaded (sha256-verified)
    when `download` is True; a missing test set without a known checksum is only fetched with
    `allow_unverified_download`, otherwise the test split is reported unavailable.
    """

    LANGUAGES = ("de", "en", "fr")

    def __init__(
        self,
        root: str | Path,
        src_lang: str,
        tgt_lang: str,
        test_set: str | None = "test_2016_flickr",
        download: bool = True,
        allow_unverified_download: bool = False,
    ) -> None:
        self.folder = Path(root).expanduser() / "multi30k"
        self.src_lang, self.tgt_lang = src_lang, tgt_lang
        self.download, self.allow_unverified = download, allow_unverified_download
        self._stems = {"train": "train", "val": "val", "test": test_set}
        self._check_languages()
        self.test_missing_reason: str | None = None

    def _check_languages(self) -> None:
        present = sorted({p.name.split(".")[1] for p in self.folder.glob("train.*.gz")})
        for side, lang in (("src_lang", self.src_lang), ("tgt_lang", self.tgt_lang)):
            if lang not in self.LANGUAGES and lang not in present:
                raise CorpusError(
                    f"Multi30k has no language {lang!r} ({side}); downloadable: "
                    f"{', '.join(self.LANGUAGES)}; found in {self.folder}: "
                    f"{', '.join(present) or '(none)'}"
                )
        if self.src_lang == self.tgt_lang:
            raise CorpusError(f"src_lang and tgt_lang are both {self.src_lang!r}")

    def _paths(self, split: str) -> tuple[Path, Path] | None:
        stem = self._stems[split]
        if stem is None:
            return None
        return (
            self.folder / f"{stem}.{self.src_lang}.gz",
            self.folder / f"{stem}.{self.tgt_lang}.gz",
        )

    def ensure_files(self) -> None:
        for split in SPLITS:
            for path in self._paths(split) or ():
                if path.is_file():
                    continue
                if (
                    split == "test"
                    and path.name not in MULTI30K_SHA256
                    and not (self.download and self.allow_unverified)
                ):
                    self.test_missing_reason = (
                        f"{describe_missing(path)}; no verified download exists for it: "
                        f"save {path.name} from the multi30k/dataset repository "
                        f"(data/task1/raw/) as {path}, or set allow_unverified_download=true"
                    )
                    log.warning("Multi30k test split unavailable: %s", self.test_missing_reason)
                    break
                if not self.download:
                    raise CorpusError(
                        f"{describe_missing(path)}; download is off: save {path.name} from "
                        f"the multi30k/dataset repository (data/task1/raw/) as {path}"
                    )
                try:
                    download_verified(path.name, self.folder, self.allow_unverified)
                except DownloadError as err:
                    raise CorpusError(str(err)) from None

    def source(self, split: str) -> SplitSource | None:
        paths = self._paths(split)
        if paths is None or (split == "test" and self.test_missing_reason is not None):
            return None
        return TextPairSource(*paths)
