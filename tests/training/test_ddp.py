"""train.py under DDP on the CPU (2 gloo processes): one run directory, and validation scores
equal to evaluate.py's on the same checkpoint in one process (every line once, in order)."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from transformer_mt.data.synthetic import synthetic_pairs

from .conftest import ROOT


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("synthetic")
    out = {}
    # 21 val lines: an odd count, so one rank's share is padded (the gather must drop it)
    for split, pairs in (("train", synthetic_pairs(300, 0)), ("val", synthetic_pairs(21, 1))):
        for side, index in (("src", 0), ("tgt", 1)):
            path = folder / f"{split}.{side}"
            path.write_text("".join(p[index] + "\n" for p in pairs), encoding="utf-8")
            out[f"{split}_{side}"] = path
    return out


def run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "1"}
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=240)  # fmt: skip


def data(files) -> list[str]:
    return [
        "data=custom",
        *(f"data.corpus.{k}={v}" for k, v in files.items()),
        "data.tokenizer.vocab_size=100",
        "data.max_tokens=300",
        "data.num_workers=0",
    ]


DECODING = ["decoding=greedy", "decoding.max_len_a=1.2", "decoding.max_len_b=5"]


def ddp_training(files, tmp_path, steps: int) -> list[str]:
    return [
        "train.py", *data(files), "model=tiny", "model.d_model=32", "model.d_ff=64",
        "model.num_heads=2", "model.num_encoder_layers=1", "model.num_decoder_layers=1",
        "scheduler=inverse_sqrt", "scheduler.lr_lambda.warmup_steps=5", "optimizer.lr=0.003",
        *DECODING, f"trainer.max_steps={steps}", f"trainer.val_check_interval={steps}",
        "trainer.num_sanity_val_steps=0", "trainer.devices=2", "+trainer.strategy=ddp",
        "callbacks.rich_progress_bar=null", "+trainer.enable_progress_bar=false",
        "+trainer.enable_model_summary=false", "logger=csv", "test=false",
        f"paths.cache_dir={tmp_path / 'cache'}",
    ]  # fmt: skip


def test_two_process_training_scores_as_one_process_evaluation(files, tmp_path):
    out = tmp_path / "run"
    decoding = DECODING
    result = run(*ddp_training(files, tmp_path, 30), f"hydra.run.dir={out}")
    assert result.returncode == 0, result.stderr[-4000:]
    assert "Initializing distributed: GLOBAL_RANK: 1, MEMBER: 2/2" in result.stderr
    # one run directory for the job: the second rank wrote into the first's, nowhere else
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "run"]
    with open(out / "csv" / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("val/bleu")]
    logged = {k: float(rows[-1][f"val/{k}"]) for k in ("bleu", "chrf", "ter")}
    scored = run(
        "evaluate.py", f"ckpt_path={out / 'checkpoints' / 'last.ckpt'}", "split=val",
        *data(files), *decoding, f"paths.cache_dir={tmp_path / 'cache'}",
        f"output_dir={tmp_path / 'eval'}", f"hydra.run.dir={tmp_path / 'eval'}",
    )  # fmt: skip
    assert scored.returncode == 0, scored.stderr[-4000:]
    scores = json.loads((tmp_path / "eval" / "scores.json").read_text())
    assert scores["num_sentences"] == 21
    assert {k: scores[k] for k in logged} == pytest.approx(logged, abs=1e-9)


def test_a_ddp_multirun_runs_each_job_once(files, tmp_path):
    """The second rank of each job must not start the sweep again."""
    sweep = tmp_path / "sweep"
    script, *overrides = ddp_training(files, tmp_path, 4)
    result = run(script, "-m", *overrides, "pos_enc=sinusoidal,rope", f"hydra.sweep.dir={sweep}")
    assert result.returncode == 0, result.stderr[-4000:]
    jobs = sorted(p.name for p in sweep.iterdir() if p.is_dir())
    assert jobs == ["0", "1"]
    for job, pos_enc in (("0", "sinusoidal"), ("1", "rope")):
        config = (sweep / job / ".hydra" / "config.yaml").read_text()
        assert f"pos_enc: {pos_enc}" in config
        assert (sweep / job / "checkpoints" / "last.ckpt").is_file()
    assert result.stderr.count("GLOBAL_RANK: 1, MEMBER: 2/2") == 2  # one second rank per job
