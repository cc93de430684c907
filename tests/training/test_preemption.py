"""A job stopped by the cluster (SIGUSR1 before its time limit, SIGTERM on preemption) saves
last.ckpt after the current update and exits; started again with the same command it resumes
from its run directory by itself, and its loss curve is the uninterrupted one."""

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from transformer_mt.data.synthetic import synthetic_pairs

from .conftest import ROOT


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("synthetic")
    out = {}
    for split, pairs in (("train", synthetic_pairs(300, 0)), ("val", synthetic_pairs(8, 1))):
        for side, index in (("src", 0), ("tgt", 1)):
            path = folder / f"{split}.{side}"
            path.write_text("".join(p[index] + "\n" for p in pairs), encoding="utf-8")
            out[f"{split}_{side}"] = path
    return out


def command(files, tmp_path, run: Path) -> list[str]:
    return [sys.executable, str(ROOT / "train.py"), "data=custom",
            *(f"data.corpus.{k}={v}" for k, v in files.items()),
            "data.tokenizer.vocab_size=100", "data.max_tokens=300", "data.num_workers=0",
            "model=tiny", "model.d_model=32", "model.d_ff=64", "model.num_heads=2",
            "model.num_encoder_layers=1", "model.num_decoder_layers=1", "model.dropout=0.1",
            "scheduler=inverse_sqrt", "scheduler.lr_lambda.warmup_steps=5", "optimizer.lr=0.003",
            "decoding.max_len_a=0.5", "decoding.max_len_b=2", "trainer.max_steps=60",
            "trainer.val_check_interval=20", "trainer.log_every_n_steps=1",
            "trainer.num_sanity_val_steps=0", "callbacks.rich_progress_bar=null",
            "+trainer.enable_progress_bar=false",
            "+trainer.enable_model_summary=false", "logger=csv", "test=false",
            f"paths.cache_dir={tmp_path / 'cache'}", f"hydra.run.dir={run}"]  # fmt: skip


def curve(run: Path) -> dict[int, float]:
    with open(run / "csv" / "metrics.csv") as f:
        return {int(r["step"]): float(r["train/loss"]) for r in csv.DictReader(f)
                if r.get("train/loss")}  # fmt: skip


def start(cmd: list[str]) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)  # fmt: skip


@pytest.fixture(scope="module")
def uninterrupted(files, tmp_path_factory) -> dict[int, float]:
    """The loss curve of the same run never stopped."""
    tmp_path = tmp_path_factory.mktemp("whole")
    run = start(command(files, tmp_path, tmp_path / "run"))
    output, _ = run.communicate(timeout=240)
    assert run.returncode == 0, output[-3000:]
    return curve(tmp_path / "run")


@pytest.mark.parametrize("signum", [signal.SIGUSR1, signal.SIGTERM], ids=["USR1", "TERM"])
def test_signal_save_restart_gives_the_uninterrupted_curve(files, tmp_path, signum, uninterrupted):
    part = tmp_path / "part"
    job = start(command(files, tmp_path, part))
    log = part / "train.log"
    deadline = time.monotonic() + 240
    while not (log.is_file() and "val step 20" in log.read_text()):
        assert job.poll() is None and time.monotonic() < deadline, job.stdout.read()[-3000:]
        time.sleep(0.05)
    job.send_signal(signum)
    output, _ = job.communicate(timeout=240)
    assert job.returncode == 0, output[-3000:]
    assert "preempted at update" in log.read_text()
    assert (part / "checkpoints" / "last.ckpt").is_file()
    stopped = max(curve(part))
    assert 20 <= stopped < 59  # stopped early, after the signal (steps count from 0)
    again = start(command(files, tmp_path, part))  # the same command: resumes by itself
    output, _ = again.communicate(timeout=240)
    assert again.returncode == 0, output[-3000:]
    assert "auto_resume: resuming from" in log.read_text()
    assert curve(part) == uninterrupted and max(uninterrupted) == 59


def test_the_slurm_launcher_composes_the_cluster_settings():
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=[
            "hydra/launcher=slurm", "hydra.launcher.nodes=2", "hydra.launcher.partition=gpu",
            "experiment=wmt14_en_de_base", "trainer.num_nodes=2",
        ], return_hydra_config=True)  # fmt: skip
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert (launcher.nodes, launcher.gpus_per_node, launcher.tasks_per_node) == (2, 8, 8)
    assert launcher.partition == "gpu" and launcher.signal_delay_s == 120
    assert launcher.timeout_min == 4320 and launcher.max_num_timeout == 20
    assert cfg.trainer.strategy == "ddp" and cfg.trainer.num_nodes == 2
    assert cfg.callbacks.preemption._target_.endswith("PreemptionCheckpoint")
    assert cfg.auto_resume is True
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        local = compose("train", overrides=["hydra/launcher=local"], return_hydra_config=True)
    assert local.hydra.launcher._target_.endswith("JoblibLauncher")
    GlobalHydra.instance().clear()


def test_preemption_callback_refuses_unknown_signals(tmp_path):
    from transformer_mt.training.preemption import PreemptionCheckpoint

    with pytest.raises(ValueError, match="unknown"):
        PreemptionCheckpoint(tmp_path, signals=("SIGNOPE",))
