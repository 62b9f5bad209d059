"""Shared helpers of the benchmarks: real mentions from ../shared/data, a locally built
RoBERTa-base-sized model (ClinLinker-KB-GP's architecture, random weights), timing."""

from __future__ import annotations

import json
import platform
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data"
CACHE = ROOT / "bench" / ".cache"
RESULTS = ROOT / "bench" / "results"


def corpus_mentions(n: int, seed: int = 0, data: Path = DATA) -> list[str]:
    """n distinct gold mention texts of the three training corpora, sampled with a fixed seed."""
    from clinlinker.links import read_links

    spans = []
    for corpus in ("distemist", "symptemist", "medprocner"):
        spans += [link.span for link in read_links(data / "corpora" / f"{corpus}_train.tsv")]
    unique = sorted(set(" ".join(s.split()) for s in spans))
    random.Random(seed).shuffle(unique)
    return unique[:n]


def roberta_base_random(directory: Path, corpus: list[str], vocab_size: int = 50265) -> Path:
    """RoBERTa-base (12 layers, hidden 768, ~50k BPE vocabulary), random weights: the seed's architecture."""
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from tokenizers.processors import RobertaProcessing
    from transformers import PreTrainedTokenizerFast, RobertaConfig, RobertaModel

    if (directory / "config.json").exists():
        return directory
    directory.mkdir(parents=True, exist_ok=True)
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(corpus, vocab_size=vocab_size, min_frequency=1,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"], show_progress=False)
    bpe.post_processor = RobertaProcessing(("</s>", 2), ("<s>", 0))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, bos_token="<s>", eos_token="</s>",
                                        cls_token="<s>", sep_token="</s>", pad_token="<pad>", unk_token="<unk>",
                                        mask_token="<mask>", model_max_length=512)
    tokenizer.save_pretrained(directory)
    torch.manual_seed(0)
    config = RobertaConfig(vocab_size=vocab_size, max_position_embeddings=514, type_vocab_size=1,
                           pad_token_id=1, bos_token_id=0, eos_token_id=2)
    RobertaModel(config, add_pooling_layer=False).save_pretrained(directory)
    return directory


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def median_time(fn, repeats: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def machine() -> dict:
    import os

    info = {"python": platform.python_version(), "cpu_count": os.cpu_count(), "processor": platform.processor()}
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return info


def save(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path
