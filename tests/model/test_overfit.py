"""A tiny Transformer memorises a handful of real Multi30k pairs (character level)."""

import gzip
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from transformer_mt.constants import BOS_ID, EOS_ID, PAD_ID
from transformer_mt.model import PRESETS, Transformer, TransformerConfig

NUM_PAIRS = 8
CANDIDATES = 100  # the 8 shortest of the first 100 training pairs keep the test fast


def read_lines(path: Path, count: int) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        return [next(handle).strip() for _ in range(count)]


def char_ids(lines: list[str]) -> tuple[list[list[int]], int]:
    """Character vocabulary built here; ids start after the four special tokens."""
    chars = sorted(set("".join(lines)))
    index = {c: i + 4 for i, c in enumerate(chars)}
    return [[index[c] for c in line] for line in lines], len(chars) + 4


def pad(rows: list[list[int]]) -> torch.Tensor:
    out = torch.full((len(rows), max(map(len, rows))), PAD_ID)
    for i, row in enumerate(rows):
        out[i, : len(row)] = torch.tensor(row)
    return out


def overfit(shared_data: Path, config_fields: dict, steps: int, lr: float, warmup: int) -> None:
    """Train on 8 pairs with Adam and a linear warm-up (post-norm needs one, section 5.3)."""
    corpus = shared_data / "multi30k"
    pairs = zip(
        read_lines(corpus / "train.en.gz", CANDIDATES),
        read_lines(corpus / "train.de.gz", CANDIDATES),
        strict=True,
    )
    pairs = sorted(pairs, key=lambda pair: len(pair[0]) + len(pair[1]))[:NUM_PAIRS]
    src, src_vocab = char_ids([en for en, _ in pairs])
    tgt, tgt_vocab = char_ids([de for _, de in pairs])
    src_ids = pad([row + [EOS_ID] for row in src])
    tgt_in, tgt_out = pad([[BOS_ID] + row for row in tgt]), pad([row + [EOS_ID] for row in tgt])

    torch.manual_seed(0)
    model = Transformer(TransformerConfig(src_vocab, tgt_vocab, dropout=0.0, **config_fields))
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warmup))
    for _ in range(steps):
        logits = model(src_ids, tgt_in)
        loss = F.cross_entropy(logits.transpose(1, 2), tgt_out, ignore_index=PAD_ID)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    assert loss.item() < 0.05
    model.eval()
    with torch.no_grad():
        predicted = model(src_ids, tgt_in).argmax(-1)
    real = tgt_out != PAD_ID
    assert torch.equal(predicted[real], tgt_out[real])


def test_small_model_overfits_eight_real_pairs(shared_data):
    fields = dict(d_model=64, d_ff=128, num_heads=4, num_encoder_layers=2, num_decoder_layers=2)
    overfit(shared_data, fields, steps=150, lr=3e-3, warmup=10)


@pytest.mark.slow
def test_tiny_preset_overfits_eight_real_pairs(shared_data):
    fields = {k: v for k, v in PRESETS["tiny"].items() if k != "dropout"}
    overfit(shared_data, fields, steps=250, lr=1e-3, warmup=50)
