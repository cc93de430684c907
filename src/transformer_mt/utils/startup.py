"""Start-up checks for train.py and evaluate.py: what is known to fail is said before any work.

Without them a negative ``max_tokens`` surfaced after data preparation, and a run that could
train or validate nothing (every pair filtered by ``max_len``, a finished run resumed,
validation turned off) ended in ``KeyError: optimized_metric='val/bleu' was not logged``.
Each check names the option, the value and what to do.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from transformer_mt.data.corpus import Multi30k
from transformer_mt.data.readers import CorpusError
from transformer_mt.formats.lightning import load_checkpoint
from transformer_mt.utils.errors import StartupError
from transformer_mt.utils.io import remove_stale_temporaries

log = logging.getLogger(__name__)

# what TranslationModule logs into trainer.callback_metrics (train.py returns one of them)
LOGGED_METRICS = ("train/loss",) + tuple(
    f"{stage}/{name}"
    for stage in ("val", "test")
    for name in ("loss", "ppl", "bleu", "chrf", "ter")
)
# ckpt_path values Lightning resolves itself ("last": the newest last.ckpt of the callbacks)
LIGHTNING_CHOICES = ("last", "best", "hpc", "registry")
_ABSENT = object()


class NothingToTrain(Exception):  # noqa: N818 - not an error: the run is already complete
    """The resumed checkpoint is already at ``trainer.max_steps``."""


def _select(config: Mapping[str, Any], path: str) -> Any:
    node: Any = config
    for key in path.split("."):
        if not isinstance(node, Mapping) or key not in node:
            return _ABSENT
        node = node[key]
    return node


def _count(minimum: int, optional: bool = False) -> Callable[[Any], bool]:
    def test(value: Any) -> bool:
        if value is None:
            return optional
        return isinstance(value, int) and not isinstance(value, bool) and value >= minimum

    return test


def _steps(value: Any) -> bool:
    return value == -1 or _count(1)(value)


def _interval(value: Any) -> bool:
    """Lightning's val_check_interval: a batch count, or a fraction of an epoch."""
    return _count(1)(value) or (isinstance(value, float) and 0.0 < value <= 1.0)


def _limit(value: Any) -> bool:
    return _count(0, optional=True)(value) or (isinstance(value, float) and 0.0 <= value <= 1.0)


def _between(low: float, high: float) -> Callable[[Any], bool]:
    def test(value: Any) -> bool:
        number = isinstance(value, int | float) and not isinstance(value, bool)
        return number and low <= value < high

    return test


RANGES: tuple[tuple[str, Callable[[Any], bool], str], ...] = (
    ("data.max_tokens", _count(1), "a positive number of tokens per batch, e.g. 4096"),
    ("data.max_len", _count(1), "a positive number of tokens, e.g. 256"),
    ("data.eval_max_tokens", _count(1, optional=True), "null or a positive number of tokens"),
    ("data.max_sentences", _count(1, optional=True), "null or a positive number of pairs"),
    ("data.train_pairs", _count(1, optional=True), "null or a positive number of pairs"),
    ("data.num_workers", _count(0), "0 (load in the main process) or more workers"),
    ("data.tokenizer.vocab_size", _count(8), "at least 8 pieces, e.g. 8000"),
    ("data.tokenizer.input_sentence_size", _count(0), "0 (all) or a number of sentences"),
    ("trainer.max_steps", _steps, "a positive number of updates (or -1: max_epochs decides)"),
    ("trainer.max_epochs", lambda v: v is None or _steps(v), "-1, null or a positive count"),
    ("trainer.val_check_interval", _interval, "a batch count >= 1 or an epoch fraction in (0, 1]"),
    ("trainer.accumulate_grad_batches", _count(1), "a positive number of batches per update"),
    ("trainer.log_every_n_steps", _count(1), "a positive number of updates"),
    ("trainer.limit_train_batches", _limit, "null, a batch count >= 1 or a fraction in (0, 1]"),
    ("trainer.limit_val_batches", _limit, "null, a batch count or a fraction in [0, 1]"),
    ("trainer.limit_test_batches", _limit, "null, a batch count or a fraction in [0, 1]"),
    ("trainer.gradient_clip_val", lambda v: v is None or _between(0, float("inf"))(v), ">= 0"),
    ("module.label_smoothing", _between(0.0, 1.0), "in [0, 1), e.g. 0.1"),
    ("optimizer.lr", lambda v: _between(0, float("inf"))(v) and v > 0, "a positive rate"),
    ("seed", _between(0, 2**32), "an integer in [0, 2**32)"),
)


def range_errors(config: Mapping[str, Any]) -> list[str]:
    """Settings outside their valid range (settings absent from this config are skipped)."""
    errors = []
    for path, test, expected in RANGES:
        value = _select(config, path)
        if value is not _ABSENT and not test(value):
            errors.append(f"{path}={value!r}: expected {expected}")
    if _select(config, "trainer.limit_train_batches") == 0:
        errors.append("trainer.limit_train_batches=0 trains on nothing: null or a count >= 1")
    if _select(config, "trainer.max_epochs") == 0:
        errors.append("trainer.max_epochs=0 trains nothing: -1 (max_steps decides) or a count")
    max_len, max_tokens = _select(config, "data.max_len"), _select(config, "data.max_tokens")
    if _count(1)(max_len) and _count(1)(max_tokens) and max_len > max_tokens:
        errors.append(f"data.max_len={max_len} exceeds data.max_tokens={max_tokens}: no pair fits")
    errors += _position_errors(config, max_len)
    return errors


def device_errors(trainer: Mapping[str, Any]) -> list[str]:
    """An accelerator this machine lacks, or more devices than it has (before any data work:
    Lightning would only say so after the data is prepared)."""
    accelerator, devices = trainer.get("accelerator"), trainer.get("devices")
    if accelerator in ("gpu", "cuda"):
        available = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if available == 0:
            return [f"trainer.accelerator={accelerator} but this machine has no CUDA GPU: "
                    "train on the CPU with trainer=default"]  # fmt: skip
        kind = "GPU"
    elif accelerator == "cpu":
        available, kind = os.cpu_count() or 1, "CPU core"
    else:
        return []
    if isinstance(devices, int) and not isinstance(devices, bool) and devices > available:
        return [f"trainer.devices={devices} but this machine has {available} {kind}(s): use "
                f"trainer.devices={available} or fewer (-1 takes them all)"]  # fmt: skip
    return []


def _position_errors(config: Mapping[str, Any], max_len: Any) -> list[str]:
    """A learned position table shorter than the training pairs it must represent."""
    rows = _select(config, "model.max_positions")
    learned = _select(config, "model.pos_enc") == "learned"
    if learned and _count(1)(rows) and _count(1)(max_len) and rows < max_len:
        return [
            f"model.max_positions={rows} is below data.max_len={max_len}: learned positions "
            f"cannot represent the longer training pairs; raise model.max_positions to at "
            f"least {max_len} or lower data.max_len"
        ]
    return []


def missing_values(cfg: DictConfig) -> list[str]:
    """Mandatory ``???`` values left unset, e.g. data=custom without its file paths."""
    return [
        f"{key}: required (???), e.g. {key}=<value>" for key in sorted(OmegaConf.missing_keys(cfg))
    ]


def _first_validation(trainer: Mapping[str, Any], start_step: int) -> str | None:
    """Why validation would never run in this config (None if it does, or cannot tell)."""
    if trainer.get("fast_dev_run"):
        return None
    if trainer.get("limit_val_batches") == 0:
        return "trainer.limit_val_batches=0 turns validation off"
    interval, max_steps = trainer.get("val_check_interval"), trainer.get("max_steps")
    accumulate = trainer.get("accumulate_grad_batches") or 1
    if trainer.get("check_val_every_n_epoch") is not None or not _count(1)(interval):
        return None  # validation at epoch ends, or a fraction of an epoch: it runs
    if not _count(1)(max_steps):
        return None
    first = (start_step * accumulate // interval + 1) * interval  # batches, counted across epochs
    if first > max_steps * accumulate:
        return (
            f"trainer.val_check_interval={interval} batches but training stops at "
            f"trainer.max_steps={max_steps}"
            + (f" (resumed at {start_step})" if start_step else "")
            + ": validation never runs; lower val_check_interval"
        )
    return None


def optimized_metric_problem(config: Mapping[str, Any], start_step: int = 0) -> str | None:
    """Why ``optimized_metric`` can never be logged by this config (None if it can)."""
    name = config.get("optimized_metric")
    if not name:
        return None
    stage, _, metric = name.partition("/")
    # a test set logs under its own name (test_2016_flickr/bleu, ...)
    test_set = stage not in ("train", "val") and metric in ("loss", "ppl", "bleu", "chrf", "ter")
    if name not in LOGGED_METRICS and not test_set:
        return (
            f"optimized_metric={name!r} is not logged by train.py; one of: "
            + ", ".join(LOGGED_METRICS)
            + " (or <test set>/bleu, ... for a named test set)"
        )
    stage = "test" if test_set else stage
    if stage in ("train", "val") and not config.get("train"):
        return f"optimized_metric={name} needs train=true"
    if stage == "test" and not config.get("test"):
        return f"optimized_metric={name} needs test=true"
    reason = _first_validation(config.get("trainer") or {}, start_step) if stage == "val" else None
    if reason:
        return f"optimized_metric={name} would never be logged: {reason} (or optimized_metric=null)"
    return None


def resume_path(config: Mapping[str, Any]) -> str | None:
    """The checkpoint a run resumes from: ``ckpt_path``, else (``auto_resume``) the run
    directory's own ``checkpoints/last.ckpt`` when a previous start of this job left one."""
    if config.get("ckpt_path"):
        return str(config["ckpt_path"])
    output_dir = (config.get("paths") or {}).get("output_dir")
    last = Path(output_dir) / "checkpoints" / "last.ckpt" if output_dir else None
    if config.get("auto_resume") and config.get("train", True) and last and last.is_file():
        log.info("auto_resume: resuming from %s (this run directory's last checkpoint)", last)
        return str(last)
    return None


def resume_step(config: Mapping[str, Any], ckpt: str | None = None) -> int:
    """The update a resume from `ckpt` starts from (0 without one), after verifying the
    checkpoint: an unsafe, damaged or foreign file stops here, before any data is prepared.

    Raises:
        FileNotFoundError / CheckpointError: naming the file; NothingToTrain: already done.
    """
    if not ckpt or ckpt in LIGHTNING_CHOICES:
        return 0  # Lightning finds the file; AtomicCheckpointIO still verifies it on load
    path = Path(ckpt)
    if path.is_dir():
        hint = next(iter(sorted(path.rglob("last.ckpt"))), path / "checkpoints" / "last.ckpt")
        raise FileNotFoundError(f"ckpt_path={ckpt} is a directory: resume takes a file, e.g. "
                                f"ckpt_path={hint}")  # fmt: skip
    if not path.is_file():
        raise FileNotFoundError(
            f"ckpt_path={ckpt}: no such file; resume from a run's checkpoint, e.g. "
            "ckpt_path=logs/train/runs/<run>/checkpoints/last.ckpt"
        )
    step = int(load_checkpoint(path).get("global_step") or 0)
    max_steps = (config.get("trainer") or {}).get("max_steps")
    if config.get("train") and _count(1)(max_steps) and step >= max_steps:
        raise NothingToTrain(
            f"{path} is at update {step} and trainer.max_steps={max_steps}: nothing left to "
            f"train; to go on, resume with a larger trainer.max_steps (e.g. {2 * max_steps})"
        )
    return step


def preflight(cfg: DictConfig) -> str | None:
    """train.py's checks that read files, still before any data is prepared: this machine's
    devices, the resume checkpoint (verified: an unsafe or damaged one stops here), validation
    reachable from its step, every corpus file; leftovers of killed checkpoint saves are
    removed. Returns the checkpoint to resume from (`resume_path`), or None."""
    container = OmegaConf.to_container(cfg, resolve=True)
    if problems := device_errors(container.get("trainer") or {}):  # this machine's devices
        raise StartupError("; ".join(problems))
    ckpt = resume_path(container)
    step = resume_step(container, ckpt)
    if problem := optimized_metric_problem(container, step):
        raise StartupError(problem)
    check_data_files(cfg)
    for callback in (container.get("callbacks") or {}).values():
        if isinstance(callback, dict) and callback.get("dirpath"):
            remove_stale_temporaries(Path(callback["dirpath"]))
    return ckpt


def optimized_value(name: str | None, metrics: dict[str, float]) -> float | None:
    """The value of ``optimized_metric`` `name` (None when unset or nothing was trained)."""
    if not name or not metrics:
        return None
    if name not in metrics:
        raise StartupError(
            f"optimized_metric={name} was not logged by this run (logged: "
            f"{', '.join(sorted(metrics))}); a test/ metric needs a test split in the data"
        )
    return metrics[name]


def _missing_files(corpus: Any) -> list[Path]:
    """Files of the splits a run needs; a Multi30k test set may be missing (it is optional)."""
    # Multi30k's test sets are optional (absent ones are listed); other corpora's are given
    # by path, and a missing one is a mistake
    splits = ("train", "val") if isinstance(corpus, Multi30k) else corpus.split_names()
    sources = [corpus.source(split) for split in splits]
    return [p for s in sources if s is not None for p in s.files if not p.is_file()]


def _no_data_message(cfg: DictConfig, corpus: Any, missing: list[Path], failure: str | None) -> str:
    lines = [f"no data: {len(missing)} corpus file(s) missing:", *(f"  {p}" for p in missing)]
    if isinstance(corpus, Multi30k):
        data_dir = OmegaConf.select(cfg, "paths.data_dir")
        lines += [
            f"They were looked for in {corpus.folder}, i.e. under paths.data_dir={data_dir}, "
            "which the environment variable TRANSFORMER_MT_DATA sets (unset: ./data where "
            "you run train.py).",
            "Either set TRANSFORMER_MT_DATA=<the folder that contains multi30k/>, or "
            + (
                f"download them by hand (the automatic download failed: {failure})"
                if failure
                else "let train.py download Multi30k there: data.corpus.download=true (needs "
                "the network; the files are sha256-verified)."
            ),
        ]
    else:
        given = OmegaConf.to_container(cfg.data.corpus, resolve=True)
        keys = [f"data.corpus.{k}" for k, v in given.items() if v and Path(str(v)) in missing]
        lines.append(f"Check {', '.join(keys) or 'the data.corpus paths'} (paths are relative "
                     "to where you run train.py).")  # fmt: skip
    return "\n".join(lines)


def check_data_files(cfg: DictConfig) -> None:
    """Every corpus file a run needs is there (or is downloaded now); otherwise one error lists
    every missing file, where it was looked for and how to provide it."""
    corpus = instantiate(cfg.data.corpus)
    missing = _missing_files(corpus)
    if not missing:
        return
    failure = None
    if isinstance(corpus, Multi30k) and corpus.download:
        try:
            corpus.ensure_files()
            return
        except CorpusError as err:
            failure = str(err)
    raise CorpusError(_no_data_message(cfg, corpus, missing, failure))


def check_prepared_splits(datamodule: Any, validate: bool = True) -> None:
    """After preparation, before training: a split left empty by ``max_len`` or by empty lines
    is an error saying how many pairs there were and why none is left."""
    max_len = datamodule.max_len
    train = datamodule.splits["train"]
    if len(train) == 0:
        raise StartupError(_empty_split("train", train))
    src_len, tgt_len = train.lengths()
    longer_side = np.maximum(src_len, tgt_len)
    if not (longer_side <= max_len).any():
        shortest = int(longer_side.min())
        raise StartupError(
            f"train: all {len(train)} pairs are longer than data.max_len={max_len} tokens (the "
            f"shortest has {shortest} on its longer side, </s> included): nothing to train on; "
            f"raise data.max_len, e.g. data.max_len={max(256, shortest)}"
        )
    val = datamodule.splits.get("val")
    if validate and val is not None and len(val) == 0:
        raise StartupError(_empty_split("val", val))


def _empty_split(name: str, split: Any) -> str:
    meta = split.meta
    return (
        f"{name}: no pairs: all {meta['lines']} lines of {', '.join(meta['files'])} have an "
        "empty side (source or target blank), so nothing is left"
    )


def check_evaluate(config: Mapping[str, Any]) -> None:
    """evaluate.py's inputs, before a model is loaded: a model, something to translate, files
    that exist; each problem one line naming the option, with an example."""
    errors = []
    if not config.get("ckpt_path") and not config.get("model_dir"):
        errors.append(
            "no model: give ckpt_path=<.ckpt file, list of them or run dir> or model_dir="
            "<release or CTranslate2 folder>, e.g. python evaluate.py "
            "ckpt_path=logs/train/runs/<run>/checkpoints/last.ckpt input=source.txt"
        )
    if not config.get("input") and not config.get("split"):
        errors.append(
            "nothing to translate: give input=<text file, one sentence per line> (reference="
            "<file> to score it) or split=val|test with data=<corpus>, e.g. python evaluate.py "
            "ckpt_path=<run dir> input=source.txt reference=reference.txt"
        )
    elif config.get("split") and not config.get("data"):
        errors.append(f"split={config['split']} needs data=<corpus>, e.g. data=multi30k_en_de")
    for key in ("input", "reference"):
        if config.get(key) and not Path(config[key]).is_file():
            errors.append(f"{key}={config[key]}: no such file")
    if not _count(1)(config.get("max_tokens")):
        errors.append(f"max_tokens={config.get('max_tokens')!r}: expected a positive number of "
                      "tokens per batch, e.g. max_tokens=4096")  # fmt: skip
    if not _count(1, optional=True)(config.get("average_last")):
        errors.append(f"average_last={config['average_last']!r}: expected null or a count >= 1")
    if errors:
        raise StartupError("\n".join(errors))
