"""Translating text: one translator (lines in, translations out) over interchangeable backends
(this package's PyTorch model, or an exported CTranslate2 model)."""

from transformer_mt.inference.backend import Backend, TorchBackend
from transformer_mt.inference.translator import Candidate, Translation, Translator

__all__ = ["Backend", "Candidate", "TorchBackend", "Translation", "Translator"]
