"""Token embeddings: scale, padding row, pretrained vectors, sharing and output tying."""

import math

import numpy as np
import pytest
import torch
from torch.testing import assert_close

from transformer_mt.model import Transformer
from transformer_mt.model.embeddings import TokenEmbedding

from .conftest import small_config


def test_lookup_is_scaled_by_sqrt_d_model_and_pad_row_is_zero_without_gradient():
    embedding = TokenEmbedding(10, 16, pad_id=0)
    ids = torch.tensor([[3, 0, 7]])
    out = embedding(ids)
    assert_close(out[0, 0], embedding.weight[3] * math.sqrt(16))
    assert torch.all(out[0, 1] == 0)
    out.sum().backward()
    assert torch.all(embedding.weight.grad[0] == 0) and embedding.weight.grad[3].abs().sum() > 0
    assert embedding.weight[1:].std().item() == pytest.approx(16**-0.5, rel=0.25)


def test_load_pretrained_whole_table_and_selected_rows():
    embedding = TokenEmbedding(6, 4, pad_id=0)
    table = np.arange(24, dtype=np.float32).reshape(6, 4)
    embedding.load_pretrained(table)
    assert_close(embedding.weight.detach(), torch.from_numpy(table))

    specials = embedding.weight[:4].detach().clone()
    vectors = torch.full((2, 4), -1.0)
    embedding.load_pretrained(vectors, rows=[4, 5])
    assert torch.all(embedding.weight[4:] == -1)
    assert_close(embedding.weight[:4].detach(), specials)


def test_load_pretrained_shape_mismatch_names_both_shapes():
    embedding = TokenEmbedding(6, 4, pad_id=0)
    with pytest.raises(ValueError, match=r"\(6, 5\).*\(6, 4\)"):
        embedding.load_pretrained(torch.zeros(6, 5))
    with pytest.raises(ValueError, match=r"\(3, 4\).*\(2, 4\)"):
        embedding.load_pretrained(torch.zeros(3, 4), rows=[4, 5])
    with pytest.raises(ValueError, match="rows"):
        embedding.load_pretrained(torch.zeros(1, 4), rows=[6])


def test_shared_embeddings_and_tied_output():
    shared = Transformer(small_config(tgt_vocab_size=40, share_embeddings=True))
    assert shared.encoder.embedding is shared.decoder.embedding
    assert shared.decoder.output.weight is shared.decoder.embedding.weight
    hidden = torch.randn(2, 32)
    assert_close(shared.decoder.output(hidden), hidden @ shared.decoder.embedding.weight.T)

    separate = Transformer(small_config(tie_output=False))
    assert separate.encoder.embedding is not separate.decoder.embedding
    assert separate.decoder.output.weight is not separate.decoder.embedding.weight
    assert separate.decoder.output.weight.shape == (50, 32)
