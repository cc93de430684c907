"""Follow one sentence through every matrix of the model: terminal, .npz dump, HTML report."""

from transformer_mt.explain.dump import write_dump
from transformer_mt.explain.fonts import font_for
from transformer_mt.explain.html import report_html, write_html
from transformer_mt.explain.render import render
from transformer_mt.explain.steps import Heatmap, Step
from transformer_mt.explain.toy import ToyTokenizer, tiny_model
from transformer_mt.explain.trace import Choice, Explanation, explain

__all__ = [
    "Choice",
    "Explanation",
    "Heatmap",
    "Step",
    "ToyTokenizer",
    "explain",
    "font_for",
    "render",
    "report_html",
    "tiny_model",
    "write_dump",
    "write_html",
]
