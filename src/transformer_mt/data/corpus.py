"""Where each split's files are: Multi30k, TSV corpora (Tatoeba) and plain text pairs.

A corpus maps split names ("train", "val", and any number of test sets: "test", or Multi30k's
"test_2016_flickr", "test_2017_flickr", "test_2017_mscoco") to split sources; a source knows
its files, reads aligned pairs in chunks and hashes its content (the cache key). A test set
whose files are absent is listed with the reason (`Corpus.missing_tests`), never fatal. Data
configs choose the corpus class by `_target_`.
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
"""The splits of a corpus with one test set (a corpus may name more: `Corpus.test_names`)."""
MULTI30K_TEST_SETS = ("test_2016_flickr", "test_2017_flickr", "test_2017_mscoco")


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
    """Named splits: "train", "val" and the test sets of `test_names`."""

    src_lang: str
    tgt_lang: str
    test_names: tuple[str, ...] = ()
    """The test sets this corpus is configured with, present or not."""
    missing_tests: dict[str, str]
    """Test set -> why it is unavailable (files absent), filled by `ensure_files`."""

    def split_names(self) -> tuple[str, ...]:
        return ("train", "val", *self.test_names)

    def ensure_files(self) -> None:
        """Make the files available (download if possible), or raise naming what is missing;
        a missing test set is recorded in `missing_tests` instead."""
        self.missing_tests = {}
        for name in self.split_names():
            source = self.source(name)
            missing = [p for p in (source.files if source is not None else ()) if not p.is_file()]
            if missing and name in self.test_names:
                self.missing_tests[name] = describe_missing(missing[0])
                log.warning("test set %s unavailable: %s", name, self.missing_tests[name])
                continue
            for path in missing:
                require_file(path)

    def source(self, split: str) -> SplitSource | None:
        """The source of `split`, or None if this corpus has no such split."""
        raise NotImplementedError

    def present_tests(self) -> list[str]:
        """The test sets whose files are there (call `ensure_files` first)."""
        missing = getattr(self, "missing_tests", {})
        return [n for n in self.test_names if n not in missing and self.source(n) is not None]


def _path_or_none(path: str | Path | None) -> Path | None:
    return None if path in (None, "") else Path(path).expanduser()


class TextCorpus(Corpus):
    """Any aligned text files given by path (the `custom` data config). Test sets are
    optional: `test_src`/`test_tgt` (named "test") and any more in `tests`, a mapping of name
    to ``{src: path, tgt: path}``."""

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
        tests: dict[str, dict[str, str]] | None = None,
    ) -> None:
        self.src_lang, self.tgt_lang = src_lang, tgt_lang
        paths = {
            "train": (train_src, train_tgt),
            "val": (val_src, val_tgt),
            "test": (test_src, test_tgt),
        }
        for name, files in (tests or {}).items():
            _check_test_name(name, paths)
            if set(files) != {"src", "tgt"}:
                raise ValueError(f"tests.{name}: expected keys src and tgt, got {sorted(files)}")
            paths[name] = (files["src"], files["tgt"])
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
        self.test_names = tuple(n for n in self._sources if n not in ("train", "val"))

    def source(self, split: str) -> SplitSource | None:
        return self._sources.get(split)


def _check_test_name(name: str, taken: dict) -> None:
    """A test set's name becomes its metric prefix (``<name>/bleu``) and a cache folder."""
    if name in taken or not name.replace("_", "").replace("-", "").isalnum():
        raise ValueError(
            f"test set name {name!r}: expected letters, digits, _ or -, other than "
            f"{', '.join(taken)}"
        )


class TsvCorpus(Corpus):
    """Tab-separated files, source and target in given columns (Tatoeba: en, zh, credit).
    Test sets are optional: `test` (named "test") and any more in `tests` (name -> path)."""

    def __init__(
        self,
        train: str | Path,
        val: str | Path,
        src_column: int,
        tgt_column: int,
        test: str | Path | None = None,
        src_lang: str = "src",
        tgt_lang: str = "tgt",
        tests: dict[str, str] | None = None,
    ) -> None:
        if min(src_column, tgt_column) < 0 or src_column == tgt_column:
            raise ValueError(
                f"src_column={src_column} and tgt_column={tgt_column} must be distinct and >= 0"
            )
        self.src_lang, self.tgt_lang = src_lang, tgt_lang
        files = {"train": train, "val": val, "test": test}
        for name, path in (tests or {}).items():
            _check_test_name(name, files)
            files[name] = path
        self._sources = {
            split: TsvSource(path, src_column, tgt_column)
            for split, p in files.items()
            if (path := _path_or_none(p)) is not None
        }
        self.test_names = tuple(n for n in self._sources if n not in ("train", "val"))

    def source(self, split: str) -> SplitSource | None:
        return self._sources.get(split)


class Multi30k(Corpus):
    """Multi30k Task 1 raw captions under `<root>/multi30k/{split}.{lang}.gz`, any direction.

    `test_sets` names the published test file stems (test_2016_flickr, test_2017_flickr,
    test_2017_mscoco; a single name or none). Missing train/val files are downloaded
    (sha256-verified) when `download` is True; a test set without a known checksum is only
    fetched with `allow_unverified_download`, otherwise it is listed as unavailable
    (`missing_tests`) and the others are used.
    """

    LANGUAGES = ("de", "en", "fr")

    def __init__(
        self,
        root: str | Path,
        src_lang: str,
        tgt_lang: str,
        test_sets: list[str] | tuple[str, ...] | str | None = MULTI30K_TEST_SETS,
        download: bool = True,
        allow_unverified_download: bool = False,
    ) -> None:
        self.folder = Path(root).expanduser() / "multi30k"
        self.src_lang, self.tgt_lang = src_lang, tgt_lang
        self.download, self.allow_unverified = download, allow_unverified_download
        names = [test_sets] if isinstance(test_sets, str) else list(test_sets or ())
        for name in names:
            _check_test_name(name, {"train": None, "val": None})
        self.test_names = tuple(dict.fromkeys(names))
        self.missing_tests: dict[str, str] = {}
        self._check_languages()

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
        if split not in self.split_names():
            return None
        return (
            self.folder / f"{split}.{self.src_lang}.gz",
            self.folder / f"{split}.{self.tgt_lang}.gz",
        )

    def ensure_files(self) -> None:
        self.missing_tests = {}
        for split in self.split_names():
            for path in self._paths(split) or ():
                if path.is_file():
                    continue
                if split in self.test_names:
                    if reason := self._fetch_test(path):
                        self.missing_tests[split] = reason
                        log.warning("Multi30k test set %s unavailable: %s", split, reason)
                        break
                    continue
                self._fetch(path)

    def _fetch(self, path: Path) -> None:
        if not self.download:
            raise CorpusError(
                f"{describe_missing(path)}; download is off: save {path.name} from "
                f"the multi30k/dataset repository (data/task1/raw/) as {path}"
            )
        try:
            download_verified(path.name, self.folder, self.allow_unverified)
        except DownloadError as err:
            raise CorpusError(str(err)) from None

    def _fetch_test(self, path: Path) -> str | None:
        """Download a test file when allowed; the reason it is unavailable otherwise."""
        if path.name not in MULTI30K_SHA256 and not (self.download and self.allow_unverified):
            return (
                f"{describe_missing(path)}; no verified download exists for it: save "
                f"{path.name} from the multi30k/dataset repository (data/task1/raw/) as "
                f"{path}, or set allow_unverified_download=true"
            )
        try:
            self._fetch(path)
        except CorpusError as err:
            return str(err)
        return None

    def source(self, split: str) -> SplitSource | None:
        paths = self._paths(split)
        if paths is None or split in self.missing_tests:
            return None
        return TextPairSource(*paths)
