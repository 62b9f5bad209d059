"""The second stage: a cross-encoder reads each (mention, candidate term) pair and re-orders the first stage's list;
its training from accepted links with hard negatives."""

from clinlinker.rerank.cross_encoder import CrossEncoderReranker, train_cross_encoder

__all__ = ["CrossEncoderReranker", "train_cross_encoder"]
