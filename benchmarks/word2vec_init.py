"""Does a Word2Vec start of the embeddings help? Same budget, 3 seeds, with and without.

    python -m benchmarks.word2vec_init [--work DIR] [--settings ...] [--seeds 1 2 3]

Every run is a real `train.py` job (and, for the Word2Vec arm, a real `pretrain_embeddings.py`
job first, with the run's seed), on one intra-op thread. Two invocations with the same
arguments share the work: each run is claimed by creating its folder, so two processes on a
2-core machine split the runs between them. Results are rebuilt from every finished run in
the work folder and written to benchmarks/results/word2vec_init.json.

Settings (the training split of each is what the tokenizer, Word2Vec and the model see):
- lowres_zh_en: 3,000 pairs sampled from Tatoeba zh->en train (separate 2,000-piece
  vocabularies), 500 updates of 1,024 tokens.
- lowres_de_en: 3,000 pairs sampled from Multi30k de->en train (one joint 3,000-piece
  vocabulary, shared embeddings), 500 updates of 1,024 tokens.
- full_de_en: all 29,000 Multi30k de->en pairs (joint 8,000 pieces, shared embeddings), 200
  updates of 4,096 tokens: the start of a run, where an initialisation can matter.
All: the tiny model (4+4 layers, d_model 128, d_ff 256, 4 heads, dropout 0.3), pre-norm,
sinusoidal positions, Adam (0.9, 0.98), lr 0.002 after 100 warmup updates then inverse
square root, label smoothing 0.1. Word2Vec: skip-gram, the `embeddings=skipgram` defaults
(window 5, 5 negatives, min count 5), 10 epochs on the full corpus and 50 on the 3,000-pair
slices (at 10 the slice's vectors are all alike: every neighbour of 狗 at cosine 0.996; at 50,
猫 0.82, 只 0.73, 一只 0.69), vectors rescaled to the random init's RMS, not frozen. The
validation loss (label-smoothed, as val/loss) is measured every 25 updates on the whole
val/dev split; BLEU and chrF (greedy, sacreBLEU) at the last update.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch

from benchmarks.machine import machine_info
from transformer_mt.constants import PAD_ID
from transformer_mt.training.loss import label_smoothed_nll_loss

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "word2vec_init.json"
CURVE_EVERY = 25
INITS = ("random", "word2vec")

SETTINGS: dict[str, dict[str, Any]] = {
    "lowres_zh_en": {
        "data": [
            "data=tatoeba_zh_en",
            "data.train_pairs=3000",
            "data.tokenizer.vocab_size=2000",
            "data.tokenizer.tgt_vocab_size=2000",
        ],
        "train": ["model.share_embeddings=false", "data.max_tokens=1024", "trainer.max_steps=500"],
        "word2vec": ["embeddings.epochs=50"],
    },
    "lowres_de_en": {
        "data": ["data=multi30k_de_en", "data.train_pairs=3000", "data.tokenizer.vocab_size=3000"],
        "train": ["model.share_embeddings=true", "data.max_tokens=1024", "trainer.max_steps=500"],
        "word2vec": ["embeddings.epochs=50"],
    },
    "full_de_en": {
        "data": ["data=multi30k_de_en"],
        "train": ["model.share_embeddings=true", "data.max_tokens=4096", "trainer.max_steps=200"],
        "word2vec": [],
    },
}
COMMON_DATA = ["data.num_workers=0", "data.train_pairs_seed=1"]
COMMON_TRAIN = [
    "model=tiny",
    "model.norm_first=true",
    "pos_enc=sinusoidal",
    "optimizer=adam",
    "optimizer.lr=0.002",
    "scheduler=inverse_sqrt",
    "scheduler.lr_lambda.warmup_steps=100",
    "decoding=greedy",
    "logger=csv",
    "test=false",
    "trainer.num_sanity_val_steps=0",
    "callbacks.early_stopping=null",
    "callbacks.model_checkpoint=null",
    "callbacks.rich_progress_bar=null",
    "+trainer.enable_progress_bar=false",
    "+callbacks.val_curve._target_=benchmarks.word2vec_init.ValidationCurve",
    f"+callbacks.val_curve.every_n_steps={CURVE_EVERY}",
]
WORD2VEC = ["embeddings=skipgram", "d_model=128", "embeddings.workers=1"]


class ValidationCurve(L.Callback):
    """Label-smoothed and plain NLL per target token on the whole val split, every n updates
    (and before the first), written to <output_dir>/val_curve.json. Loss only: no decoding."""

    def __init__(self, every_n_steps: int) -> None:
        self.every_n_steps = every_n_steps
        self.points: list[dict[str, float]] = []

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._measure(trainer, pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step % self.every_n_steps == 0:
            self._measure(trainer, pl_module)

    @torch.no_grad()
    def _measure(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pl_module.eval()
        sums = torch.zeros(3, dtype=torch.float64)
        for batch in trainer.datamodule.val_dataloader():
            logits = pl_module(batch.src_ids, batch.tgt_in_ids)
            loss, nll = label_smoothed_nll_loss(
                logits, batch.tgt_out_ids, pl_module.hparams.label_smoothing, PAD_ID
            )
            sums += torch.tensor([loss.item(), nll.item(), batch.num_tgt_tokens])
        pl_module.train()
        loss, nll, tokens = sums.tolist()
        point = {"step": trainer.global_step, "loss": loss / tokens, "nll": nll / tokens}
        self.points.append(point)
        out = Path(trainer.default_root_dir) / "val_curve.json"
        out.write_text(json.dumps(self.points, indent=1))


def _run(cmd: list[str], log: Path, env: dict[str, str]) -> float:
    """Run a script, its output to `log`; returns seconds; raises with the log's tail."""
    start = time.perf_counter()
    with log.open("w") as f:
        done = subprocess.run(cmd, cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT)
    if done.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed; see {log}:\n{log.read_text()[-3000:]}")
    return time.perf_counter() - start


def run_one(work: Path, setting: str, seed: int, init: str, env: dict[str, str]) -> None:
    folder = work / setting / f"seed{seed}" / init
    try:
        folder.mkdir(parents=True)  # the claim: another process already has this run
    except FileExistsError:
        return
    spec = SETTINGS[setting]
    data = [*spec["data"], *COMMON_DATA]
    train = [
        sys.executable, "train.py", *data, *COMMON_TRAIN, *spec["train"], f"seed={seed}",
        f"hydra.run.dir={folder / 'run'}",
    ]  # fmt: skip
    steps = next(int(o.split("=")[1]) for o in spec["train"] if o.startswith("trainer.max_steps"))
    train.append(f"trainer.val_check_interval={steps}")
    record: dict[str, Any] = {"setting": setting, "seed": seed, "init": init}
    if init == "word2vec":
        w2v = folder / "word2vec"
        pretrain = [
            sys.executable, "pretrain_embeddings.py", *data, *WORD2VEC, *spec["word2vec"],
            f"seed={seed}",
            f"out_dir={w2v}", f"hydra.run.dir={folder / 'pretrain'}",
        ]  # fmt: skip
        record["pretrain_seconds"] = _run(pretrain, folder / "pretrain.log", env)
        record["word2vec"] = json.loads((w2v / "report.json").read_text())
        train += ["model.embeddings.init=word2vec", f"model.embeddings.path={w2v}"]
    record["train_seconds"] = _run(train, folder / "train.log", env)
    record["curve"] = json.loads((folder / "run" / "val_curve.json").read_text())
    with open(folder / "run" / "csv" / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("val/bleu")]
    record["bleu"], record["chrf"] = float(rows[-1]["val/bleu"]), float(rows[-1]["val/chrf"])
    record["command"] = " ".join(train[1:])
    (folder / "result.json").write_text(json.dumps(record, indent=1, ensure_ascii=False))


def steps_to(curve: list[dict[str, float]], target: float) -> int | None:
    """First measured update at which the val loss is at or below `target`."""
    return next((p["step"] for p in curve if p["loss"] <= target), None)


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Per setting: BLEU/chrF/loss per arm (median and each seed) and the steps each run needs
    to reach the random arm's median final val loss."""
    out: dict[str, Any] = {}
    for setting in SETTINGS:
        runs = [r for r in records if r["setting"] == setting]
        if not runs:
            continue
        random_final = [r["curve"][-1]["loss"] for r in runs if r["init"] == "random"]
        target = statistics.median(random_final) if random_final else None
        arms = {}
        for init in INITS:
            arm = sorted((r for r in runs if r["init"] == init), key=lambda r: r["seed"])
            if not arm:
                continue
            reach = [steps_to(r["curve"], target) for r in arm] if target else []
            arms[init] = {
                "seeds": [r["seed"] for r in arm],
                "bleu": [r["bleu"] for r in arm],
                "chrf": [r["chrf"] for r in arm],
                "final_val_loss": [round(r["curve"][-1]["loss"], 4) for r in arm],
                "val_loss_at_step_0": [round(r["curve"][0]["loss"], 4) for r in arm],
                "steps_to_target": reach,
                "median_bleu": statistics.median(r["bleu"] for r in arm),
                "median_final_val_loss": statistics.median(r["curve"][-1]["loss"] for r in arm),
                "train_seconds": [round(r["train_seconds"]) for r in arm],
            }
            if init == "word2vec":
                w2v = [m for r in arm for m in r["word2vec"]["matrices"]]
                arms[init]["pretrain_seconds"] = [round(r["pretrain_seconds"], 1) for r in arm]
                arms[init]["gensim_words_per_second"] = [
                    round(m["throughput"]["words_per_second"]) for m in w2v
                ]
                arms[init]["vocabulary_coverage"] = [m["coverage"] for m in w2v]
        out[setting] = {"target_val_loss": target, "arms": arms}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=ROOT / "outputs" / "word2vec_init")
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--data-dir", default=os.environ.get("TRANSFORMER_MT_DATA"))
    args = parser.parse_args()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    if args.data_dir:
        env["TRANSFORMER_MT_DATA"] = args.data_dir
    for setting in args.settings:
        for seed in args.seeds:
            for init in INITS:
                run_one(args.work, setting, seed, init, env)
    records = [json.loads(p.read_text()) for p in sorted(args.work.glob("*/*/*/result.json"))]
    result = {
        "benchmark": "word2vec_init",
        "description": __doc__.split("\n\n")[2].strip(),
        "curve_every_updates": CURVE_EVERY,
        "intra_op_threads_per_run": int(env["OMP_NUM_THREADS"]),
        "common_overrides": COMMON_TRAIN[:-2],
        "settings": SETTINGS,
        "word2vec_overrides": WORD2VEC,
        "machine": machine_info(),
        "summary": summarize(records),
        "runs": records,
    }
    RESULTS.write_text(json.dumps(result, indent=1, ensure_ascii=False))
    print(json.dumps(result["summary"], indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
