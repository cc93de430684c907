"""The entry points as a user runs them: a real Hydra multirun, and a config mistake."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
    }
    env |= {"OMP_NUM_THREADS": "1", "HYDRA_FULL_ERROR": "1"}
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)  # fmt: skip


def test_multirun_gives_each_setting_its_own_job_and_directory(tiny_overrides, tmp_path) -> None:
    sweep = tmp_path / "sweep"
    result = _run("train.py", "-m", *tiny_overrides, "test=false", "trainer.max_steps=3",
                  "pos_enc=sinusoidal,rope", f"hydra.sweep.dir={sweep}")  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    for job, pos_enc in ((0, "sinusoidal"), (1, "rope")):
        folder = sweep / str(job)
        config = yaml.safe_load((folder / ".hydra" / "config.yaml").read_text())
        assert config["model"]["pos_enc"] == pos_enc
        assert (folder / "config_tree.log").is_file()
        assert (folder / "checkpoints" / "last.ckpt").is_file()
        assert (folder / "csv" / "metrics.csv").read_text().count("val/bleu")


@pytest.mark.slow  # in-process twins in test_configs.py; this one pays a fresh interpreter
def test_a_misspelled_key_stops_the_run_before_any_work(tiny_overrides, tmp_path) -> None:
    out = tmp_path / "out"
    result = _run("train.py", *tiny_overrides, "+model.d_modle=64", f"hydra.run.dir={out}")
    assert result.returncode != 0
    assert "model.d_modle: unknown key (did you mean 'd_model'?)" in result.stderr
    assert not (out / "checkpoints").exists()
