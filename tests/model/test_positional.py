"""Positional encodings against their papers' formulas and hand-worked values."""

import math

import pytest
import torch
from torch.testing import assert_close

from transformer_mt.model.positional import (
    ALiBiPositionalEncoding,
    LearnedPositionalEncoding,
    RotaryPositionalEncoding,
    SinusoidalPositionalEncoding,
    alibi_slopes,
    relative_position_bucket,
)


def test_sinusoidal_equals_the_papers_formula_past_its_table_too():
    d_model = 16
    encoding = SinusoidalPositionalEncoding(d_model, initial_positions=8)
    length = 20  # longer than the initial table
    expected = torch.empty(length, d_model)
    for pos in range(length):
        for i in range(d_model // 2):
            angle = pos / 10000 ** (2 * i / d_model)
            expected[pos, 2 * i] = math.sin(angle)
            expected[pos, 2 * i + 1] = math.cos(angle)
    zeros = torch.zeros(1, length, d_model)
    assert_close(encoding(zeros)[0], expected)
    assert_close(encoding(zeros[:, :3], offset=15)[0], expected[15:18])
    assert encoding.table.shape == (8, d_model)  # the table itself never changes


def test_learned_positions_past_the_table_are_an_error():
    encoding = LearnedPositionalEncoding(8, max_positions=10)
    encoding(torch.zeros(1, 10, 8))
    with pytest.raises(ValueError, match="max_positions=10"):
        encoding(torch.zeros(1, 2, 8), offset=9)


def rotate_complex(x: torch.Tensor, position: int) -> torch.Tensor:
    """Reference RoPE: pair (x_i, x_{i+d/2}) as a complex number times e^{i pos theta_i},
    theta_i = 10000^(-2i/d)."""
    half = x.size(-1) // 2
    theta = torch.tensor([10000 ** (-2 * i / x.size(-1)) for i in range(half)], dtype=torch.float64)
    z = torch.complex(x[..., :half].double(), x[..., half:].double()) * torch.polar(
        torch.ones(half, dtype=torch.float64), position * theta
    )
    return torch.cat([z.real, z.imag], -1).float()


def test_rotary_matches_complex_rotation_keeps_norms_and_is_relative():
    d_k = 8
    rope = RotaryPositionalEncoding(d_k, initial_positions=4)
    x = torch.randn(1, 1, 1, d_k)
    for position in (0, 3, 11):  # 11 is past the tables: computed for that call
        rotated = rope.rotary(1, position).rotate(x)
        assert_close(rotated[0, 0, 0], rotate_complex(x[0, 0, 0], position))
        assert_close(rotated.norm(), x.norm())

    q, k = torch.randn(1, 1, 1, d_k), torch.randn(1, 1, 1, d_k)

    def score(m: int, n: int) -> torch.Tensor:
        return (rope.rotary(1, m).rotate(q) * rope.rotary(1, n).rotate(k)).sum()

    assert rope.cos_table.shape == (4, d_k)
    assert_close(score(5, 2), score(13, 10))
    assert_close(score(0, 7), score(20, 27))
    assert not torch.allclose(score(5, 2), score(5, 4))


def test_alibi_slopes_are_the_papers_geometric_sequence():
    assert alibi_slopes(8) == [1 / 2**k for k in range(1, 9)]
    assert alibi_slopes(4) == [1 / 4, 1 / 16, 1 / 64, 1 / 256]
    # not a power of two: the 4-head slopes, then every other slope of the 8-head sequence
    assert alibi_slopes(6) == [1 / 4, 1 / 16, 1 / 64, 1 / 256, 1 / 2, 1 / 8]
    expected_12 = [2.0**-k for k in range(1, 9)] + [2**-0.5, 2**-1.5, 2**-2.5, 2**-3.5]
    assert alibi_slopes(12) == pytest.approx(expected_12)


def test_alibi_bias_is_minus_slope_times_distance():
    bias = ALiBiPositionalEncoding(2).attention_bias(3, 3)  # slopes 1/16, 1/256
    assert bias[0, 0, 2] == -2 / 16 and bias[0, 2, 0] == -2 / 16 and bias[1, 1, 1] == 0
    step = ALiBiPositionalEncoding(2).attention_bias(1, 5, offset=4)  # query at position 4
    assert_close(step[0, 0], torch.tensor([-4.0, -3.0, -2.0, -1.0, 0.0]) / 16)


@pytest.mark.parametrize(
    ("relative", "bucket"),
    [
        (0, 0),  # same position
        (-1, 1),  # one key back: exact bucket
        (-7, 7),  # last exact bucket (max_exact = 8)
        (-8, 8),  # first log bucket: 8 + floor(log(8/8) / log(16) * 8)
        (-17, 10),  # 8 + floor(log(17/8) / log(16) * 8) = 8 + floor(2.17)
        (-33, 12),  # 8 + floor(log(33/8) / log(16) * 8) = 8 + floor(4.09)
        (-1000, 15),  # beyond max_distance: last bucket
        (1, 17),  # one key ahead: upper half, 16 + 1
        (20, 26),  # 16 + 8 + floor(log(20/8) / log(16) * 8) = 16 + 8 + 2
    ],
)
def test_t5_buckets_bidirectional(relative, bucket):
    result = relative_position_bucket(torch.tensor([relative]), True, 32, 128)
    assert result.item() == bucket


@pytest.mark.parametrize(
    ("relative", "bucket"),
    [
        (3, 0),  # future keys collapse to bucket 0 (masked anyway)
        (-15, 15),  # exact (max_exact = 16)
        (-33, 21),  # 16 + floor(log(33/16) / log(8) * 16) = 16 + floor(5.57)
        (-200, 31),  # 16 + floor(19.4) = 35, clamped to the last bucket
    ],
)
def test_t5_buckets_unidirectional(relative, bucket):
    result = relative_position_bucket(torch.tensor([relative]), False, 32, 128)
    assert result.item() == bucket
