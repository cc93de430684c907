"""Row i of the matrix is the vector of piece i; uncovered rows, file round trip, size checks."""

import json

import numpy as np
import pytest
import torch
from gensim.models import KeyedVectors

from transformer_mt.word2vec.matrix import (
    PretrainedEmbeddings,
    build_embedding_matrix,
    copy_into_embedding_,
    load_pretrained,
    save_pretrained,
)


@pytest.fixture
def vectors() -> KeyedVectors:
    kv = KeyedVectors(vector_size=3)
    keys = ["▁dog", "▁cat", "s", "</s>", "▁the"]
    kv.add_vectors(keys, np.arange(15, dtype=np.float32).reshape(5, 3) + 1)
    return kv


def test_rows_follow_token_ids(vectors) -> None:
    # ids 0-3 are pad/unk/bos/eos; 3 maps to "</s>", which gensim has a vector for, yet stays
    # uncovered; id 6 ("▁bird") has no vector; id 8 is not in the mapping at all.
    id_to_piece = {3: "</s>", 4: "▁the", 5: "s", 6: "▁bird", 7: "▁dog", 9: "▁cat"}
    emb = build_embedding_matrix(vectors, id_to_piece, vocab_size=10, d_model=3)
    assert emb.matrix.shape == (10, 3) and emb.matrix.dtype == np.float32
    assert emb.covered.tolist() == [False] * 4 + [True, True, False, True, False, True]
    np.testing.assert_array_equal(emb.matrix[4], [13, 14, 15])  # ▁the, added 5th
    np.testing.assert_array_equal(emb.matrix[5], [7, 8, 9])  # s, added 3rd
    np.testing.assert_array_equal(emb.matrix[7], [1, 2, 3])  # ▁dog, added 1st
    np.testing.assert_array_equal(emb.matrix[9], [4, 5, 6])  # ▁cat, added 2nd
    assert not emb.matrix[~emb.covered].any()


def test_size_mismatch_fails_clearly(vectors) -> None:
    with pytest.raises(ValueError, match=r"vector_size=3 does not match d_model=512"):
        build_embedding_matrix(vectors, {4: "▁the"}, vocab_size=10, d_model=512)
    with pytest.raises(ValueError, match=r"outside \[0, 5\)"):
        build_embedding_matrix(vectors, {7: "▁dog"}, vocab_size=5, d_model=3)
    emb = build_embedding_matrix(vectors, {4: "▁the"}, vocab_size=10, d_model=3)
    with pytest.raises(ValueError, match=r"size 3 but d_model=8; rerun pretrain_embeddings.py"):
        emb.check_shape(vocab_size=10, d_model=8)
    with pytest.raises(ValueError, match="10 rows but the vocabulary has 12"):
        copy_into_embedding_(torch.zeros(12, 3), emb)


def test_save_load_round_trip(tmp_path, vectors) -> None:
    emb = build_embedding_matrix(vectors, {4: "▁the", 7: "▁dog"}, 8, 3, settings={"window": 5})
    npy, meta = save_pretrained(emb, tmp_path / "out" / "shared")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["shared.json", "shared.npy"]
    assert json.loads(meta.read_text())["num_covered"] == 2
    back = load_pretrained(tmp_path / "out" / "shared")
    np.testing.assert_array_equal(back.matrix, emb.matrix)
    np.testing.assert_array_equal(back.covered, emb.covered)
    assert back.settings == {"window": 5}
    np.save(npy, np.zeros((8, 4), dtype=np.float32))  # matrix replaced behind the JSON's back
    with pytest.raises(ValueError, match=r"shape \(8, 4\), but .*shared.json says \(8, 3\)"):
        load_pretrained(npy)
    with pytest.raises(FileNotFoundError, match="run pretrain_embeddings.py first"):
        load_pretrained(tmp_path / "missing")


def test_copy_into_embedding_keeps_uncovered_rows() -> None:
    matrix = np.zeros((6, 2), dtype=np.float32)
    matrix[4], matrix[5] = [1.0, 7.0], [5.0, 5.0]
    covered = np.array([False, False, False, False, True, True])
    emb = PretrainedEmbeddings(matrix=matrix, covered=covered)
    weight = torch.full((6, 2), 0.5)
    before = weight.clone()
    assert copy_into_embedding_(weight, emb, match_scale=False) == 2
    torch.testing.assert_close(weight[:4], before[:4])
    torch.testing.assert_close(weight[4:], torch.tensor([[1.0, 7.0], [5.0, 5.0]]))
    weight = torch.full((6, 2), 0.5)
    copy_into_embedding_(weight, emb, match_scale=True)
    # scaled to the replaced rows' RMS (0.5); RMS of 1, 7, 5, 5 = sqrt(100 / 4) = 5
    torch.testing.assert_close(weight[4:], torch.tensor([[0.1, 0.7], [0.5, 0.5]]))
