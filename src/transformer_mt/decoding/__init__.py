"""Search over any model that follows the incremental-decoding protocol."""

from transformer_mt.decoding.beam import beam_search
from transformer_mt.decoding.greedy import greedy_search
from transformer_mt.decoding.hypothesis import Hypothesis
from transformer_mt.decoding.protocol import IncrementalDecoder
from transformer_mt.decoding.sampling import sample, top_k_top_p_filter
from transformer_mt.decoding.search import BeamSearch, GreedySearch, Sampling, Search

__all__ = [
    "BeamSearch",
    "GreedySearch",
    "Hypothesis",
    "IncrementalDecoder",
    "Sampling",
    "Search",
    "beam_search",
    "greedy_search",
    "sample",
    "top_k_top_p_filter",
]
