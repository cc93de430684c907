"""End to end on a Multi30k slice: train -> checkpoint -> evaluate, exact resume, W&B offline."""

import csv
import json
from pathlib import Path

import sacrebleu

from transformer_mt.utils.io import read_lines


def _metrics(run: Path) -> list[dict[str, str]]:
    with open(run / "csv" / "metrics.csv") as f:
        return list(csv.DictReader(f))


def _logged(rows: list[dict[str, str]], name: str) -> dict[int, float]:
    return {int(r["step"]): float(r[name]) for r in rows if r.get(name)}


def test_train_checkpoint_evaluate_round_trip(
    train_cfg, train_entry, evaluate_entry, eval_cfg, tiny_corpus, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    metrics = train_entry.train(train_cfg(out=run))
    for name in ("train/loss", "val/loss", "val/ppl", "val/bleu", "val/chrf", "test/bleu"):
        assert name in metrics, sorted(metrics)
    assert (run / "config_tree.log").read_text().count("d_model") >= 1
    rows = _metrics(run)
    assert sorted(_logged(rows, "val/bleu")) == [2, 5]  # validated at updates 3 and 6
    assert len(_logged(rows, "train/loss")) == 6 and _logged(rows, "train/lr")
    ckpts = sorted(p.name for p in (run / "checkpoints").glob("*.ckpt"))
    assert "last.ckpt" in ckpts and {"step_0000003.ckpt", "step_0000006.ckpt"} <= set(ckpts)

    # the last checkpoint alone re-translates the val split: same BLEU as logged at step 6
    scores = evaluate_entry.evaluate(
        eval_cfg(
            f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}",
            "decoding=greedy",
            "decoding.max_len_a=0.5",
            "decoding.max_len_b=2",
            "split=val",
            "data=custom",
            *[
                f"data.corpus.{s}_{side}={tiny_corpus[f'{s}.{lang}']}"
                for s in ("train", "val")
                for side, lang in (("src", "en"), ("tgt", "de"))
            ],
        )
    )
    assert abs(scores["bleu"] - _logged(rows, "val/bleu")[5]) < 1e-6
    hyps = read_lines(tmp_path / "eval" / "hypotheses.txt")
    refs = read_lines(tiny_corpus["val.de"])
    assert len(hyps) == 40
    assert scores["bleu"] == sacrebleu.corpus_bleu(hyps, [refs]).score
    assert scores["direction"] == ["en", "de"]


def test_evaluate_averages_a_run_and_scores_a_text_file(
    train_cfg, train_entry, evaluate_entry, eval_cfg, tiny_corpus, tmp_path
) -> None:
    run = tmp_path / "run"
    train_entry.train(train_cfg("test=false", out=run))
    src, ref = tiny_corpus["test.en"], tiny_corpus["test.de"]
    scores = evaluate_entry.evaluate(
        eval_cfg(
            f"ckpt_path={run}",
            "average_last=2",
            f"input={src}",
            f"reference={ref}",
            "decoding.beam_size=2",
            "decoding.max_len_a=0.5",
            "decoding.max_len_b=2",
        )
    )
    assert [Path(p).name for p in scores["checkpoints"]] == [
        "step_0000003.ckpt",
        "step_0000006.ckpt",
    ]
    saved = json.loads((tmp_path / "eval" / "scores.json").read_text())
    assert saved["bleu"] == scores["bleu"] and "tok:13a" in saved["bleu_signature"]
    assert "chrf_signature" in saved and "ter_signature" in saved
    hyps = read_lines(tmp_path / "eval" / "hypotheses.txt")
    assert len(hyps) == 20
    assert saved["ter"] == sacrebleu.corpus_ter(hyps, [read_lines(ref)]).score
