"""Shared by the terminal and HTML views: which rows/columns to show and how to print a number."""

from __future__ import annotations

import math

from torch import Tensor

from transformer_mt.explain.steps import Step

ELLIPSIS = "…"


def shown_indices(size: int, limit: int) -> list[int | None]:
    """All indices when size <= limit, else the first and last limit/2 with None between them."""
    if size <= limit:
        return list(range(size))
    head = (limit + 1) // 2
    return [*range(head), None, *range(size - (limit - head), size)]


def format_number(value: float, decimals: int) -> str:
    """Rounded to `decimals`; infinities as ±inf (masked scores)."""
    if math.isinf(value):
        return "-inf" if value < 0 else "inf"
    return f"{value:.{decimals}f}"


def as_matrix(step: Step) -> tuple[Tensor, list[str] | None, list[str] | None]:
    """(n, m) tensor with its row and column labels: a vector with row labels (token ids,
    logits, top-k) becomes a column, any other vector one row."""
    tensor = step.tensor
    if tensor.dim() == 2:
        return tensor, step.rows, step.cols
    if step.rows is not None:
        return tensor[:, None], step.rows, ["value"]
    return tensor[None, :], None, step.cols


def grid(
    step: Step, decimals: int, max_rows: int, max_cols: int
) -> tuple[list[str], list[list[str]]]:
    """Column headers and rows of cells (first cell: the row label), large dimensions elided."""
    tensor, rows, cols = as_matrix(step)
    tensor = tensor.double()
    decimals = decimals if step.tensor.is_floating_point() else 0  # ids stay integers
    rows_shown = shown_indices(tensor.size(0), max_rows)
    cols_shown = shown_indices(tensor.size(1), max_cols)
    header = [""] + [ELLIPSIS if j is None else _label(cols, j) for j in cols_shown]
    body = []
    for i in rows_shown:
        if i is None:
            body.append([ELLIPSIS] * len(header))
            continue
        cells = [
            ELLIPSIS if j is None else format_number(float(tensor[i, j]), decimals)
            for j in cols_shown
        ]
        body.append([_label(rows, i) if tensor.size(0) > 1 or rows else "", *cells])
    return header, body


def _label(labels: list[str] | None, index: int) -> str:
    return labels[index] if labels is not None else str(index)


def select(steps: list[Step], prefix: str | None) -> list[Step]:
    """Steps whose name is `prefix` or starts with `prefix.` (all when prefix is None)."""
    if not prefix:
        return steps
    chosen = [s for s in steps if s.name == prefix or s.name.startswith(prefix + ".")]
    if not chosen:
        tops = list(dict.fromkeys(".".join(s.name.split(".")[:2]) for s in steps))
        raise ValueError(f"step={prefix!r} matches no step; valid prefixes: {', '.join(tops)}")
    return chosen
