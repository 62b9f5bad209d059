#!/usr/bin/env bash
# The encoding benchmark and bulk pre-annotation (`clinlinker annotate`, local and on Ray with one GPU actor) on a
# lent GPU machine (device tool), in one short run:
#   carry bench/.gpu (mentions.txt, written by: python bench/gpu_encoding.sh --prepare)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--prepare" ]; then
  mkdir -p bench/.gpu
  .venv/bin/python -c "import sys; sys.path.insert(0, 'bench'); from common import corpus_mentions; \
open('bench/.gpu/mentions.txt', 'w').write('\n'.join(corpus_mentions(4096)) + '\n')"
  exit 0
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)"
for bs in 32 512; do
  python3 bench/encoding.py --mentions-file bench/.gpu/mentions.txt --mentions 4096 --repeats 3 --device cuda \
    --batch-size "$bs" --out "encoding-gpu-batch$bs.json"
  cp "bench/results/encoding-gpu-batch$bs.json" "${OUT:-/tmp}/"
done
# annotate: 200,000 mentions (the file's, numbered beyond it) in tasks of 10 spans, batches of 512
PYTHONPATH=. python3 bench/annotate.py gpu --mentions-file bench/.gpu/mentions.txt --mentions 200000 \
  --batch-size 512 --out annotate-gpu.json
cp bench/results/annotate-gpu.json "${OUT:-/tmp}/"
