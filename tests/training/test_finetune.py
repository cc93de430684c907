"""Fine-tuning an imported Marian model with train.py (`model.init_from=<folder>`): the run
starts from its weights and tokenizer, lowers the loss, resumes exactly, and the result goes
back to Hugging Face."""

import csv
import json
from pathlib import Path

import pytest
import torch

from transformer_mt.constants import BOS_ID
from transformer_mt.formats import load_model
from transformer_mt.formats.marian import export_marian, import_marian

from .conftest import TINY_TRAINING, compose_config

SPLITS = {"train": 400, "val": 20}


@pytest.fixture(scope="module")
def corpus_files(synthetic_corpus, tmp_path_factory) -> dict[str, Path]:
    """The synthetic pairs as the four text files data=custom reads."""
    folder = tmp_path_factory.mktemp("synthetic")
    files = {}
    for split, n in SPLITS.items():
        pairs = synthetic_corpus[split][:n]
        for side, index in (("src", 0), ("tgt", 1)):
            path = folder / f"{split}.{side}"
            path.write_text("".join(p[index] + "\n" for p in pairs), encoding="utf-8")
            files[f"{split}_{side}"] = path
    return files


def finetune_cfg(corpus_files, marian_folder, tmp_path, out, *extra):
    """The real train config, shrunk (as the other end-to-end tests), from the Marian folder."""
    shrink = [o for o in TINY_TRAINING if not o.startswith(("model.", "model="))]
    files = [f"data.corpus.{key}={path}" for key, path in corpus_files.items()]
    return compose_config("train", [
        "data=custom", *files, "data.corpus.src_lang=xa", "data.corpus.tgt_lang=xb",
        "data.max_tokens=600", "data.num_workers=0", *shrink, "model=tiny",
        f"model.init_from={marian_folder[0]}", "model.dropout=0.0", "optimizer.lr=0.001",
        "trainer.max_steps=8", "trainer.val_check_interval=4", "test=false",
        f"paths.cache_dir={tmp_path / 'cache'}", f"paths.log_dir={tmp_path / 'logs'}",
        f"paths.output_dir={out}", *extra,
    ])  # fmt: skip


def losses(run: Path) -> list[float]:
    with open(run / "csv" / "metrics.csv") as f:
        return [float(r["train/loss"]) for r in csv.DictReader(f) if r.get("train/loss")]


def test_finetuning_starts_from_the_import_and_lowers_the_loss(
    train_entry, corpus_files, marian_folder, tmp_path
):
    run = tmp_path / "run"
    train_entry.train(finetune_cfg(corpus_files, marian_folder, tmp_path, run))
    start = import_marian(marian_folder[0])
    tuned = load_model(ckpt_path=run / "checkpoints" / "last.ckpt")
    assert tuned.info.config == start.info.config.replace(dropout=0.0)
    assert tuned.tokenizer.fingerprint() == start.tokenizer.fingerprint()
    curve = losses(run)
    assert len(curve) == 8 and curve[-1] < curve[0]
    changed = [n for n, t in tuned.model.state_dict().items()
               if not torch.equal(t, start.model.state_dict()[n])]  # fmt: skip
    assert changed  # it trained from the imported weights, and changed them
    # the first update starts from the import: its loss is the imported model's own loss
    assert curve[0] < 3.0  # far below a fresh model's ~log(V) = 4.8


def test_a_finetuned_model_resumes_exactly_and_goes_back_to_hf(
    train_entry, corpus_files, marian_folder, tmp_path
):
    from transformers import MarianMTModel

    whole, part = tmp_path / "whole", tmp_path / "part"
    train_entry.train(finetune_cfg(corpus_files, marian_folder, tmp_path, whole))
    train_entry.train(finetune_cfg(corpus_files, marian_folder, tmp_path, part,
                                   "trainer.max_steps=4"))  # fmt: skip
    train_entry.train(finetune_cfg(corpus_files, marian_folder, tmp_path, part,
                                   f"ckpt_path={part / 'checkpoints' / 'last.ckpt'}"))  # fmt: skip
    assert losses(part) == pytest.approx(losses(whole), rel=0, abs=0)
    tuned = load_model(ckpt_path=whole / "checkpoints" / "last.ckpt")
    hf_dir = export_marian(tuned, tmp_path / "hf")
    hf = MarianMTModel.from_pretrained(hf_dir).eval()
    marian_id = json.loads((hf_dir / "vocab.json").read_text(encoding="utf-8"))
    # fine-tuning trained our <s> row apart from <pad>: it goes back as its own start token
    assert hf.config.decoder_start_token_id == marian_id["<s>"] != hf.config.pad_token_id
    to_marian = [marian_id.get(p, hf.config.pad_token_id)
                 for p in tuned.tokenizer.tgt_vocabulary()]  # fmt: skip
    src = tuned.tokenizer.encode_src(["A dog sees the cat."])[0]
    tgt = [BOS_ID, *tuned.tokenizer.encode_tgt(["La hund la mika vidas."])[0]]
    with torch.no_grad():
        ours = tuned.model(torch.tensor([src]), torch.tensor([tgt]))[0]  # (T, V + 1)
        theirs = hf(
            input_ids=torch.tensor([[to_marian[i] for i in src]]),
            decoder_input_ids=torch.tensor([[to_marian[i] for i in tgt]]),
        ).logits[0]
    columns = torch.tensor([tuned.tokenizer.tgt_vocabulary().index(p) for p in
                            sorted(marian_id, key=marian_id.get)])  # fmt: skip
    torch.testing.assert_close(ours[:, columns], theirs, atol=1e-5, rtol=1e-5)
