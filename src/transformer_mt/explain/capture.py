"""Record what every module of a real forward pass received and returned.

Forward hooks on every submodule keep each call's inputs and output, and
`transformer_mt.model.record_attention` switches every attention module to its explicit path
so that Q, K, V, the scores, the mask and the softmax come out of the model's own code. Nothing
is recomputed here; hooks and the trace sinks are removed when the block ends.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from transformer_mt.model import AttentionTrace, MultiHeadAttention, record_attention


@dataclass
class Call:
    """One forward call of a module: positional and keyword inputs and the output."""

    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    output: Any

    @property
    def input(self) -> Tensor:
        """The first positional input (the hidden states for every module we read)."""
        return self.args[0]


class Recording:
    """Calls per module (by identity, so a shared embedding is found from either stack)."""

    def __init__(self, model: nn.Module) -> None:
        self._names = {module: name for name, module in model.named_modules()}
        self._calls: dict[nn.Module, list[Call]] = {m: [] for m in self._names}
        self.traces: dict[str, list[AttentionTrace]] = {}

    def modules(self) -> list[nn.Module]:
        """Every submodule of the model (and the model itself)."""
        return list(self._calls)

    def hook(self, module: nn.Module) -> Callable[..., None]:
        """A forward hook (with kwargs) that appends each call of `module`."""

        def store(_: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
            self._calls[module].append(Call(args, kwargs, output))

        return store

    def call(self, module: nn.Module) -> Call:
        """The only call of `module` in the recorded pass."""
        calls = self._calls[module]
        if len(calls) != 1:
            name = self._names[module]
            raise RuntimeError(f"expected one call of {name or 'the model'}, got {len(calls)}")
        return calls[0]

    def trace(self, module: MultiHeadAttention) -> AttentionTrace:
        """The `AttentionTrace` of the only call of an attention module."""
        traces = self.traces[self._names[module]]
        if len(traces) != 1:
            raise RuntimeError(f"expected one call of {self._names[module]}, got {len(traces)}")
        return traces[0]


@contextmanager
def recording(model: nn.Module) -> Iterator[Recording]:
    """Within the block, every call of every submodule of `model` is recorded."""
    rec = Recording(model)
    handles = [
        module.register_forward_hook(rec.hook(module), with_kwargs=True) for module in rec.modules()
    ]
    try:
        with record_attention(model) as traces:
            rec.traces = traces
            yield rec
    finally:
        for handle in handles:
            handle.remove()
