"""Parallel corpora: readers, SentencePiece vocabularies, prepared arrays, batching.

Modules: readers (text/TSV files, bad-input errors), download (Multi30k, sha256), corpus (which
files make each split), tokenizer and vocab (SentencePiece, cached), prepare and prepared
(memory-mapped arrays), batching (Batch, token-budget sampler), datamodule (Lightning).
"""
