"""The searches on the real Transformer: beam 1 == greedy, and every hypothesis' scores equal
the model's own teacher-forced log-probabilities (so caching and beam reordering are right)."""

import pytest
import torch

from transformer_mt.constants import BOS_ID, PAD_ID
from transformer_mt.decoding import beam_search, greedy_search, sample
from transformer_mt.model import Transformer, TransformerConfig

VOCAB = 40
SRC = torch.tensor(
    [[5, 9, 12, 7, 3], [8, 3, PAD_ID, PAD_ID, PAD_ID], [20, 21, 22, 3, PAD_ID]]
)  # (3, 5), each row ends with EOS


def tiny_model(pos_enc: str, seed: int = 0) -> Transformer:
    torch.manual_seed(seed)
    config = TransformerConfig(
        src_vocab_size=VOCAB, tgt_vocab_size=VOCAB, d_model=32, d_ff=64, num_heads=4,
        num_encoder_layers=2, num_decoder_layers=2, pos_enc=pos_enc,
    )  # fmt: skip
    return Transformer(config).eval()


def teacher_forced_scores(model: Transformer, src: torch.Tensor, tokens: list[int]) -> list[float]:
    """log p of each of tokens + EOS from one full causal pass (no cache)."""
    tgt_in = torch.tensor([[BOS_ID, *tokens]])
    tgt_out = torch.tensor([[*tokens, 3]])
    with torch.no_grad():
        lprobs = model(src.unsqueeze(0), tgt_in).log_softmax(-1)  # (1, T, V)
    return lprobs.gather(2, tgt_out.unsqueeze(2)).view(-1).tolist()


@pytest.mark.parametrize("pos_enc", ["sinusoidal", "rope", "alibi", "relative"])
def test_beam_hypotheses_score_as_the_full_forward(pos_enc):
    model = tiny_model(pos_enc)
    kwargs = {"max_len_a": 1.0, "max_len_b": 4}
    nbests = beam_search(model, SRC, beam_size=4, nbest=4, **kwargs)
    for row, nbest in enumerate(nbests):
        src = SRC[row][SRC[row] != PAD_ID]
        assert len(nbest) == 4
        for hyp in nbest:
            expected = teacher_forced_scores(model, src, hyp.tokens)
            assert hyp.positional_scores == pytest.approx(expected, abs=1e-4)
            assert hyp.log_prob == pytest.approx(sum(expected), abs=1e-4)
    beam1 = [nbest[0] for nbest in beam_search(model, SRC, beam_size=1, **kwargs)]
    greedy = greedy_search(model, SRC, **kwargs)
    assert [h.tokens for h in beam1] == [h.tokens for h in greedy]
    assert [h.log_prob for h in beam1] == pytest.approx([h.log_prob for h in greedy], abs=1e-4)


def test_greedy_and_sample_score_as_the_full_forward():
    model = tiny_model("sinusoidal", seed=1)
    gen = torch.Generator().manual_seed(0)
    for hyps in (greedy_search(model, SRC), sample(model, SRC, top_p=0.9, generator=gen)):
        for row, hyp in enumerate(hyps):
            expected = teacher_forced_scores(model, SRC[row][SRC[row] != PAD_ID], hyp.tokens)
            assert hyp.positional_scores == pytest.approx(expected, abs=1e-4)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_searches_on_cuda_match_cpu():
    model = tiny_model("rope")
    kwargs = {"max_len_a": 1.0, "max_len_b": 4}
    cpu_beam = beam_search(model, SRC, beam_size=3, nbest=3, **kwargs)
    cpu_greedy = greedy_search(model, SRC, **kwargs)
    model.cuda()
    gpu_beam = beam_search(model, SRC.cuda(), beam_size=3, nbest=3, **kwargs)
    gpu_greedy = greedy_search(model, SRC.cuda(), **kwargs)
    assert [[h.tokens for h in n] for n in gpu_beam] == [[h.tokens for h in n] for n in cpu_beam]
    assert [h.tokens for h in gpu_greedy] == [h.tokens for h in cpu_greedy]
    gen = torch.Generator(device="cuda").manual_seed(0)
    assert len(sample(model, SRC.cuda(), top_k=5, generator=gen)) == SRC.size(0)
