"""top-k / top-p filtering against a brute-force definition; sampling's distribution and seeds."""

import math

import pytest
import torch

from transformer_mt.decoding import greedy_search, sample, top_k_top_p_filter

UNK, A, B = 1, 4, 5


def reference_keep(logits: list[float], k: int, p: float) -> list[bool]:
    """Keep token i when fewer than k tokens are strictly more probable (top-k), then, over the
    renormalized survivors, when the mass strictly more probable than i is below p (top-p)."""
    keep = [k == 0 or sum(other > x for other in logits) < k for x in logits]
    total = sum(math.exp(x) for x, kept in zip(logits, keep, strict=True) if kept)
    probs = [math.exp(x) / total if kept else 0.0 for x, kept in zip(logits, keep, strict=True)]
    above = [sum(q for q in probs if q > prob) for prob in probs]
    return [kept and mass < p for kept, mass in zip(keep, above, strict=True)]


HAND = [0.1, 0.4, 0.2, 0.2, 0.1]  # probabilities; the two .2 and the two .1 tie


@pytest.mark.parametrize(
    ("k", "p", "kept"),
    [
        (0, 1.0, [1, 1, 1, 1, 1]),  # both filters off
        (1, 1.0, [0, 1, 0, 0, 0]),
        (2, 1.0, [0, 1, 1, 1, 0]),  # the .2 tie at the k-th place: both kept (3 tokens)
        (4, 1.0, [1, 1, 1, 1, 1]),  # each .1 has 3 < 4 tokens strictly above it
        (0, 0.3, [0, 1, 0, 0, 0]),  # .4 alone reaches .3
        (0, 0.5, [0, 1, 1, 1, 0]),  # .4 < .5, so a .2 is needed; its tie is kept too (mass .8)
        (0, 0.85, [1, 1, 1, 1, 1]),  # .8 < .85: the .1s are needed
        (2, 0.6, [0, 1, 1, 1, 0]),  # top-2 leaves .5/.25/.25; .5 < .6
        (2, 0.45, [0, 1, 0, 0, 0]),  # renormalized .5 alone reaches .45
    ],
)
def test_filter_hand_examples(k, p, kept):
    logits = torch.tensor(HAND, dtype=torch.float64).log()
    filtered = top_k_top_p_filter(logits, k, p)
    assert filtered.isfinite().long().tolist() == kept
    assert reference_keep(logits.tolist(), k, p) == [bool(x) for x in kept]
    torch.testing.assert_close(filtered[filtered.isfinite()], logits[torch.tensor(kept).bool()])


def test_filter_matches_reference_on_random_rows():
    gen = torch.Generator().manual_seed(0)
    logits = 2 * torch.randn(40, 7, generator=gen, dtype=torch.float64)  # (rows, V)
    for k in range(8):
        for p in (0.1, 0.37, 0.62, 0.9, 1.0):
            filtered = top_k_top_p_filter(logits, k, p)
            expected = [reference_keep(row, k, p) for row in logits.tolist()]
            assert filtered.isfinite().tolist() == expected, (k, p)


def test_filter_rejects_bad_arguments():
    with pytest.raises(ValueError, match="top_k"):
        top_k_top_p_filter(torch.zeros(3), -1, 1.0)
    for p in (0.0, 1.5):
        with pytest.raises(ValueError, match="top_p"):
            top_k_top_p_filter(torch.zeros(3), 0, p)


class StaticDecoder:
    """Same logits for every row and step; rows only need counting."""

    def __init__(self, logits: torch.Tensor) -> None:
        self.logits = logits  # (V,)

    def encode(self, src_ids):
        return src_ids

    def init_incremental_state(self, enc):
        return None

    def decode_step(self, prev_tokens, state):
        return self.logits.expand(prev_tokens.numel(), -1)

    def reorder_incremental_state(self, state, new_order):
        pass


# PAD and BOS get real mass here: sampling must still never produce them
LOGITS = torch.tensor([1.0, 0.5, 1.0, 0.0, 1.5, -0.5])  # PAD UNK BOS EOS A B


def _first_token_frequencies(
    temperature: float, top_k: int = 0, n: int = 8000
) -> dict[int, float]:
    # max length 2: the first token is sampled (EOS blocked by min_len 1), the second is EOS
    hyps = sample(
        StaticDecoder(LOGITS), torch.ones(n, 1, dtype=torch.long), temperature=temperature,
        top_k=top_k, max_len_a=0, max_len_b=2, generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    counts = torch.bincount(torch.tensor([h.tokens[0] for h in hyps]), minlength=6)
    return {t: c / n for t, c in enumerate(counts.tolist()) if c}


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0])
def test_temperature_scales_the_sampled_distribution(temperature):
    # allowed at step 0: UNK, A, B with p_i proportional to exp(logit_i / T)
    weights = {t: math.exp(LOGITS[t].item() / temperature) for t in (UNK, A, B)}
    total = sum(weights.values())
    freqs = _first_token_frequencies(temperature)
    assert set(freqs) <= {UNK, A, B}
    for token, weight in weights.items():
        assert freqs.get(token, 0.0) == pytest.approx(weight / total, abs=0.02)  # ~3.5 std at n = 8000


def test_top_k_applies_to_the_allowed_tokens():
    # top-2 of the allowed tokens is {A 1.5, UNK 0.5}: B never appears; PAD/BOS (1.0) were
    # masked before filtering, so they neither appear nor push UNK out
    freqs = _first_token_frequencies(1.0, top_k=2)
    assert set(freqs) == {UNK, A}
    assert freqs[A] == pytest.approx(math.exp(1.5) / (math.exp(1.5) + math.exp(0.5)), abs=0.02)


def test_sampling_is_reproducible_with_a_generator(make_random):
    src = torch.tensor([[5, 6, 7], [5, 0, 0], [9, 9, 0]])

    def draw(seed):
        gen = torch.Generator().manual_seed(seed)
        return [h.tokens for h in sample(make_random(0), src, top_p=0.9, generator=gen)]

    assert draw(0) == draw(0)
    assert any(draw(0) != draw(seed) for seed in range(1, 4))


def test_top_k_one_equals_greedy(make_random):
    src = torch.tensor([[5, 6, 7, 8], [5, 0, 0, 0], [9, 9, 0, 0], [4, 4, 4, 0]])
    greedy = greedy_search(make_random(1), src, max_len_a=1.0, max_len_b=3)
    sampled = sample(make_random(1), src, top_k=1, temperature=1.7, max_len_a=1.0, max_len_b=3)
    assert [h.tokens for h in sampled] == [h.tokens for h in greedy]
    assert [h.log_prob for h in sampled] == pytest.approx([h.log_prob for h in greedy], abs=1e-6)


def test_sample_rejects_bad_temperature():
    with pytest.raises(ValueError, match="temperature"):
        sample(StaticDecoder(LOGITS), torch.ones(1, 1, dtype=torch.long), temperature=0.0)
