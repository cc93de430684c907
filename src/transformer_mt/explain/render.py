"""Terminal view of an `Explanation`: one rich table per step, rounded, large matrices elided."""

from __future__ import annotations

from rich import box
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from transformer_mt.explain.matrix import grid, select
from transformer_mt.explain.steps import Step
from transformer_mt.explain.trace import Explanation


def step_view(step: Step, decimals: int = 3, max_rows: int = 10, max_cols: int = 10) -> Group:
    """One step: its name, formula and shape on a line, then the (elided) matrix."""
    shape = " × ".join(str(n) for n in step.tensor.shape)
    header, body = grid(step, decimals, max_rows, max_cols)
    line = Text.assemble((step.name, "bold"), "  ", step.title, "  ", (f"({shape})", "dim"))
    table = Table(show_header=True, box=box.SIMPLE_HEAD, padding=(0, 1))
    for k, column in enumerate(header):
        table.add_column(
            column, justify="left" if k == 0 else "right", style="cyan" if k == 0 else None
        )
    for row in body:
        table.add_row(*row)
    return Group(line, table)


def _section(name: str) -> str:
    """The group a step is printed under: e.g. encoder.0.self_attn.head1 or decoder.step2.0."""
    parts = name.split(".")
    depth = 4 if len(parts) > 4 and parts[-2].startswith("head") else 3
    return ".".join(parts[: min(depth, len(parts) - 1)]) or name


def choices_table(explanation: Explanation) -> Table:
    """Per decoding step: the top-k candidates with probabilities and the chosen token."""
    table = Table(title=f"decoding ({explanation.search})", title_justify="left")
    for column in ("step", "top candidates (p)", "chosen", "p", "rank"):
        table.add_column(column)
    for c in explanation.choices:
        top = "  ".join(f"{piece} {p:.3f}" for piece, _, p in c.top)
        table.add_row(str(c.step), top, c.chosen[0], f"{c.chosen[2]:.3f}", str(c.rank))
    return table


def render(
    explanation: Explanation,
    console: Console | None = None,
    *,
    step: str | None = None,
    decimals: int = 3,
    max_rows: int = 10,
    max_cols: int = 10,
) -> None:
    """Print the steps (those under `step`, e.g. ``encoder.0.self_attn``, when given)."""
    console = console or Console()
    shown = select(explanation.steps, step)
    cfg = explanation.config
    console.rule(f"[bold]{explanation.text}[/] → {explanation.translation}")
    console.print(
        f"source pieces: {explanation.source_pieces}\ntarget pieces: {explanation.target_pieces}\n"
        f"d_model={cfg.d_model} num_heads={cfg.num_heads} d_k={cfg.d_k} d_ff={cfg.d_ff} "
        f"layers={cfg.num_encoder_layers}+{cfg.num_decoder_layers} pos_enc={cfg.pos_enc} "
        f"norm_first={cfg.norm_first} search={explanation.search}"
    )
    section = None
    for s in shown:
        if _section(s.name) != section:
            section = _section(s.name)
            console.rule(section, align="left", style="dim")
        console.print(step_view(s, decimals, max_rows, max_cols))
    if not step or step.startswith("decoder"):
        console.print(choices_table(explanation))
