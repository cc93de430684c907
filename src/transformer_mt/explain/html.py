"""Self-contained HTML report: attention heatmaps (inline PNG) and every step's matrix.

One heatmap per head, per layer, per attention kind (encoder self-, decoder self- and
cross-attention), tokens on both axes; the decoder's maps are those of the last decoding step,
whose rows hold every earlier step (causal attention: row t is what step t computed). Drawn
with matplotlib's Agg canvas (no display needed) in a font that has the tokens' glyphs.
"""

from __future__ import annotations

import base64
import io
from html import escape
from pathlib import Path

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import Tensor

from transformer_mt.explain.dump import write_atomically
from transformer_mt.explain.fonts import INSTALL_HINT, FontChoice, font_for
from transformer_mt.explain.matrix import grid
from transformer_mt.explain.steps import ATTENTION_KINDS, Step
from transformer_mt.explain.trace import Explanation

STYLE = """
body { font-family: sans-serif; margin: 2em; }
figure.heatmap { display: inline-block; margin: 0.5em; }
table { border-collapse: collapse; margin: 0.3em 0 1em; font-size: 0.85em; }
td, th { border: 1px solid #ccc; padding: 2px 6px; text-align: right; }
td:first-child, th:first-child { text-align: left; color: #036; }
details summary { cursor: pointer; font-family: monospace; }
.warning { color: #a00; }
"""


def heatmap_png(
    probs: Tensor, rows: list[str], cols: list[str], title: str, families: tuple[str, ...]
) -> bytes:
    """PNG of a (T, S) attention matrix, queries on the y axis and keys on the x axis."""
    with matplotlib.rc_context({"font.family": list(families)}):
        size = (1.6 + 0.45 * len(cols), 1.2 + 0.45 * len(rows))
        fig = Figure(figsize=(max(size[0], 3.0), max(size[1], 2.5)), dpi=100)
        ax = fig.add_subplot()
        image = ax.imshow(probs.float().numpy(), cmap="viridis", vmin=0.0, vmax=1.0)
        ax.set_xticks(range(len(cols)), cols, rotation=90)
        ax.set_yticks(range(len(rows)), rows)
        ax.set_xlabel("key")
        ax.set_ylabel("query")
        ax.set_title(title, fontsize=9)
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
        fig.tight_layout()
        buffer = io.BytesIO()
        FigureCanvasAgg(fig).print_png(buffer)
    return buffer.getvalue()


def _heatmaps_html(explanation: Explanation, font: FontChoice) -> str:
    steps = {s.name: s for s in explanation.steps}
    parts = []
    for kind in ATTENTION_KINDS:
        maps = [h for h in explanation.heatmaps if h.kind == kind]
        parts.append(f"<h3>{escape(kind)}-attention</h3>")
        for h in maps:
            step = steps[h.step]
            title = f"{kind}: layer {h.layer}, head {h.head}"
            png = heatmap_png(step.tensor, step.rows, step.cols, title, font.families)
            data = base64.b64encode(png).decode("ascii")
            parts.append(
                f'<figure class="heatmap" data-kind="{escape(kind)}" data-layer="{h.layer}" '
                f'data-head="{h.head}"><img src="data:image/png;base64,{data}" '
                f'alt="{escape(title)}"><figcaption>{escape(h.step)}</figcaption></figure>'
            )
    return "\n".join(parts)


def _table_html(step: Step, decimals: int, max_rows: int, max_cols: int) -> str:
    header, body = grid(step, decimals, max_rows, max_cols)
    head = "".join(f"<th>{escape(c)}</th>" for c in header)
    rows = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in r) + "</tr>" for r in body)
    shape = " × ".join(str(n) for n in step.tensor.shape)
    summary = f"{escape(step.name)} — {escape(step.title)} ({shape})"
    return f"<details><summary>{summary}</summary><table><tr>{head}</tr>{rows}</table></details>"


def _choices_html(explanation: Explanation) -> str:
    rows = "".join(
        f"<tr><td>{c.step}</td><td>"
        + escape("  ".join(f"{piece} {p:.3f}" for piece, _, p in c.top))
        + f"</td><td>{escape(c.chosen[0])}</td><td>{c.chosen[2]:.3f}</td><td>{c.rank}</td></tr>"
        for c in explanation.choices
    )
    head = "<tr><th>step</th><th>top candidates (p)</th><th>chosen</th><th>p</th><th>rank</th></tr>"
    return f"<table>{head}{rows}</table>"


def report_html(
    explanation: Explanation, *, decimals: int = 3, max_rows: int = 10, max_cols: int = 10
) -> str:
    """The whole report as one HTML string (images inline, no external files)."""
    labels = explanation.source_pieces + explanation.target_pieces + ["<s>"]
    font = font_for(labels)
    cfg = explanation.config
    warning = (
        f'<p class="warning">No font with the glyphs {escape(font.missing)} was found; they '
        f"show as boxes. To fix: {escape(INSTALL_HINT)}.</p>"
        if font.missing
        else ""
    )
    steps = "\n".join(_table_html(s, decimals, max_rows, max_cols) for s in explanation.steps)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>explain: {escape(explanation.text)}</title><style>{STYLE}</style></head><body>
<h1>{escape(explanation.text)} → {escape(explanation.translation)}</h1>
<p>source pieces: {escape(" ".join(explanation.source_pieces))}<br>
target pieces: {escape(" ".join(explanation.target_pieces))}<br>
d_model={cfg.d_model}, num_heads={cfg.num_heads}, d_k={cfg.d_k}, d_ff={cfg.d_ff},
layers={cfg.num_encoder_layers}+{cfg.num_decoder_layers}, pos_enc={cfg.pos_enc},
norm_first={cfg.norm_first}, search={escape(explanation.search)}</p>
{warning}
<h2>Attention</h2>
{_heatmaps_html(explanation, font)}
<h2>Decoding</h2>
{_choices_html(explanation)}
<h2>Every step</h2>
{steps}
</body></html>
"""


def write_html(explanation: Explanation, path: str | Path, **options: int) -> Path:
    """Write `report_html(explanation, **options)` to `path` atomically."""
    path = Path(path)
    text = report_html(explanation, **options)
    write_atomically(path, lambda f: f.write(text), binary=False)
    return path
