"""Fine-tuning the bi-encoder (SapBERT-style, on the gazetteer's synonyms, hierarchy and accepted links) and
retraining a served index's models on new links."""

from clinlinker.train.fine_tune import TrainingConfig, build_pairs, retrain_index, train

__all__ = ["TrainingConfig", "build_pairs", "retrain_index", "train"]
