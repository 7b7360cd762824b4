#!/usr/bin/env bash
# The whole pipeline: folds -> train (all folds) -> predict -> tune -> submit.
#
#   bash run.sh --demo                          # generated demo data, tiny model, a few minutes on a CPU
#   bash run.sh [--config FILE] [--input DIR]   # default: pipeline/configs/default.yaml on input/
#                                               # (no data in input/ and no --input: the demo)
#   options: --workdir DIR   where folds/, experiments/, submissions/ go (default: the repo; $TGS_WORKDIR)
#            --only STAGE    run just one stage          --from STAGE   start at a stage
#            --force         rerun stages whose outputs exist (retrains folds)
#   anything after `--` is passed to train/predict/tune as key=value config overrides.
# A stage whose outputs exist and are newer than its inputs is skipped; training resumes interrupted folds.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
STAGES=(folds train predict tune submit)
config=pipeline/configs/default.yaml
input=${TGS_INPUT:-input} input_given=${TGS_INPUT:+1}
workdir=${TGS_WORKDIR:-.}
only="" from="" force=0 demo=0 overrides=()

die() { echo "error: $*" >&2; exit 2; }
while [[ $# -gt 0 ]]; do
  case $1 in
    --demo) demo=1 ;;
    --config) config=${2:?--config needs a file}; shift ;;
    --input) input=${2:?--input needs a folder} input_given=1; shift ;;
    --workdir) workdir=${2:?--workdir needs a folder}; shift ;;
    --only) only=${2:?--only needs a stage}; shift ;;
    --from) from=${2:?--from needs a stage}; shift ;;
    --force) force=1 ;;
    --) shift; overrides=("$@"); break ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) die "unknown option '$1' (see: bash run.sh --help)" ;;
  esac
  shift
done
for s in $only $from; do [[ " ${STAGES[*]} " == *" $s "* ]] || die "unknown stage '$s'; stages: ${STAGES[*]}"; done

"$PYTHON" -m pipeline.deps
if [[ $demo == 0 && -z $input_given && ! -e $input/train.csv && ! -e $input/train ]]; then
  echo "no Kaggle data in $input/ (see input/README.md): running the demo on generated data instead"
  demo=1
fi
if [[ $demo == 1 ]]; then
  config=pipeline/configs/demo.yaml workdir=demo input=demo/input
  "$PYTHON" -m pipeline.demo --out "$input"
fi
[[ -f $config ]] || die "config $config does not exist; shipped configs are in pipeline/configs/"
name=$(basename "$config" .yaml)
exp=$workdir/experiments/$name
io=(--input "$input" --workdir "$workdir")
forced=(); [[ $force == 1 ]] && forced=(--force)

wanted() {  # is stage $1 selected by --only / --from?
  [[ -n $only ]] && { [[ $1 == "$only" ]]; return; }
  [[ -z $from ]] && return 0
  local s
  for s in "${STAGES[@]}"; do [[ $s == "$from" ]] && return 0; [[ $s == "$1" ]] && return 1; done
}
fresh() {  # output $1 exists and is newer than every other path given (and --force is off)
  local out=$1; shift
  [[ $force == 0 && -e $out ]] || return 1
  local f
  for f in "$@"; do [[ -e $f && $f -nt $out ]] && return 1; done
  return 0
}
stage() { echo; echo "== $1 =="; }

start=$SECONDS
if wanted folds; then stage folds; "$PYTHON" -m pipeline.folds "${io[@]}" "${forced[@]}"; fi
if wanted train; then
  stage train
  "$PYTHON" -m pipeline.train --config "$config" --fold all --resume "${io[@]}" "${forced[@]}" "${overrides[@]}"
fi
if wanted predict; then
  stage predict
  if fresh "$exp/test_probs.npz" "$exp"/fold_*/done.json; then echo "$exp/test_probs.npz is up to date; skipped"
  else "$PYTHON" -m pipeline.predict --config "$config" "${io[@]}" "${overrides[@]}"; fi
fi
if wanted tune; then
  stage tune
  if fresh "$exp/tune.json" "$exp/test_probs.npz" "$config"; then echo "$exp/tune.json is up to date; skipped"
  else "$PYTHON" -m pipeline.tune --config "$config" "${io[@]}" "${overrides[@]}"; fi
fi
if wanted submit; then
  stage submit
  "$PYTHON" -m pipeline.submit --config "$config" "${io[@]}"
fi

echo
if [[ -f $exp/tune.json ]]; then
  "$PYTHON" -c "import json,sys; r=json.load(open(sys.argv[1])); print(f\"CV mAP {r['cv_score']:.4f} on {r['images']} out-of-fold images\")" "$exp/tune.json"
fi
[[ -f $workdir/submissions/$name.csv ]] && echo "submission: $workdir/submissions/$name.csv"
echo "wall time: $((SECONDS - start)) s"
