"""Multi30k quality of the tiny Transformer: average of the last checkpoints, beam 5, on val.

    python train.py experiment=multi30k_tiny hydra.run.dir=runs/en_de            # En->De
    python train.py experiment=multi30k_tiny data=multi30k_de_en hydra.run.dir=runs/de_en
    python -m benchmarks.multi30k_tiny --run en_de=runs/en_de --run de_en=runs/de_en

For each finished (or partly trained) run: `evaluate.py` on the average of its last 10 step
checkpoints (and, to show what averaging adds, on the last checkpoint alone) with beam 5 over the
whole val split, which reports cased detokenized sacreBLEU and,
to compare with papers, tokenized (13a) lowercased BLEU; the training wall time from the Timer
state in last.ckpt; the learning curve from the run's metrics.csv (on a resume the CSV is
appended to, so the last row of a step wins). Results: benchmarks/results/multi30k_tiny.json.

The headline uses the recipe's decoding untouched (len_penalty 1.0). `--len-penalty 0.6 1.4 2.0`
also scores other length penalties; they are chosen on val and reported on val, so they are
labelled as tuned there and never replace the headline.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

from benchmarks.machine import machine_info

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "multi30k_tiny.json"
DATA = {"en_de": "multi30k_en_de", "de_en": "multi30k_de_en"}
TARGET_LC_BLEU_EN_DE = 41.0


def learning_curve(run: Path) -> dict[str, list[list[float]]]:
    """(step, value) pairs per logged metric; a step logged twice (resume) keeps its last row."""
    series: dict[str, dict[int, float]] = {}
    with open(run / "csv" / "metrics.csv") as f:
        for row in csv.DictReader(f):
            for name in ("train/loss", "val/loss", "val/bleu", "val/chrf"):
                if row.get(name):
                    series.setdefault(name, {})[int(row["step"])] = float(row[name])
    return {name: sorted([s, v] for s, v in points.items()) for name, points in series.items()}


def clock(run: Path, paused_seconds: float = 0.0) -> dict[str, Any]:
    """Updates and the Timer's wall time; `paused_seconds` (a run stopped with SIGSTOP while
    benchmarks had the cores, which the Timer counts) is subtracted from the training time."""
    last = run / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(last, map_location="cpu", weights_only=False)
    elapsed = checkpoint.get("callbacks", {}).get("Timer", {}).get("time_elapsed", {})
    train = elapsed.get("train", float("nan"))
    return {
        "updates": checkpoint["global_step"],
        "train_seconds_timer": round(train, 1),
        "paused_seconds": paused_seconds,
        "train_seconds": round(train - paused_seconds, 1),
        "validate_seconds": round(elapsed.get("validate", float("nan")), 1),
    }


def evaluate(run: Path, average_last: int, out: Path, *overrides: str) -> dict[str, Any]:
    """evaluate.py on the average of the run's last checkpoints, beam 5; its scores.json."""
    cmd = [
        sys.executable, "evaluate.py", f"ckpt_path={run / 'checkpoints'}",
        f"average_last={average_last}", "decoding=beam", "decoding.beam_size=5",
        f"hydra.run.dir={out}", *overrides,
    ]  # fmt: skip
    subprocess.run(cmd, cwd=ROOT, check=True)
    return json.loads((out / "scores.json").read_text())


def _brief(scores: dict[str, Any]) -> dict[str, Any]:
    """The figures of a length-penalty variant; its signatures are the headline's."""
    keys = ("bleu", "bleu_lc", "chrf", "ter", "bleu_brevity_penalty", "hyp_len", "ref_len")
    return {key: scores[key] for key in keys}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", action="append", required=True, help="direction=run_dir")
    parser.add_argument("--average-last", type=int, default=10)
    parser.add_argument(
        "--len-penalty", type=float, nargs="*", default=[], help="extra beam length penalties"
    )
    parser.add_argument(
        "--paused", action="append", default=[], help="direction=seconds the run was stopped"
    )
    args = parser.parse_args()
    paused = {d: float(s) for d, _, s in (item.partition("=") for item in args.paused)}
    results: dict[str, Any] = {}
    for item in args.run:
        direction, _, folder = item.partition("=")
        if direction not in DATA:
            parser.error(f"--run {item}: direction must be one of {', '.join(DATA)}")
        run = Path(folder).resolve()
        scores = evaluate(
            run, args.average_last, run / "eval_avg_beam5", f"data={DATA[direction]}", "split=val"
        )
        alone = evaluate(run, 1, run / "eval_last_beam5", f"data={DATA[direction]}", "split=val")
        tuned = {
            str(lp): evaluate(
                run,
                args.average_last,
                run / f"eval_avg_beam5_lp{lp}",
                f"data={DATA[direction]}",
                "split=val",
                f"decoding.len_penalty={lp}",
            )
            for lp in args.len_penalty
        }
        results[direction] = {
            "run": str(run),
            **clock(run, paused.get(direction, 0.0)),
            "average_last": args.average_last,
            "scores": scores,
            "last_checkpoint_alone": _brief(alone),
            "len_penalty_tuned_on_val": {lp: _brief(s) for lp, s in tuned.items()},
            "learning_curve": learning_curve(run),
        }
    previous = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    merged = {**previous.get("directions", {}), **results}
    RESULTS.write_text(
        json.dumps(
            {
                "benchmark": "multi30k_tiny",
                "recipe": "conf/experiment/multi30k_tiny.yaml",
                "target_lowercased_tokenized_bleu_en_de": TARGET_LC_BLEU_EN_DE,
                "machine": machine_info(),
                "directions": merged,
            },
            indent=1,
            ensure_ascii=False,
        )
    )
    for direction, r in results.items():
        print(direction, r["updates"], "updates", r["scores"])


if __name__ == "__main__":
    main()
