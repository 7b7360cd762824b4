#!/usr/bin/env bash
# The whole pipeline: folds -> train (all folds) -> predict -> tune -> submit.
#
#   bash run.sh --demo                          # generated demo data, tiny model, a few minutes on a CPU
#   bash run.sh [--config FILE] [--input DIR]   # default: default.yaml (GPU) or cpu.yaml (no GPU) on input/
#                                               # (no data in input/ and no --input: the demo)
#   options: --workdir DIR   where folds/, experiments/, submissions/ go (default: the repo; $TGS_WORKDIR)
#            --only STAGE    run just one stage          --from STAGE   start at a stage
#            --force         redo stages whose outputs are up to date (retrains folds; never re-splits)
#   anything after `--` is passed to the stages as key=value config overrides; overrides that change
#   training make a new experiment, named <config>-<digest> (printed).
# Each stage says whether its outputs are up to date, stale (and what changed) or missing, and redoes only
# what is not up to date; training resumes interrupted folds and never reuses folds trained otherwise.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
command_line="bash run.sh $*"
STAGES=(folds train predict tune submit)
config=""
input=${TGS_INPUT:-input} input_given=${TGS_INPUT:+1}
workdir=${TGS_WORKDIR:-.} workdir_given=${TGS_WORKDIR:-}
only="" from="" force=0 demo=0 overrides=()

die() { echo "error: $*" >&2; exit 2; }
while [[ $# -gt 0 ]]; do
  case $1 in
    --demo) demo=1 ;;
    --config) config=${2:?--config needs a file}; shift ;;
    --input) input=${2:?--input needs a folder} input_given=1; shift ;;
    --workdir) workdir=${2:?--workdir needs a folder} workdir_given=$2; shift ;;
    --only) only=${2:?--only needs a stage}; shift ;;
    --from) from=${2:?--from needs a stage}; shift ;;
    --force) force=1 ;;
    --) shift; overrides=("$@"); break ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
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
  config=pipeline/configs/demo.yaml workdir=${workdir_given:-demo}
  input=$([[ -n $workdir_given ]] && echo "$workdir/demo-input" || echo demo/input)
  "$PYTHON" -m pipeline.demo --out "$input"
fi
gpus=$("$PYTHON" -c "import torch; print(torch.cuda.device_count())")
if [[ -z $config ]]; then  # the recipe that fits the hardware
  if [[ $gpus -gt 0 ]]; then config=pipeline/configs/default.yaml why="$gpus GPU(s): the GPU recipe"
  else config=pipeline/configs/cpu.yaml why="no GPU: the CPU recipe (--config pipeline/configs/default.yaml forces the GPU one)"; fi
  echo "no --config given; $why, $config"
fi
[[ -f $config ]] || die "config $config does not exist; shipped configs are in pipeline/configs/"
io=(--input "$input" --workdir "$workdir")
forced=(); [[ $force == 1 ]] && forced=(--force)

# One run at a time per work folder; the stages below inherit the lock (pipeline/lib/lock.py).
mkdir -p "$workdir" 2>/dev/null && [[ -w $workdir ]] || die "cannot write the work folder $workdir; pass --workdir DIR (or set TGS_WORKDIR) to a writable folder"
if command -v flock >/dev/null; then
  exec 9>>"$workdir/.lock"
  flock -n 9 || die "work folder $workdir is in use by $(cat "$workdir/.lock.holder" 2>/dev/null || echo 'another run'); wait for it to finish, or pass another --workdir"
  echo "pid $$ ($command_line)" >"$workdir/.lock.holder"
  export TGS_LOCKED_WORKDIR=$(cd "$workdir" && pwd -P)
fi

wanted() {  # is stage $1 selected by --only / --from?
  [[ -n $only ]] && { [[ $1 == "$only" ]]; return; }
  [[ -z $from ]] && return 0
  local s
  for s in "${STAGES[@]}"; do [[ $s == "$from" ]] && return 0; [[ $s == "$1" ]] && return 1; done
}
stage() { echo; echo "== $1 =="; }

start=$SECONDS
status=$("$PYTHON" -m pipeline.status --config "$config" "${io[@]}" "${overrides[@]}")  # up to date, stale, missing
echo "$status"
name=$(sed -n '1s/^experiment \([^ ]*\).*/\1/p' <<<"$status")
exp=$workdir/experiments/$name
# The split is written once and shared by every experiment with the same number of folds (data.n_folds):
# --force never rewrites it (only `python -m pipeline.folds --force` does, which makes the folds trained on
# the old split stale).
if wanted folds; then stage folds; "$PYTHON" -m pipeline.folds --config "$config" "${io[@]}" "${overrides[@]}"; fi
if wanted train; then
  stage train
  launch=("$PYTHON")  # several GPUs: one process per GPU, each training its share of the folds
  [[ $gpus -gt 1 ]] && launch=("$PYTHON" -m torch.distributed.run --standalone --nproc_per_node="$gpus")
  "${launch[@]}" -m pipeline.train --config "$config" --fold all --resume "${io[@]}" "${forced[@]}" "${overrides[@]}"
fi
for s in predict tune submit; do  # each redoes its work only when what it was made from changed
  if wanted $s; then stage $s; "$PYTHON" -m pipeline.$s --config "$config" "${io[@]}" "${forced[@]}" "${overrides[@]}"; fi
done

echo
if [[ -f $exp/tune.json ]]; then
  "$PYTHON" -c "import json,sys; r=json.load(open(sys.argv[1])); print(f\"CV mAP {r['cv_score']:.4f} on {r['images']} out-of-fold images\")" "$exp/tune.json"
fi
[[ -f $workdir/submissions/$name.csv ]] && echo "submission: $workdir/submissions/$name.csv"
echo "wall time: $((SECONDS - start)) s"
