"""Word2Vec pretraining of the input embeddings: a readable torch reference of skip-gram and CBOW
with negative sampling, and gensim training on the Transformer's own SentencePiece pieces."""

from transformer_mt.word2vec.gensim_trainer import GensimResult, Word2VecSettings, train_gensim
from transformer_mt.word2vec.matrix import (
    PretrainedEmbeddings,
    build_embedding_matrix,
    copy_into_embedding_,
    load_pretrained,
    save_pretrained,
)
from transformer_mt.word2vec.pipeline import pretrain_embeddings
from transformer_mt.word2vec.reference import NegativeSamplingStep, cbow_step, skipgram_step
from transformer_mt.word2vec.tutorial import explain_toy

__all__ = [
    "GensimResult",
    "NegativeSamplingStep",
    "PretrainedEmbeddings",
    "Word2VecSettings",
    "build_embedding_matrix",
    "cbow_step",
    "copy_into_embedding_",
    "explain_toy",
    "load_pretrained",
    "pretrain_embeddings",
    "save_pretrained",
    "skipgram_step",
    "train_gensim",
]
