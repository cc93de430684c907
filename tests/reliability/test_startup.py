"""What can be known wrong is said at start, before any data is prepared, in one sentence
naming the option: out-of-range numbers, a finished run resumed, splits left empty, a metric
that can never be logged, missing files and options."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from transformer_mt.utils.config_check import ConfigError
from transformer_mt.utils.errors import StartupError
from transformer_mt.utils.startup import LOGGED_METRICS

from .conftest import compose_config, run_python


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("data.max_tokens=-5", r"data\.max_tokens=-5: expected a positive number of tokens"),
        ("data.max_len=-1", r"data\.max_len=-1: expected a positive number"),
        ("data.max_len=900", r"data\.max_len=900 exceeds data\.max_tokens=600"),
        ("data.num_workers=-1", r"data\.num_workers=-1: expected 0"),
        ("data.tokenizer.vocab_size=4", r"data\.tokenizer\.vocab_size=4: expected at least 8"),
        ("trainer.max_steps=0", r"trainer\.max_steps=0: expected a positive number of updates"),
        ("trainer.val_check_interval=0", r"trainer\.val_check_interval=0: expected"),
        ("module.label_smoothing=1.5", r"module\.label_smoothing=1\.5: expected in \[0, 1\)"),
        ("optimizer.lr=-0.1", r"optimizer\.lr=-0\.1: expected a positive rate"),
        ("decoding=beam decoding.beam_size=0", r"decoding: decoding\.beam_size must be >= 1"),
    ],
)
def test_out_of_range_settings_stop_the_run_before_any_data(
    override, message, train_cfg, train_entry, tmp_path
) -> None:
    cache = tmp_path / "fresh-cache"
    with pytest.raises(ConfigError, match=message):
        train_entry.train(train_cfg(*override.split(), f"paths.cache_dir={cache}"))
    assert not cache.exists()


def test_a_finished_run_resumed_says_so_and_exits_0(tiny_run, train_cfg, train_entry, caplog):
    last = tiny_run / "checkpoints" / "last.ckpt"
    cfg = train_cfg(f"ckpt_path={last}", "trainer.max_steps=4")
    with caplog.at_level(logging.INFO):
        assert train_entry.main(cfg) is None  # returns: exit status 0
    assert f"{last} is at update 4 and trainer.max_steps=4: nothing left to train" in caplog.text
    assert not (Path(cfg.paths.output_dir) / "checkpoints").exists()


def test_resuming_past_the_last_validation_is_refused(tiny_run, train_cfg, train_entry) -> None:
    last = tiny_run / "checkpoints" / "last.ckpt"  # update 4; validation every 2 batches
    cfg = train_cfg(f"ckpt_path={last}", "trainer.max_steps=5", "trainer.val_check_interval=4")
    with pytest.raises(StartupError, match=r"val_check_interval=4 .* \(resumed at 4\)"):
        train_entry.train(cfg)


def test_a_split_emptied_by_max_len_says_how_many_pairs_and_why(train_cfg, train_entry) -> None:
    with pytest.raises(
        StartupError,
        match=r"train: all 600 pairs are longer than "
        r"data\.max_len=3 tokens \(the shortest has \d+",
    ):
        train_entry.train(train_cfg("data.max_len=3"))  # fmt: skip


def test_a_val_split_of_empty_lines_is_refused(train_cfg, train_entry, tmp_path) -> None:
    blank = tmp_path / "val.blank"
    blank.write_text("\n" * 30)
    with pytest.raises(StartupError, match=r"val: no pairs: all 30 lines of .* empty side"):
        train_entry.train(train_cfg(f"data.corpus.val_tgt={blank}"))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["trainer.limit_val_batches=0"], r"limit_val_batches=0 turns validation off"),
        (["trainer.val_check_interval=10"], r"val_check_interval=10 batches but training "
                                            r"stops at trainer\.max_steps=4"),
        (["optimized_metric=val/blue"], r"'val/blue' is not logged by train\.py; one of: "),
        (["optimized_metric=test/bleu"], r"optimized_metric=test/bleu needs test=true"),
        (["train=false"], r"optimized_metric=val/bleu needs train=true"),
    ],
)  # fmt: skip
def test_an_optimized_metric_that_is_never_logged_fails_at_start(
    overrides, message, train_cfg, train_entry
) -> None:
    with pytest.raises(ConfigError, match=message):
        train_entry.check(train_cfg(*overrides))


def test_the_metric_names_checked_are_those_a_run_logs(tiny_run: Path) -> None:
    logged = set(json.loads((tiny_run / "metrics.json").read_text()))
    assert logged == {m for m in LOGGED_METRICS if not m.startswith("test/")}


def test_a_missing_ckpt_path_is_one_line_with_an_example(train_cfg, train_entry, tmp_path):
    cfg = train_cfg(f"ckpt_path={tmp_path / 'nope.ckpt'}")
    with pytest.raises(SystemExit) as stop:
        train_entry.main(cfg)
    assert str(stop.value).splitlines()[0] == (
        f"error: ckpt_path={tmp_path / 'nope.ckpt'}: no such file; resume from a run's "
        "checkpoint, e.g. ckpt_path=logs/train/runs/<run>/checkpoints/last.ckpt"
    )


def test_missing_custom_corpus_files_are_all_named_with_their_option(train_cfg, train_entry):
    from transformer_mt.data.readers import CorpusError

    cfg = train_cfg("data.corpus.train_src=/nope/train.xa", "data.corpus.val_tgt=/nope/val.xb")
    with pytest.raises(
        CorpusError,
        match=r"(?s)2 corpus file.*/nope/train\.xa.*/nope/val\.xb"
        r".*data\.corpus\.train_src, data\.corpus\.val_tgt",
    ):
        train_entry.train(cfg)  # fmt: skip


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ([], r"no model: give ckpt_path=.*e\.g\. python evaluate\.py ckpt_path=logs/train/runs/"
             r"<run>/checkpoints/last\.ckpt input=source\.txt\nnothing to translate: give "
             r"input=<text file"),
        (["ckpt_path=x.ckpt"], r"^error: nothing to translate: give input=<text file, one "
                               r"sentence per line>.*e\.g\. python evaluate\.py"),
        (["ckpt_path=x.ckpt", "input=/nope.txt"], r"^error: input=/nope\.txt: no such file"),
        (["ckpt_path=x.ckpt", "split=val"], r"split=val needs data=<corpus>"),
        (["ckpt_path=x.ckpt", "input=README.md", "max_tokens=-1"], r"max_tokens=-1: expected"),
    ],
)  # fmt: skip
def test_evaluate_says_what_is_missing_in_one_line(overrides, message, evaluate_entry, tmp_path):
    cfg = compose_config("evaluate", [f"paths.output_dir={tmp_path}", *overrides])
    with pytest.raises(SystemExit, match=message):
        evaluate_entry.main(cfg)


def test_no_data_lists_every_file_where_and_how_after_a_short_header(tmp_path: Path) -> None:
    """As a user sees it: a fresh interpreter, Multi30k absent, downloads off."""
    run, cache = tmp_path / "run", tmp_path / "cache"
    process = run_python(
        "train.py", "data=multi30k_en_de", f"paths.data_dir={tmp_path / 'corpora'}",
        "data.corpus.download=false", f"paths.cache_dir={cache}", f"hydra.run.dir={run}",
    )  # fmt: skip
    _, err = process.communicate(timeout=300)
    assert process.returncode == 1
    assert "Traceback" not in err and len(err.splitlines()) < 16, err
    folder = tmp_path / "corpora" / "multi30k"
    for name in ("train.en.gz", "train.de.gz", "val.en.gz", "val.de.gz"):
        assert str(folder / name) in err
    assert "no data: 4 corpus file(s) missing" in err
    assert "TRANSFORMER_MT_DATA" in err and "data.corpus.download=true" in err
    assert f"(this run's config and log: {run})" in err
    assert len((run / "config_tree.log").read_text().splitlines()) > 100  # the full tree
    assert "Traceback" in (run / "train.log").read_text()  # kept for a bug report
    assert not cache.exists()
