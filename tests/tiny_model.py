"""A tiny, randomly initialised RoBERTa with a BPE tokenizer trained on the test terms.

Built locally so that no test downloads anything. Its rankings are meaningless, but it tells texts apart: its weights
are drawn with a standard deviation of 0.3 (transformers' default, 0.02, gives every text nearly the same CLS vector:
cosine >= 0.99997 between any two, so a tolerance could not tell a right vector from another text's). At 0.3, two
different demo terms have a median cosine of ~0.64 (CLS), while fp32 against bf16 stays above 0.9998 and against
int8 above 0.997; texts in a pack that see each other fall to ~0.1. Tests' tolerances sit between the two
(tests/clinlinker/encode/test_encoders.py checks that a different text fails them).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable


def build_tiny_roberta(directory: Path, corpus: Iterable[str], *, seed: int = 0, hidden: int = 32,
                       layers: int = 2, max_positions: int = 130, initializer_range: float = 0.3) -> Path:
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from tokenizers.processors import RobertaProcessing
    from transformers import PreTrainedTokenizerFast, RobertaConfig, RobertaModel

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(list(corpus), vocab_size=600, min_frequency=1,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    bpe.post_processor = RobertaProcessing(("</s>", 2), ("<s>", 0))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, bos_token="<s>", eos_token="</s>",
                                        cls_token="<s>", sep_token="</s>", pad_token="<pad>", unk_token="<unk>",
                                        mask_token="<mask>", model_max_length=max_positions - 2)
    tokenizer.save_pretrained(directory)
    config = RobertaConfig(vocab_size=len(tokenizer), hidden_size=hidden, num_hidden_layers=layers,
                           num_attention_heads=2, intermediate_size=2 * hidden,
                           max_position_embeddings=max_positions, pad_token_id=1, bos_token_id=0, eos_token_id=2,
                           initializer_range=initializer_range)
    torch.manual_seed(seed)
    RobertaModel(config, add_pooling_layer=False).save_pretrained(directory)
    return directory
