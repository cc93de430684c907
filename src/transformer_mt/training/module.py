"""The LightningModule that joins the Transformer, the data's tokenizer and decoding.

Hyper-parameters are plain values (the Transformer's fields, loss and scoring settings, the
translation direction); the SentencePiece models travel in the checkpoint under "tokenizer".
So a checkpoint alone rebuilds the model and translates raw text
(`transformer_mt.formats.lightning.model_from_checkpoint`).
"""

import hashlib
import logging
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import lightning as L
import torch
from lightning.pytorch.loggers import WandbLogger
from torch import Tensor, nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from transformer_mt.constants import PAD_ID
from transformer_mt.data.batching import Batch, clip_to_positions
from transformer_mt.data.tokenizer import Tokenizer
from transformer_mt.decoding import GreedySearch, Search
from transformer_mt.model import Transformer, TransformerConfig
from transformer_mt.training.embedding_init import (
    EmbeddingInit,
    PretrainedTable,
    load_into_,
    pretrained_tables,
    zero_frozen_grads_,
)
from transformer_mt.training.loss import teacher_forced_loss
from transformer_mt.training.metrics import corpus_scores, gather_translations

log = logging.getLogger(__name__)

TOKEN_UNIT = 1000.0
"""`training_step` returns the summed loss divided by this constant (the same on every rank and
micro-batch, which keeps the loss of order 1 for fp16's range); `on_before_optimizer_step`
then rescales the accumulated gradients so that an update's gradient is that of its whole
global batch's summed loss divided by the batch's target-token count, as fairseq normalizes,
whatever the split into ranks and micro-batches."""

OptimizerFactory = Callable[[Iterable[nn.Parameter]], Optimizer]
SchedulerFactory = Callable[[Optimizer], LRScheduler]


class TranslationModule(L.LightningModule):
    """Trains a Transformer with label-smoothed cross-entropy; scores BLEU/chrF by decoding.

    Args:
        transformer: the fields of ``TransformerConfig``; without the vocabulary sizes the
            model is built in ``setup`` from the datamodule's tokenizer.
        optimizer: builds the optimizer from the parameters (a ``_partial_`` config node).
        scheduler: builds a per-update LR scheduler from the optimizer, or None.
        search: decoding used for validation/test BLEU (default greedy).
        label_smoothing: epsilon of the smoothed targets (paper: 0.1).
        seed: with the step, seeds dropout so a resumed run draws the same masks.
        src_lang / tgt_lang: the direction, kept in the checkpoint.
        bleu_tokenize: sacrebleu's BLEU tokenizer (``zh`` for a Chinese target).
        num_sample_translations: validation sentences logged with their translation.
        embedding_init: the fields of ``EmbeddingInit`` (Word2Vec start, freeze); default random.
    """

    def __init__(
        self,
        transformer: dict[str, Any],
        optimizer: OptimizerFactory | None = None,
        scheduler: SchedulerFactory | None = None,
        search: Search | None = None,
        label_smoothing: float = 0.1,
        seed: int = 0,
        src_lang: str | None = None,
        tgt_lang: str | None = None,
        bleu_tokenize: str = "13a",
        num_sample_translations: int = 3,
        embedding_init: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["optimizer", "scheduler", "search"], logger=False)
        self.model: Transformer | None = None
        if "src_vocab_size" in transformer:  # otherwise the data's tokenizer sets it in setup
            self.model = Transformer(TransformerConfig(**transformer))
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.search: Search = search or GreedySearch()
        self.tokenizer: Tokenizer | None = None
        self._sums: dict[str, Tensor] = {}  # stage -> [loss_sum, nll_sum, tokens]
        self._decoded: dict[str, list[tuple[int, str]]] = {}
        self.embedding_init = EmbeddingInit(**(embedding_init or {}))
        self._frozen_tables: list[PretrainedTable] = []
        self._update_tokens = 0  # target tokens of this rank's micro-batches since the last step

    # ---- data and checkpoints -------------------------------------------------------------
    def setup(self, stage: str) -> None:
        """Take the tokenizer from the datamodule; build the model once its vocabulary is known.

        Lightning calls this after ``prepare_data``/``setup`` of the datamodule on every rank
        and before restoring a checkpoint, so the vocabulary sizes come from the data.
        """
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is not None and getattr(datamodule, "tokenizer", None) is not None:
            self.tokenizer = datamodule.tokenizer
        if self.model is not None:
            return
        if self.tokenizer is None:
            raise RuntimeError("the vocabulary sizes are unknown: fit with a TranslationDataModule")
        self.hparams.transformer = {
            **self.hparams.transformer,
            "src_vocab_size": self.tokenizer.src_vocab_size,
            "tgt_vocab_size": self.tokenizer.tgt_vocab_size,
        }
        self.model = Transformer(TransformerConfig(**self.hparams.transformer))

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.tokenizer is None:
            raise RuntimeError("no tokenizer to save: train with a TranslationDataModule")
        checkpoint["tokenizer"] = self.tokenizer.to_state()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Take the checkpoint's tokenizer; on a resume, refuse one that differs from the data
        module's (the corpus would be encoded with other pieces and ids than the weights
        learned, and BLEU decoded with yet another)."""
        if "tokenizer" not in checkpoint:
            return
        saved = Tokenizer.from_state(checkpoint["tokenizer"])
        mine = None if self.tokenizer is None else self.tokenizer.fingerprint()
        if mine is not None and saved.fingerprint() != mine:
            raise ValueError(
                f"the checkpoint was trained with another tokenizer (sha256 "
                f"{saved.fingerprint()[:12]}) than the data module's ({mine[:12]}): "
                "resume with the data settings of the run that wrote it (data.tokenizer.*, "
                "data.train_pairs, the same corpus files)"
            )
        self.tokenizer = saved

    def on_fit_start(self) -> None:
        """Word2Vec rows go in at the start of a fresh run; a resumed run keeps its weights.

        This runs after Lightning restored the checkpoint's weights (the step counter comes
        later), so ``trainer.ckpt_path`` tells the two apart; the freeze, checked at every
        update, needs the covered rows in both cases.
        """
        if self.embedding_init.init != "word2vec":
            return
        tables = pretrained_tables(self.model, self.embedding_init, self.tokenizer.fingerprint())
        if self.trainer.ckpt_path is None:
            written = load_into_(tables, self.embedding_init.match_scale)
            log.info("Word2Vec rows copied into the embeddings: %s", written)
        self._frozen_tables = tables if self.embedding_init.freeze_steps else []

    def on_after_backward(self) -> None:
        if self._frozen_tables and self.global_step < self.embedding_init.freeze_steps:
            zero_frozen_grads_(self._frozen_tables)

    # ---- training -------------------------------------------------------------------------
    def forward(self, src_ids: Tensor, tgt_in_ids: Tensor) -> Tensor:
        """Logits (B, T, V) for teacher-forced targets."""
        return self.model(src_ids, tgt_in_ids)

    def _losses(self, batch: Batch) -> tuple[Tensor, Tensor]:
        """(summed smoothed loss, summed NLL) over the non-pad targets."""
        return teacher_forced_loss(
            self.model,
            batch.src_ids,
            batch.tgt_in_ids,
            batch.tgt_out_ids,
            self.hparams.label_smoothing,
            PAD_ID,
        )

    def on_train_batch_start(self, batch: Batch, batch_idx: int) -> None:
        # Dropout draws from a seed fixed by (seed, rank, step, batch), as fairseq seeds each
        # update: a run resumed from a checkpoint draws exactly the masks it would have drawn.
        key = f"{self.hparams.seed}/{self.global_rank}/{self.global_step}/{batch_idx}".encode()
        torch.manual_seed(int.from_bytes(hashlib.blake2b(key, digest_size=7).digest(), "big"))

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        loss_sum, _ = self._losses(batch)
        self._update_tokens += batch.num_tgt_tokens
        per_token = loss_sum.detach() / max(batch.num_tgt_tokens, 1)
        self.log("train/loss", per_token, prog_bar=True, batch_size=batch.num_tgt_tokens)
        return loss_sum / TOKEN_UNIT

    def on_before_optimizer_step(self, optimizer: Optimizer) -> None:
        """Token-weighted gradients: Lightning divided each micro-batch's loss by
        accumulate_grad_batches and DDP averaged over the ranks, so multiplying by
        accumulate * world * TOKEN_UNIT / (target tokens of the update, summed over ranks)
        leaves sum(loss) / tokens over the global batch. Runs before gradient clipping."""
        tokens = torch.tensor(float(self._update_tokens), device=self.device)
        total = float(self.trainer.strategy.reduce(tokens, reduce_op="sum"))
        self._update_tokens = 0
        scale = self.trainer.accumulate_grad_batches * self.trainer.world_size * TOKEN_UNIT
        scale /= max(total, 1.0)
        for parameter in self.parameters():
            if parameter.grad is not None:
                parameter.grad.mul_(scale)

    def configure_optimizers(self) -> dict[str, Any]:
        if self.optimizer_factory is None:
            raise RuntimeError("TranslationModule was built without an optimizer factory")
        optimizer = self.optimizer_factory(self.parameters())
        if self.scheduler_factory is None:
            return {"optimizer": optimizer}
        scheduler = self.scheduler_factory(optimizer)
        # stepped after every optimizer update, as the paper's and fairseq's schedules are
        config = {"scheduler": scheduler, "interval": "step", "frequency": 1, "name": "train/lr"}
        return {"optimizer": optimizer, "lr_scheduler": config}

    # ---- validation and test ----------------------------------------------------------------
    def on_validation_epoch_start(self) -> None:
        self._start_eval("val")

    def on_test_epoch_start(self) -> None:
        for name in self._test_names():
            self._start_eval(name)

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: Batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step(batch, self._test_names()[dataloader_idx])

    def on_validation_epoch_end(self) -> None:
        self._end_eval("val")

    def on_test_epoch_end(self) -> None:
        for name in self._test_names():
            self._end_eval(name)

    def _test_names(self) -> list[str]:
        """The test sets the data module serves, one per test dataloader: each is scored and
        logged under its own prefix (``test/bleu``, ``test_2016_flickr/bleu``, ...)."""
        datamodule = getattr(self.trainer, "datamodule", None)
        return list(getattr(datamodule, "test_splits", None) or ["test"])

    def _start_eval(self, stage: str) -> None:
        self._sums[stage] = torch.zeros(3, dtype=torch.float64, device=self.device)
        self._decoded[stage] = []

    def _eval_step(self, batch: Batch, stage: str) -> None:
        limit = self.model.config.position_limit
        if limit is not None:
            batch, cut = clip_to_positions(batch, limit)
            if cut:
                log.warning(
                    "%s lines %s are longer than the model's %d positions: scored on their "
                    "first %d tokens", stage, cut, limit, limit,
                )  # fmt: skip
        loss_sum, nll_sum = self._losses(batch)
        step_sums = torch.stack([loss_sum.double(), nll_sum.double()])
        tokens = torch.tensor([batch.num_tgt_tokens], dtype=torch.float64, device=self.device)
        self._sums[stage] += torch.cat([step_sums, tokens])
        if self.trainer.sanity_checking or self.tokenizer is None:
            return  # BLEU is meaningless on the two sanity batches
        lines = batch.indices.tolist()
        nbest = self.search(
            self.model, batch.src_ids, row_ids=lines, max_len=self.model.config.position_limit
        )
        hyps = self.tokenizer.decode_tgt([candidates[0].tokens for candidates in nbest])
        self._decoded[stage].extend(zip(lines, hyps, strict=True))

    def _end_eval(self, stage: str) -> None:
        loss_sum, nll_sum, tokens = self.trainer.strategy.reduce(
            self._sums[stage], reduce_op="sum"
        ).tolist()
        tokens = max(tokens, 1.0)
        self.log(f"{stage}/loss", loss_sum / tokens, sync_dist=False)
        self.log(f"{stage}/ppl", math.exp(min(nll_sum / tokens, 50.0)), sync_dist=False)
        if self.trainer.sanity_checking or self.tokenizer is None:
            return
        translations = gather_translations(self._decoded.pop(stage))
        self._score(stage, translations)

    def _score(self, stage: str, translations: dict[int, str]) -> None:
        datamodule = self.trainer.datamodule
        references = datamodule.references(stage)
        if translations and max(translations) >= len(references):
            raise ValueError(
                f"{stage}: decoded line index {max(translations)} but only {len(references)} "
                "references: Batch.indices must index the split's references"
            )
        lines = sorted(translations)  # all lines, unless limit_{stage}_batches cut the split
        hyps, refs = [translations[i] for i in lines], [references[i] for i in lines]
        scores = corpus_scores(hyps, refs, bleu_tokenize=self.hparams.bleu_tokenize)
        self.log(f"{stage}/bleu", scores.bleu, sync_dist=False, prog_bar=stage == "val")
        self.log(f"{stage}/chrf", scores.chrf, sync_dist=False)
        self.log(f"{stage}/ter", scores.ter, sync_dist=False)
        signatures = {f"sacrebleu/{stage}_bleu": scores.bleu_signature,
                      f"sacrebleu/{stage}_chrf": scores.chrf_signature,
                      f"sacrebleu/{stage}_ter": scores.ter_signature}  # fmt: skip
        for logger in self.loggers:
            logger.log_hyperparams(signatures)
        if self.trainer.is_global_zero:
            coverage = f"{len(lines)}/{len(references)} lines"
            log.info("%s step %d (%s): BLEU %.2f [%s] chrF %.2f [%s]", stage, self.global_step,
                     coverage, scores.bleu, scores.bleu_signature, scores.chrf,
                     scores.chrf_signature)  # fmt: skip
            self._log_samples(stage, datamodule.sources(stage), refs, hyps, lines)

    def _log_samples(
        self,
        stage: str,
        sources: Sequence[str],
        refs: Sequence[str],
        hyps: Sequence[str],
        lines: Sequence[int],
    ) -> None:
        rows = [
            [self.global_step, lines[k], sources[lines[k]], refs[k], hyps[k]]
            for k in range(min(self.hparams.num_sample_translations, len(lines)))
        ]
        for _, line, src, ref, hyp in rows:
            log.info("%s line %d\n  SRC %s\n  REF %s\n  HYP %s", stage, line, src, ref, hyp)
        for logger in self.loggers:
            if isinstance(logger, WandbLogger):
                columns = ["step", "line", "source", "reference", "hypothesis"]
                logger.log_text(key=f"{stage}/samples", columns=columns, data=rows)
