"""Parallel corpora: readers, SentencePiece vocabularies, prepared arrays, batching."""
