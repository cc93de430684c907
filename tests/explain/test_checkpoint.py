"""A checkpoint written by the training code (TranslationModule + Lightning Trainer, a real
SentencePiece tokenizer) is explained with its own tokenizer, and explaining changes nothing."""

from functools import partial

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from transformer_mt.constants import BOS_ID, EOS_ID, PAD_ID
from transformer_mt.data.batching import Batch
from transformer_mt.data.tokenizer import Tokenizer, TokenizerConfig, train_sentencepiece
from transformer_mt.explain import explain
from transformer_mt.formats import load_model
from transformer_mt.formats.lightning import model_from_checkpoint
from transformer_mt.training.module import TranslationModule

from .conftest import SHORT_GREEDY

PAIRS = [
    ("我喜欢小狗。", "I like puppies."),
    ("我喜欢小猫。", "I like kittens."),
    ("你喜欢小狗吗？", "Do you like puppies?"),
    ("他不喜欢猫。", "He does not like cats."),
    ("我们有一只狗。", "We have a dog."),
    ("小狗很可爱。", "Puppies are cute."),
]


def pad(rows: list[list[int]]) -> torch.Tensor:
    out = torch.full((len(rows), max(map(len, rows))), PAD_ID)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.tensor(row)
    return out


@pytest.fixture(scope="module")
def checkpoint_path(tmp_path_factory):
    """Two optimizer steps of a tiny model, saved by Lightning's Trainer."""
    folder = tmp_path_factory.mktemp("ckpt")
    config = TokenizerConfig(vocab_size=60, model_type="bpe", input_sentence_size=0)
    lines = [text for pair in PAIRS for text in pair] * 4
    tokenizer = Tokenizer(train_sentencepiece(iter(lines), 60, 1.0, config))
    src = tokenizer.encode_src([s for s, _ in PAIRS])
    tgt = tokenizer.encode_tgt([t for _, t in PAIRS])
    batch = Batch(
        pad(src), pad([[BOS_ID] + t for t in tgt]), pad([t + [EOS_ID] for t in tgt]),
        torch.arange(len(PAIRS)), sum(len(t) + 1 for t in tgt),
    )  # fmt: skip
    fields = dict(src_vocab_size=60, tgt_vocab_size=60, d_model=8, d_ff=16, num_heads=2,
                  num_encoder_layers=1, num_decoder_layers=1, dropout=0.0, pos_enc="rope",
                  norm_first=True)  # fmt: skip
    module = TranslationModule(fields, optimizer=partial(torch.optim.Adam, lr=1e-2))
    module.tokenizer = tokenizer
    trainer = L.Trainer(
        max_steps=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, accelerator="cpu", num_sanity_val_steps=0,
    )  # fmt: skip
    loader = DataLoader([batch], batch_size=None, collate_fn=lambda b: b)
    trainer.fit(module, train_dataloaders=loader)
    path = folder / "tiny.ckpt"
    trainer.save_checkpoint(path)
    return path, module.model.eval()


def test_checkpoint_is_explained_without_changing_its_output(checkpoint_path):
    path, trained = checkpoint_path
    loaded = load_model(ckpt_path=path)
    model, tokenizer = loaded.model, loaded.tokenizer
    text = PAIRS[0][0]
    src = torch.tensor([tokenizer.encode_src([text])[0]])
    expected = tokenizer.decode_tgt([SHORT_GREEDY(trained, src)[0][0].tokens])[0]
    tgt = torch.tensor([[BOS_ID, 5, 6]])
    with torch.no_grad():
        before = model(src, tgt)
        assert torch.equal(before, trained(src, tgt))

    explained = explain(model, tokenizer, text, search=SHORT_GREEDY)

    assert explained.translation == expected
    assert explained.source_pieces == tokenizer.src_pieces(text)
    assert explained.config.pos_enc == "rope" and explained.config.d_model == 8
    with torch.no_grad():
        assert torch.equal(model(src, tgt), before)
    assert "encoder.0.self_attn.head1.Q_rot" in {s.name for s in explained.steps}


def test_incomplete_checkpoint_names_what_is_missing():
    with pytest.raises(KeyError, match="tokenizer"):
        model_from_checkpoint({"hyper_parameters": {}, "state_dict": {}}, source="x.ckpt")
    with pytest.raises(KeyError, match="x.ckpt.*vocabulary sizes"):
        model_from_checkpoint(
            {"hyper_parameters": {"transformer": {}}, "state_dict": {}, "tokenizer": {}},
            source="x.ckpt",
        )
    with pytest.raises(FileNotFoundError, match="no such file or directory"):
        load_model(ckpt_path="/nonexistent/last.ckpt")
