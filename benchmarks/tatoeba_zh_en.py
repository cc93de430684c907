"""Tatoeba zh->en with the small Transformer: dev BLEU / chrF and a dozen sample translations.

    python train.py experiment=tatoeba_zh_en_small hydra.run.dir=runs/zh_en
    python -m benchmarks.tatoeba_zh_en --run runs/zh_en

`evaluate.py` on the average of the run's last 5 step checkpoints, beam 5: once on the whole
dev split (cased detokenized sacreBLEU, chrF) and once on the sentences below, 我喜欢小狗。 (the
tutorial's sentence) first. Each sentence is flagged when it occurs verbatim as a source in the
training split, since Tatoeba is full of short everyday sentences. Results:
benchmarks/results/tatoeba_zh_en_small.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import tempfile
from pathlib import Path

from benchmarks.machine import machine_info
from benchmarks.multi30k_tiny import clock, evaluate, learning_curve
from transformer_mt.utils.io import read_lines

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "tatoeba_zh_en_small.json"
SENTENCES = {  # source -> what a person would write
    "我喜欢小狗。": "I like puppies.",
    "我喜欢猫。": "I like cats.",
    "今天天气很好。": "The weather is nice today.",
    "你叫什么名字？": "What is your name?",
    "我不知道他在哪里。": "I don't know where he is.",
    "我们明天去学校。": "We are going to school tomorrow.",
    "这本书很有意思。": "This book is very interesting.",
    "她每天早上喝咖啡。": "She drinks coffee every morning.",
    "我的哥哥是医生。": "My older brother is a doctor.",
    "你想吃什么？": "What do you want to eat?",
    "请把门关上。": "Please close the door.",
    "我昨天买了一本新书。": "I bought a new book yesterday.",
    "火车站在哪里？": "Where is the train station?",
}


def training_sources(data_dir: Path) -> set[str]:
    with open(data_dir / "tatoeba-cmn-eng" / "train.tsv", encoding="utf-8", newline="") as f:
        return {row[1] for row in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE) if row}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--average-last", type=int, default=5)
    parser.add_argument("--data-dir", type=Path, default=os.environ.get("TRANSFORMER_MT_DATA"))
    parser.add_argument("--paused", type=float, default=0.0, help="seconds the run was stopped")
    args = parser.parse_args()
    run = args.run.resolve()
    dev = evaluate(run, args.average_last, run / "eval_dev", "data=tatoeba_zh_en", "split=val")
    with tempfile.TemporaryDirectory() as tmp:
        src, ref = Path(tmp) / "src.zh", Path(tmp) / "ref.en"
        src.write_text("".join(s + "\n" for s in SENTENCES), encoding="utf-8")
        ref.write_text("".join(r + "\n" for r in SENTENCES.values()), encoding="utf-8")
        out = run / "eval_samples"
        evaluate(run, args.average_last, out, f"input={src}", f"reference={ref}")
        hyps = read_lines(out / "hypotheses.txt")
    seen = training_sources(args.data_dir) if args.data_dir else set()
    samples = [
        {"source": s, "reference": r, "hypothesis": h, "source_in_train": s in seen}
        for (s, r), h in zip(SENTENCES.items(), hyps, strict=True)
    ]
    result = {
        "benchmark": "tatoeba_zh_en_small",
        "recipe": "conf/experiment/tatoeba_zh_en_small.yaml",
        "run": str(run),
        **clock(run, args.paused),
        "average_last": args.average_last,
        "dev": dev,
        "samples": samples,
        "learning_curve": learning_curve(run),
        "machine": machine_info(),
    }
    RESULTS.write_text(json.dumps(result, indent=1, ensure_ascii=False))
    for sample in samples:
        print(sample["source"], "->", sample["hypothesis"])


if __name__ == "__main__":
    main()
