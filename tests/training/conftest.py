"""Fixtures for the end-to-end tests: a small Multi30k slice and the real configs, shrunk."""

import gzip
from collections.abc import Callable
from pathlib import Path

import pytest
from omegaconf import DictConfig

from ..conftest import ROOT, compose_config, load_entry_point  # noqa: F401 (re-exported)


@pytest.fixture(scope="session")
def tiny_corpus(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """400 train, 40 val and 20 test pairs of Multi30k en-de (test taken from val's tail)."""
    folder = tmp_path_factory.mktemp("tiny_m30k")
    files = {}
    for lang in ("en", "de"):
        train = _gz_lines(shared_data / "multi30k" / f"train.{lang}.gz")[:400]
        val = _gz_lines(shared_data / "multi30k" / f"val.{lang}.gz")
        for split, lines in (("train", train), ("val", val[:40]), ("test", val[-20:])):
            path = folder / f"{split}.{lang}"
            path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
            files[f"{split}.{lang}"] = path
    return files


def _gz_lines(path: Path) -> list[str]:
    return gzip.decompress(path.read_bytes()).decode("utf-8").splitlines()


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One SentencePiece / prepared-data cache for the whole session."""
    return tmp_path_factory.mktemp("cache")


def data_overrides(corpus: dict[str, Path]) -> list[str]:
    splits = ("train", "val", "test")
    files = [
        f"data.corpus.{s}_{side}={corpus[f'{s}.{lang}']}"
        for s in splits
        for side, lang in (("src", "en"), ("tgt", "de"))
    ]
    return [
        "data=custom",
        *files,
        "data.corpus.src_lang=en",
        "data.corpus.tgt_lang=de",
        "data.tokenizer.vocab_size=250",
        "data.max_tokens=1500",
        "data.num_workers=0",
    ]


TINY_TRAINING = [
    "model=tiny",
    "model.d_model=32",
    "model.d_ff=64",
    "model.num_heads=2",
    "model.num_encoder_layers=1",
    "model.num_decoder_layers=1",
    "model.dropout=0.1",
    "scheduler=inverse_sqrt",
    "scheduler.lr_lambda.warmup_steps=4",
    "optimizer.lr=0.003",
    "decoding.max_len_a=0.5",
    "decoding.max_len_b=2",
    "trainer.max_steps=6",
    "trainer.val_check_interval=3",
    "trainer.log_every_n_steps=1",
    "trainer.num_sanity_val_steps=1",
    "callbacks.rich_progress_bar=null",
    "+trainer.enable_progress_bar=false",
    "+trainer.enable_model_summary=false",
    "logger=csv",
]


@pytest.fixture
def tiny_overrides(
    tiny_corpus: dict[str, Path], cache_dir: Path, shared_data: Path, tmp_path: Path
) -> list[str]:
    """Command-line overrides that shrink the real train config to a seconds-long CPU run."""
    paths = [
        f"paths.data_dir={shared_data}",
        f"paths.cache_dir={cache_dir}",
        f"paths.log_dir={tmp_path / 'logs'}",
    ]
    return [*data_overrides(tiny_corpus), *TINY_TRAINING, *paths]


@pytest.fixture
def train_cfg(tiny_overrides: list[str], tmp_path: Path) -> Callable[..., DictConfig]:
    """The real train config shrunk (``tiny_overrides``), writing under tmp_path/run."""

    def make(*overrides: str, out: Path | None = None) -> DictConfig:
        output = f"paths.output_dir={out or tmp_path / 'run'}"
        return compose_config("train", [*tiny_overrides, output, *overrides])

    return make


@pytest.fixture
def eval_cfg(tmp_path: Path, shared_data: Path, cache_dir: Path) -> Callable[..., DictConfig]:
    """The real evaluate config, writing under tmp_path/eval."""

    def make(*overrides: str) -> DictConfig:
        paths = [
            f"paths.data_dir={shared_data}",
            f"paths.cache_dir={cache_dir}",
            f"paths.output_dir={tmp_path / 'eval'}",
            f"paths.log_dir={tmp_path / 'logs'}",
        ]
        return compose_config("evaluate", [*paths, "max_tokens=500", *overrides])

    return make


@pytest.fixture
def compose_cfg(tmp_path: Path) -> Callable[..., DictConfig]:
    """Compose a config by name with overrides (output paths under tmp_path)."""

    def make(name: str, *overrides: str) -> DictConfig:
        paths = [f"paths.output_dir={tmp_path / 'out'}", f"paths.log_dir={tmp_path / 'logs'}"]
        return compose_config(name, [*paths, *overrides])

    return make


@pytest.fixture(scope="session")
def pretrain_word2vec(
    tiny_corpus: dict[str, Path], cache_dir: Path, shared_data: Path
) -> Callable[[Path, int], Path]:
    """Run pretrain_embeddings.py on the tiny corpus into a folder, as a user would."""
    entry = load_entry_point("pretrain_embeddings")

    def run(out: Path, d_model: int) -> Path:
        overrides = [
            *data_overrides(tiny_corpus),
            f"paths.data_dir={shared_data}",
            f"paths.cache_dir={cache_dir}",
            f"d_model={d_model}",
            "embeddings.min_count=2",
            "embeddings.epochs=2",
            f"out_dir={out}",
        ]
        entry.main(compose_config("pretrain_embeddings", overrides))
        return out

    return run
