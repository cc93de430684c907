"""End to end on a Multi30k slice: train -> checkpoint -> evaluate, exact resume, W&B offline."""

import csv
import io
import json
import os
from pathlib import Path

import pytest
import sacrebleu
import torch
from hydra.utils import instantiate

from transformer_mt.formats.lightning import load_checkpoint
from transformer_mt.inference.scoring import score
from transformer_mt.training.checkpoint_io import AtomicCheckpointIO
from transformer_mt.training.module import TranslationModule
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
    # hyper-parameters are plain values: Lightning's own loader rebuilds model and tokenizer
    restored = TranslationModule.load_from_checkpoint(run / "checkpoints" / "last.ckpt")
    assert set(restored.hparams) >= {"transformer", "label_smoothing", "src_lang", "tgt_lang"}
    assert not {"optimizer", "scheduler", "search"} & set(restored.hparams)
    assert restored.hparams.transformer["src_vocab_size"] == restored.tokenizer.src_vocab_size

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
    lowercased = sacrebleu.corpus_bleu(hyps, [refs], lowercase=True, tokenize="13a").score
    assert scores["bleu_lc"] == lowercased and "case:lc" in scores["bleu_lc_signature"]
    assert scores["direction"] == ["en", "de"]


def test_lowercased_bleu_is_reported_beside_cased_bleu() -> None:
    """On hand-written lines: case and spacing of punctuation cost cased BLEU only; the
    lowercased figure is sacrebleu's with lowercase=True and its 13a tokenizer."""
    hyps = ["The cat sat on the mat.", "A DOG runs in the park!"]
    refs = ["the cat sat on the mat .", "a dog runs in the park !"]
    scores = score(hyps, refs, "13a")
    assert scores["bleu_lc"] == pytest.approx(100.0)  # 13a splits "mat." and "park!"
    # cased, by hand: 1- to 4-gram matches 11/14, 9/12, 7/10, 5/8 ("The", "A DOG" miss); BP = 1
    assert scores["bleu"] == pytest.approx(100 * (11 / 14 * 9 / 12 * 7 / 10 * 5 / 8) ** 0.25)
    assert "case:lc" in scores["bleu_lc_signature"] and "tok:13a" in scores["bleu_lc_signature"]
    assert "case:mixed" in scores["bleu_signature"]
    hyps[1] = "A dog is running in a park!"
    scores = score(hyps, refs, "13a")
    direct = sacrebleu.corpus_bleu(hyps, [refs], lowercase=True, tokenize="13a")
    assert scores["bleu_lc"] == direct.score and 0 < direct.score < 100
    assert scores["bleu"] == sacrebleu.corpus_bleu(hyps, [refs]).score < direct.score


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
    assert saved["bleu_lc"] == scores["bleu_lc"] and "case:lc" in saved["bleu_lc_signature"]
    assert "chrf_signature" in saved and "ter_signature" in saved
    hyps = read_lines(tmp_path / "eval" / "hypotheses.txt")
    assert len(hyps) == 20
    assert saved["ter"] == sacrebleu.corpus_ter(hyps, [read_lines(ref)]).score

    # no reference: hypotheses only, in input order; a reference of another length is refused
    (tmp_path / "eval" / "scores.json").unlink()
    assert evaluate_entry.evaluate(eval_cfg(f"ckpt_path={run}", f"input={src}")) == {}
    assert len(read_lines(tmp_path / "eval" / "hypotheses.txt")) == 20
    assert not (tmp_path / "eval" / "scores.json").exists()
    short = tmp_path / "short.de"
    short.write_text("eins\nzwei\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"test\.en has 20 lines but .*short\.de has 2"):
        evaluate_entry.evaluate(eval_cfg(f"ckpt_path={run}", f"input={src}", f"reference={short}"))


def _epoch_length(train_cfg) -> int:
    datamodule = instantiate(train_cfg().data)
    datamodule.setup("fit")
    return len(datamodule.train_dataloader())


CLOCK_BUMP = 1000.0


def _stop_and_resume(
    train_cfg, train_entry, tmp_path: Path, common: list[str], stop: int, total: int
):
    """Train `total` updates straight through, and `stop` updates then resumed to `total` from
    last.ckpt; returns the two run directories (uninterrupted, resumed) and their losses."""
    full, part, resumed = tmp_path / "full", tmp_path / "part", tmp_path / "resumed"
    train_entry.train(train_cfg(*common, f"trainer.max_steps={total}", out=full))
    train_entry.train(train_cfg(*common, f"trainer.max_steps={stop}", out=part))
    last = part / "checkpoints" / "last.ckpt"
    checkpoint = load_checkpoint(last)  # as if the first part ran 1,000 s more
    checkpoint["callbacks"]["Timer"]["time_elapsed"]["train"] += CLOCK_BUMP
    AtomicCheckpointIO().save_checkpoint(checkpoint, last)  # re-sealed: the checksum matches
    train_entry.train(
        train_cfg(*common, f"trainer.max_steps={total}", f"ckpt_path={last}", out=resumed)
    )
    want, got = _logged(_metrics(full), "train/loss"), _logged(_metrics(resumed), "train/loss")
    return full, resumed, want, got


def _same_weights(a: Path, b: Path) -> None:
    weights = load_checkpoint(a)["state_dict"]
    for name, value in load_checkpoint(b)["state_dict"].items():
        assert torch.equal(value, weights[name]), name


def test_resume_continues_exactly(train_cfg, train_entry, tmp_path: Path) -> None:
    """Stopped after epoch 1 and resumed from last.ckpt, a run logs the same losses and ends
    with the same weights as one never stopped (dropout on; optimizer, schedule, step, data
    order all restored)."""
    epoch = _epoch_length(train_cfg)
    common = ["test=false", "model.dropout=0.3", f"trainer.val_check_interval={epoch}"]
    full, resumed, want, got = _stop_and_resume(
        train_cfg, train_entry, tmp_path, common, epoch, 2 * epoch
    )
    assert sorted(got) == list(range(epoch, 2 * epoch))
    assert got == {step: want[step] for step in got}
    final = f"step_{2 * epoch:07d}.ckpt"
    _same_weights(full / "checkpoints" / final, resumed / "checkpoints" / "last.ckpt")
    # the training clock is in the checkpoint: the resumed run counts on from the stopped one
    assert _train_seconds(full / "checkpoints" / "last.ckpt") < CLOCK_BUMP
    assert _train_seconds(resumed / "checkpoints" / "last.ckpt") > CLOCK_BUMP


def _train_seconds(checkpoint: Path) -> float:
    return load_checkpoint(checkpoint)["callbacks"]["Timer"]["time_elapsed"]["train"]


@pytest.mark.slow
def test_resume_mid_epoch_continues_exactly(train_cfg, train_entry, tmp_path: Path) -> None:
    """Stopped half-way through epoch 0, a resumed run trains on exactly the remaining batches
    (the train loader's position is in the checkpoint) and ends with the same weights."""
    epoch = _epoch_length(train_cfg)
    half = epoch // 2
    common = ["test=false", f"trainer.val_check_interval={half}"]
    full, resumed, want, got = _stop_and_resume(
        train_cfg, train_entry, tmp_path, common, half, epoch
    )
    assert sorted(got) == list(range(half, epoch))
    assert got == {step: want[step] for step in got}
    _same_weights(full / "checkpoints" / "last.ckpt", resumed / "checkpoints" / "last.ckpt")


def test_wandb_runs_offline_without_a_key_and_is_finished_on_failure(
    train_cfg, train_entry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import wandb

    for name in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_SILENT", "WANDB_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc, no `wandb login`
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # a login prompt would fail, not wait
    run = tmp_path / "run"
    train_entry.train(train_cfg("logger=wandb", "test=false", out=run))
    assert os.environ["WANDB_MODE"] == "offline"
    offline_runs = list((run / "wandb").glob("offline-run-*"))
    assert len(offline_runs) == 1 and list(offline_runs[0].glob("*.wandb"))
    assert wandb.run is None

    def fail(*args, **kwargs):
        raise RuntimeError("a failure during training")

    monkeypatch.setattr(TranslationModule, "training_step", fail)
    broken = tmp_path / "broken"
    with pytest.raises(RuntimeError, match="a failure during training"):
        train_entry.train(train_cfg("logger=wandb", out=broken))
    assert list((broken / "wandb").glob("offline-run-*"))  # the run had started
    assert wandb.run is None  # and was finished, so a sweep's next job gets its own


def test_debug_overfit_drives_the_loss_down_on_fixed_batches(
    train_cfg, train_entry, tmp_path: Path
) -> None:
    """debug=overfit runs (it crashed when Lightning swapped our batch sampler) and learns its
    fixed batches; a d_model = 32 single-layer model halves its loss in 150 updates."""
    run = tmp_path / "overfit"
    train_entry.train(
        train_cfg(
            "debug=overfit",
            "trainer.max_steps=150",
            "trainer.log_every_n_steps=1",
            "optimizer.lr=0.01",
            out=run,
        )
    )
    losses = _logged(_metrics(run), "train/loss")
    first, last = losses[min(losses)], losses[max(losses)]
    assert max(losses) == 149 and last < 0.5 * first, (first, last)


def test_resume_in_the_same_directory_keeps_the_logged_curve(
    train_cfg, train_entry, tmp_path: Path
) -> None:
    """Lightning's own CSV logger deletes metrics.csv when a resumed run opens its directory;
    the project's appends, so the curve is the uninterrupted run's."""
    common = ["test=false", "trainer.val_check_interval=2"]
    full, run = tmp_path / "full", tmp_path / "run"
    train_entry.train(train_cfg(*common, "trainer.max_steps=4", out=full))
    train_entry.train(train_cfg(*common, "trainer.max_steps=2", out=run))
    last = run / "checkpoints" / "last.ckpt"
    train_entry.train(train_cfg(*common, "trainer.max_steps=4", f"ckpt_path={last}", out=run))
    for name in ("train/loss", "val/loss", "val/bleu"):
        want = _logged(_metrics(full), name)
        assert len(want) >= 2 and _logged(_metrics(run), name) == want, name
    # the resumed callback knows its own last.ckpt: it refreshes it rather than writing last-v1
    assert sorted(p.name for p in (run / "checkpoints").glob("last*")) == ["last.ckpt"]


def test_the_final_update_is_checkpointed_between_save_steps(
    train_cfg, train_entry, tmp_path: Path
) -> None:
    """Saving every 2 updates, a 5-update run still ends with last.ckpt (and a step checkpoint)
    at update 5, equal to the state Lightning itself saves when 5 is a save step."""
    common = ["test=false", "trainer.max_steps=5", "trainer.val_check_interval=2"]
    run, reference = tmp_path / "every2", tmp_path / "every5"
    train_entry.train(
        train_cfg(*common, "+callbacks.last_checkpoints.every_n_train_steps=2", out=run)
    )
    train_entry.train(
        train_cfg(*common, "+callbacks.last_checkpoints.every_n_train_steps=5", out=reference)
    )
    checkpoints = run / "checkpoints"
    assert load_checkpoint(checkpoints / "last.ckpt")["global_step"] == 5
    assert load_checkpoint(checkpoints / "step_0000005.ckpt")["global_step"] == 5
    assert (checkpoints / "step_0000004.ckpt").is_file()  # the regular saves are kept
    _same_weights(reference / "checkpoints" / "step_0000005.ckpt", checkpoints / "last.ckpt")
