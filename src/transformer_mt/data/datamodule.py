"""The LightningDataModule: files -> SentencePiece -> prepared arrays -> token-budget batches.

Trainer requirement: `use_distributed_sampler=False`. The batch sampler shards batches across
ranks itself (disjoint, equal step counts, nothing repeated); Lightning's wrapper would shard
them again and pad with duplicates.

The train loader is stateful (`state_dict` / `load_state_dict`, which Lightning saves in and
restores from checkpoints), so a run resumed from a mid-epoch checkpoint continues with exactly
the remaining batches of that epoch.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch.distributed as dist
from torch.utils.data import DataLoader

from transformer_mt.data.batching import Batch, TokenBatchSampler
from transformer_mt.data.cache import resolve_cache_dir, settings_key
from transformer_mt.data.corpus import Corpus, SplitSource, SubsetSource
from transformer_mt.data.prepare import FORMAT_VERSION, prepare_split
from transformer_mt.data.prepared import PreparedSplit
from transformer_mt.data.readers import CorpusError, ReadStats
from transformer_mt.data.tokenizer import Tokenizer, TokenizerConfig
from transformer_mt.data.vocab import load_or_train_tokenizer

log = logging.getLogger(__name__)


class ResumableDataLoader(DataLoader):
    """A DataLoader over a `TokenBatchSampler` whose position in the epoch can be checkpointed.

    It counts the batches it has handed to the caller, not those its workers have prefetched
    (the sampler runs ahead of the loop by `num_workers * prefetch_factor` batches), and that
    count is the position saved. Its `__init__` is DataLoader's, so Lightning can rebuild it.
    """

    _position = 0  # batches of the current epoch handed out (or skipped on resume)

    def __iter__(self) -> Iterator[Batch]:
        # A generator: nothing (no worker, no sampler) starts until the first batch is asked
        # for, which Lightning does after its set_epoch and load_state_dict.
        self._position = self.sampler.start_position()
        for batch in super().__iter__():
            self._position += 1
            yield batch

    def state_dict(self) -> dict[str, Any]:
        return {**self.sampler.state_dict(), "position": self._position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sampler.load_state_dict(state)
        self._position = state["position"]


class TranslationDataModule(L.LightningDataModule):
    """One translation direction with train / val / (optional) test splits.

    Args:
        corpus: where the files are (Multi30k, TsvCorpus, TextCorpus).
        tokenizer: SentencePiece settings to train one with, or a ready `Tokenizer` (a
            pretrained model's, for fine-tuning: its pieces and ids are the model's).
        data_root: only used to place the default cache (see `cache.resolve_cache_dir`).
        cache_dir: SentencePiece models and prepared arrays; None = default location.
        max_tokens: budget per training batch, B * max(S, T) (padded, larger side).
        max_sentences: optional cap on pairs per batch.
        max_len: training pairs with S or T above this are dropped (counted and logged);
            val/test are never filtered so that BLEU covers every sentence.
        eval_max_tokens: budget for val/test batches (default `max_tokens`).
        seed: seeds the per-epoch shuffle of training batches.
        shuffle_train: False keeps training batches in one fixed order every epoch (the
            `debug=overfit` check trains on the same first batches over and over).
        train_pairs: train (tokenizer included) on a random sample of this many pairs only,
            the low-resource setting; None = the whole training split.
        train_pairs_seed: seeds that sample (the same seed, the same pairs).
        num_workers / pin_memory: DataLoader settings.
    """

    def __init__(
        self,
        corpus: Corpus,
        tokenizer: TokenizerConfig | Tokenizer,
        data_root: str | Path | None = None,
        cache_dir: str | Path | None = None,
        max_tokens: int = 4096,
        max_sentences: int | None = None,
        max_len: int = 256,
        eval_max_tokens: int | None = None,
        seed: int = 1,
        shuffle_train: bool = True,
        train_pairs: int | None = None,
        train_pairs_seed: int = 1,
        num_workers: int = 2,
        pin_memory: bool = False,
    ) -> None:
        super().__init__()
        if max_len > max_tokens:
            raise ValueError(
                f"max_len={max_len} exceeds max_tokens={max_tokens}: no pair would fit"
            )
        self.corpus, self.tokenizer_config = corpus, tokenizer
        self.cache_dir = resolve_cache_dir(cache_dir, Path(data_root) if data_root else None)
        self.max_tokens, self.max_sentences, self.max_len = max_tokens, max_sentences, max_len
        self.eval_max_tokens = eval_max_tokens or max_tokens
        self.seed, self.num_workers, self.pin_memory = seed, num_workers, pin_memory
        self.shuffle_train = shuffle_train
        if train_pairs is not None and train_pairs < 1:
            raise ValueError(f"train_pairs={train_pairs}: expected a positive count or null")
        self.train_pairs, self.train_pairs_seed = train_pairs, train_pairs_seed
        self.tokenizer: Tokenizer | None = None
        self.splits: dict[str, PreparedSplit] = {}
        self.filtered_too_long = 0
        self._text: dict[tuple[str, str], list[str]] = {}
        self._files_checked = False

    def prepare_data(self) -> None:
        """Download (if needed), train the tokenizer and encode every split (rank 0 only)."""
        self._build()

    def setup(self, stage: str | None = None) -> None:
        if self.tokenizer is None:
            self._build()

    def _build(self) -> None:
        self._ensure_files()
        train = self._source("train")
        assert train is not None, "every corpus has a train split"
        if isinstance(self.tokenizer_config, Tokenizer):
            self.tokenizer = self.tokenizer_config
        else:
            self.tokenizer = load_or_train_tokenizer(train, self.tokenizer_config, self.cache_dir)
        for split in ("train", "val", *self.test_splits):
            source = self._source(split)
            key = settings_key(
                version=FORMAT_VERSION,
                corpus=source.content_key(),
                vocab=self.tokenizer.fingerprint(),
            )
            folder = prepare_split(source, self.tokenizer, self.cache_dir / "prepared" / key)
            self.splits[split] = PreparedSplit(folder)
            self._log_split(split, self.splits[split])

    def _source(self, split: str) -> SplitSource | None:
        source = self.corpus.source(split)
        if split == "train" and source is not None and self.train_pairs is not None:
            return SubsetSource(source, self.train_pairs, self.train_pairs_seed)
        return source

    def _log_split(self, split: str, prepared: PreparedSplit) -> None:
        meta = prepared.meta
        log.info("%s: %d pairs from %s", split, meta["pairs"], ", ".join(meta["files"]))
        if meta["empty_dropped"]:
            log.warning(
                "%s: %d pairs dropped for an empty side (first at lines %s)",
                split, meta["empty_dropped"], meta["empty_examples"],
            )  # fmt: skip

    def _ensure_files(self) -> None:
        if not self._files_checked:
            self.corpus.ensure_files()
            self._files_checked = True

    @property
    def test_splits(self) -> list[str]:
        """The corpus's test sets whose files are present, in config order."""
        self._ensure_files()
        return self.corpus.present_tests()

    @property
    def missing_test_splits(self) -> dict[str, str]:
        """Configured test sets that are absent -> why."""
        self._ensure_files()
        return dict(self.corpus.missing_tests)

    def has_split(self, split: str) -> bool:
        if split in ("train", "val"):
            return self.corpus.source(split) is not None
        return split in self.test_splits

    def _split(self, split: str) -> PreparedSplit:
        if split not in self.splits:
            self.setup()
        if split not in self.splits:
            raise CorpusError(
                f"no {split!r} split for this corpus; available: {', '.join(self.splits)}"
            )
        return self.splits[split]

    def _rank_and_world(self) -> tuple[int, int]:
        trainer = self.trainer
        if trainer is not None:
            connector = getattr(trainer, "_accelerator_connector", None)
            if trainer.world_size > 1 and getattr(connector, "use_distributed_sampler", False):
                raise ValueError(
                    "TranslationDataModule shards batches across ranks itself: "
                    "set trainer.use_distributed_sampler=False"
                )
            return trainer.global_rank, trainer.world_size
        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
        return 0, 1

    def sampler(self, split: str) -> TokenBatchSampler:
        """The batch sampler of `split` for this rank (shuffled only for train)."""
        prepared = self._split(split)
        src_len, tgt_len = prepared.lengths()
        rank, world = self._rank_and_world()
        keep = None
        if split == "train":
            fits = (src_len <= self.max_len) & (tgt_len <= self.max_len)
            keep = np.flatnonzero(fits)
            self.filtered_too_long = int(len(fits) - len(keep))
            if self.filtered_too_long:
                log.warning(
                    "train: %d of %d pairs longer than max_len=%d tokens are left out",
                    self.filtered_too_long, len(fits), self.max_len,
                )  # fmt: skip
        return TokenBatchSampler(
            src_len, tgt_len,
            max_tokens=self.max_tokens if split == "train" else self.eval_max_tokens,
            max_sentences=self.max_sentences, seed=self.seed,
            shuffle=split == "train" and self.shuffle_train,
            rank=rank, world_size=world, keep=keep,
        )  # fmt: skip

    def _loader(self, split: str) -> DataLoader:
        loader_type = ResumableDataLoader if split == "train" else DataLoader
        return loader_type(
            self._split(split),
            sampler=self.sampler(split),
            batch_size=None,  # the sampler yields whole batches
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> list[DataLoader]:
        """One loader per present test set (`test_splits`), in that order."""
        if not self.test_splits:
            reasons = "; ".join(f"{k}: {v}" for k, v in self.missing_test_splits.items())
            raise CorpusError(reasons or "this corpus has no test split; give test files")
        return [self._loader(split) for split in self.test_splits]

    def _read_text(self, split: str, side: str) -> list[str]:
        """Raw sentences of the kept pairs, in line order (the same pairs as `Batch.indices`)."""
        if (split, side) not in self._text:
            source = self._source(split)
            if source is None:
                raise CorpusError(f"no {split!r} split for this corpus")
            lines: list[str] = []
            for chunk in source.read(ReadStats()):
                lines.extend(getattr(chunk, side))
            self._text[split, side] = lines
        return self._text[split, side]

    def references(self, split: str) -> list[str]:
        """Raw target sentences; `references(split)[i]` belongs to `Batch.indices == i`."""
        return self._read_text(split, "tgt")

    def sources(self, split: str) -> list[str]:
        return self._read_text(split, "src")
