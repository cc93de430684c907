"""A finished translation and the length-normalized score it is ranked by."""

from dataclasses import dataclass, field


@dataclass
class Hypothesis:
    """One output sentence.

    tokens: target ids without BOS and without the final EOS.
    score: `log_prob / (len(tokens) + 1) ** len_penalty` (the length counts the EOS), the
        GNMT/fairseq normalization hypotheses are ranked by.
    log_prob: sum of the model's log-probabilities of the tokens and the EOS.
    positional_scores: the model's log-probability of each token, EOS last (len(tokens) + 1).
    """

    tokens: list[int]
    score: float
    log_prob: float
    positional_scores: list[float] = field(default_factory=list)


def normalized_score(log_prob: float, length: int, len_penalty: float) -> float:
    """fairseq's length penalty: `log_prob / length ** len_penalty`, `length` including EOS.

    len_penalty 0 ranks by raw log-probability (favours short outputs), 1 by the per-token
    average, larger values favour longer outputs.
    """
    return log_prob / length**len_penalty


def finished_hypothesis(
    tokens: list[int], positional_scores: list[float], log_prob: float, len_penalty: float
) -> Hypothesis:
    """Build a Hypothesis from tokens without EOS and per-position scores including the EOS."""
    score = normalized_score(log_prob, len(tokens) + 1, len_penalty)
    return Hypothesis(tokens, score, log_prob, positional_scores)
