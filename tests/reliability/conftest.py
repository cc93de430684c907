"""Fixtures for the fault tests: a synthetic corpus on disk, the real configs shrunk, one real
training run whose checkpoints the tests damage, craft and kill (no shared corpora needed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
from omegaconf import DictConfig

from transformer_mt.data.synthetic import synthetic_pairs

from ..conftest import ROOT, compose_config, load_entry_point  # noqa: F401 (re-exported)

TINY = [
    "model=tiny", "model.d_model=32", "model.d_ff=64", "model.num_heads=2",
    "model.num_encoder_layers=1", "model.num_decoder_layers=1",
    "scheduler=inverse_sqrt", "scheduler.lr_lambda.warmup_steps=2", "optimizer.lr=0.003",
    "decoding.max_len_a=0.5", "decoding.max_len_b=2",
    "trainer.max_steps=4", "trainer.val_check_interval=2", "trainer.num_sanity_val_steps=0",
    "callbacks.rich_progress_bar=null", "+trainer.enable_progress_bar=false",
    "+trainer.enable_model_summary=false", "logger=csv", "test=false",
]  # fmt: skip


@pytest.fixture(scope="session")
def synthetic_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """600 train and 30 val pairs of the synthetic languages as line-aligned text files."""
    folder = tmp_path_factory.mktemp("synthetic")
    files = {}
    for split, pairs in (("train", synthetic_pairs(600, 0)), ("val", synthetic_pairs(30, 1))):
        for side, index in (("src", 0), ("tgt", 1)):
            path = folder / f"{split}.{side}"
            path.write_text("".join(pair[index] + "\n" for pair in pairs), encoding="utf-8")
            files[f"{split}_{side}"] = path
    return files


def data_overrides(files: dict[str, Path]) -> list[str]:
    return [
        "data=custom",
        *(f"data.corpus.{key}={path}" for key, path in files.items()),
        "data.corpus.src_lang=xa",
        "data.corpus.tgt_lang=xb",
        "data.tokenizer.vocab_size=100",
        "data.max_tokens=600",
        "data.num_workers=0",
    ]


@pytest.fixture(scope="session")
def reliability_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def train_cfg(
    synthetic_files: dict[str, Path], reliability_cache: Path, tmp_path: Path
) -> Callable[..., DictConfig]:
    """The real train config shrunk to a seconds-long run on the synthetic corpus."""

    def make(*overrides: str, out: Path | None = None) -> DictConfig:
        paths = [
            f"paths.data_dir={tmp_path / 'data'}",
            f"paths.cache_dir={reliability_cache}",
            f"paths.log_dir={tmp_path / 'logs'}",
            f"paths.output_dir={out or tmp_path / 'run'}",
        ]
        return compose_config("train", [*data_overrides(synthetic_files), *TINY, *paths,
                                        *overrides])  # fmt: skip

    return make


@pytest.fixture(scope="session")
def tiny_run(
    synthetic_files: dict[str, Path],
    reliability_cache: Path,
    tmp_path_factory: pytest.TempPathFactory,
    train_entry: ModuleType,
) -> Path:
    """The directory of one real 4-update run (checkpoints at updates 2 and 4, last.ckpt;
    the metrics it returned in metrics.json)."""
    out = tmp_path_factory.mktemp("tiny_run")
    paths = [f"paths.cache_dir={reliability_cache}", f"paths.output_dir={out}",
             f"paths.data_dir={out / 'data'}", f"paths.log_dir={out / 'logs'}"]  # fmt: skip
    cfg = compose_config("train", [*data_overrides(synthetic_files), *TINY, *paths])
    (out / "metrics.json").write_text(json.dumps(train_entry.train(cfg)))
    return out


def run_python(*args: str, env: dict[str, str] | None = None, **kwargs) -> subprocess.Popen:
    """Start ``python <args>`` in the repository root as a user would (output captured)."""
    environment = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    environment.pop("HYDRA_FULL_ERROR", None)
    return subprocess.Popen([sys.executable, *args], cwd=ROOT, env=environment, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)  # fmt: skip
