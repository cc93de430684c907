"""Several test sets: each present one is prepared, scored and logged under its own name;
absent ones are listed with the reason, never fatal (files written here, no download)."""

import gzip
import json
from pathlib import Path

import pytest
import sacrebleu

from transformer_mt.data.corpus import Multi30k, TextCorpus, TsvCorpus
from transformer_mt.data.datamodule import TranslationDataModule
from transformer_mt.data.synthetic import synthetic_pairs
from transformer_mt.data.tokenizer import TokenizerConfig
from transformer_mt.utils.io import read_lines

from ..conftest import compose_config, load_entry_point

SETS = {"train": (300, 0), "val": (20, 1), "test_2016_flickr": (15, 2), "test_2017_mscoco": (12, 3)}


@pytest.fixture(scope="module")
def multi30k_root(tmp_path_factory) -> Path:
    """<root>/multi30k/ with train, val and two of the three test sets, en-de, gzipped."""
    root = tmp_path_factory.mktemp("data")
    folder = root / "multi30k"
    folder.mkdir()
    for split, (n, seed) in SETS.items():
        pairs = synthetic_pairs(n, seed)
        for lang, index in (("en", 0), ("de", 1)):
            text = "".join(p[index] + "\n" for p in pairs).encode()
            (folder / f"{split}.{lang}.gz").write_bytes(gzip.compress(text))
    return root


def test_present_test_sets_are_served_and_absent_ones_listed(multi30k_root, tmp_path):
    corpus = Multi30k(multi30k_root, "en", "de", download=False)
    data = TranslationDataModule(corpus, TokenizerConfig(vocab_size=100), cache_dir=tmp_path,
                                 num_workers=0)  # fmt: skip
    assert data.test_splits == ["test_2016_flickr", "test_2017_mscoco"]
    assert list(data.missing_test_splits) == ["test_2017_flickr"]
    assert "test_2017_flickr.en.gz" in data.missing_test_splits["test_2017_flickr"]
    assert "allow_unverified_download=true" in data.missing_test_splits["test_2017_flickr"]
    data.setup("test")
    loaders = data.test_dataloader()
    assert len(loaders) == 2
    for name, loader in zip(data.test_splits, loaders, strict=True):
        n = SETS[name][0]
        assert sorted(i for batch in loader for i in batch.indices.tolist()) == list(range(n))
        assert data.references(name) == [t for _, t in synthetic_pairs(n, SETS[name][1])]
    assert data.has_split("test_2016_flickr") and not data.has_split("test_2017_flickr")


def test_tsv_and_text_corpora_take_named_test_sets(tmp_path):
    pairs = synthetic_pairs(10, 5)
    tsv = tmp_path / "news.tsv"
    tsv.write_text("".join(f"{s}\t{t}\n" for s, t in pairs), encoding="utf-8")
    corpus = TsvCorpus(tsv, tsv, 0, 1, test=tsv, tests={"news": str(tsv)})
    assert corpus.test_names == ("test", "news")
    text = TextCorpus(tsv, tsv, tsv, tsv, tests={"web": {"src": str(tsv), "tgt": str(tsv)}})
    assert text.test_names == ("web",)
    with pytest.raises(ValueError, match="test set name 'val'"):
        TsvCorpus(tsv, tsv, 0, 1, tests={"val": str(tsv)})
    with pytest.raises(ValueError, match="expected keys src and tgt"):
        TextCorpus(tsv, tsv, tsv, tsv, tests={"web": {"src": str(tsv)}})


def train_overrides(root: Path, tmp_path: Path, out: Path) -> list[str]:
    return [
        "data=multi30k_en_de", "data.corpus.download=false", "data.tokenizer.vocab_size=100",
        "data.max_tokens=600", "data.num_workers=0", "model=tiny", "model.d_model=32",
        "model.d_ff=64", "model.num_heads=2", "model.num_encoder_layers=1",
        "model.num_decoder_layers=1", "scheduler=inverse_sqrt",
        "scheduler.lr_lambda.warmup_steps=2", "optimizer.lr=0.003", "decoding.max_len_a=0.5",
        "decoding.max_len_b=2", "trainer.max_steps=4", "trainer.val_check_interval=2",
        "trainer.num_sanity_val_steps=0", "callbacks.rich_progress_bar=null",
        "+trainer.enable_progress_bar=false", "+trainer.enable_model_summary=false",
        "logger=csv", f"paths.data_dir={root}", f"paths.cache_dir={tmp_path / 'cache'}",
        f"paths.log_dir={tmp_path / 'logs'}", f"paths.output_dir={out}",
    ]  # fmt: skip


def test_train_scores_every_present_test_set_under_its_own_name(multi30k_root, tmp_path):
    train, evaluate = load_entry_point("train"), load_entry_point("evaluate")
    run = tmp_path / "run"
    metrics = train.train(compose_config("train", train_overrides(multi30k_root, tmp_path, run)))
    for name in ("test_2016_flickr", "test_2017_mscoco"):
        assert {f"{name}/bleu", f"{name}/chrf", f"{name}/loss"} <= set(metrics)
    assert not any(k.startswith(("test/", "test_2017_flickr/")) for k in metrics)
    # evaluate.py split=<name> on the checkpoint the test used gives the same BLEU
    best = next((run / "checkpoints").glob("best_*.ckpt"))
    scores = evaluate.evaluate(compose_config("evaluate", [
        f"ckpt_path={best}", "split=test_2017_mscoco", "data=multi30k_en_de",
        "data.corpus.download=false", "data.tokenizer.vocab_size=100",
        f"paths.data_dir={multi30k_root}", f"paths.cache_dir={tmp_path / 'cache'}",
        f"paths.output_dir={tmp_path / 'eval'}", "decoding=greedy",
        "decoding.max_len_a=0.5", "decoding.max_len_b=2",
    ]))  # fmt: skip
    assert scores["bleu"] == pytest.approx(metrics["test_2017_mscoco/bleu"], abs=1e-9)
    hyps = read_lines(tmp_path / "eval" / "hypotheses.txt")
    refs = [t for _, t in synthetic_pairs(*SETS["test_2017_mscoco"])]
    assert scores["bleu"] == sacrebleu.corpus_bleu(hyps, [refs]).score
    assert json.loads((tmp_path / "eval" / "scores.json").read_text())["num_sentences"] == 12
    with pytest.raises(ValueError, match=r"split=test_2017_flickr is absent: .*test_2017_flickr"):
        evaluate.evaluate(compose_config("evaluate", [
            f"ckpt_path={best}", "split=test_2017_flickr", "data=multi30k_en_de",
            "data.corpus.download=false", f"paths.data_dir={multi30k_root}",
            f"paths.cache_dir={tmp_path / 'cache'}", f"paths.output_dir={tmp_path / 'eval2'}",
        ]))  # fmt: skip
