#!/usr/bin/env bash
# The asv suite on a GPU box without network (recipe: ../shared/notes/asv-on-the-gpu-box.md).
#
#   scripts/gpu_asv.sh quick|full [COMMIT ...]      (default commit: HEAD)
#   DETACH=1 scripts/gpu_asv.sh full HEAD           (runs on after this command returns)
#   scripts/gpu_asv.sh wait [SECONDS]               (waits for a detached run, default 560 s)
#   scripts/gpu_asv.sh gate [BASE [HEAD]]           (the GPU merge gate: perfmodel gate, which
#                                                    compares the gpu-quick tier at factor 1.05
#                                                    and confirms what moved; exit 1 = slower)
#
# asv saves a commit's results only when the whole commit is done, so a run longer than one
# command's time limit cannot be split by killing it: DETACH=1 starts it in its own process
# session (it survives the command while the machine stays held) and waits up to WAIT seconds
# (default 560); each further call of `wait` waits again and, once the run is over, prints its
# summary and copies the results to $OUT. Issue the next call at once: an idle machine goes back.
#
# Needs: python3 with torch (+ triton) installed; the wheels in .whl/ (asv and its dependencies)
# and .whl/house/ (what asv installs into each environment); a git clone, or .whl/repo.bundle
# (git bundle create .whl/repo.bundle --all) where the copy has no .git.
# quick: the gate's cells (benchmarks/tiers.py gpu-quick, ~2 min a commit); full: every GPU cell,
# as benchmarks/tiers.py's plan: one asv run per chunk, so a run cut short keeps its chunks.
# Results land in results/<machine>/ (commit them: the GPU history ships in the repository) and,
# when $OUT is set, a copy in $OUT/results-<machine>.tar.gz (after every chunk), the asv log and
# the cost log (where each benchmark process's time went: python3 -m perfmodel.suite_cost LOG).
# CHUNKS=REGEX runs only the chunks whose names match (e.g. CHUNKS='attention|gate').
# LAUNCH=spawn compares asv's other launch method (default: forkserver, from asv.conf.json).
set -euo pipefail
tier=${1:-quick}
shift || true
DIR=/tmp/perfmodel-gpu-asv  # the detached run's log, exit status and summary
wait_detached() {  # wait_detached SECONDS: until the detached run ends or SECONDS pass
  local end=$(( $(date +%s) + $1 ))
  while [ ! -f $DIR/done ] && [ "$(date +%s)" -lt $end ]; do sleep 5; done
  # what it has so far comes back either way: results after each chunk, the cost log, the logs
  if [ -n "${OUT:-}" ]; then
    cp $DIR/results-*.tar.gz $DIR/summary /tmp/asv-*.log "$OUT/" 2>/dev/null
    for f in /tmp/perfmodel-cost-*.jsonl; do  # the cost log as it stands, the running chunk too
      [ -f "$f" ] && gzip -c "$f" > "$OUT/$(basename "$f").gz"
    done
  fi
  if [ -f $DIR/done ]; then
    cat $DIR/summary 2>/dev/null; echo "detached run over: exit $(cat $DIR/done)"
    return 0
  fi
  echo "detached run still going after $(( $(date +%s) - $(cat $DIR/start) )) s; so far:"
  cat $DIR/summary 2>/dev/null; grep -h "^\[" /tmp/asv-*.log 2>/dev/null | tail -2
  return 3
}
if [ "$tier" = wait ]; then
  wait_detached "${1:-560}"; exit $?
fi
if [ -n "${DETACH:-}" ]; then
  rm -rf $DIR && mkdir -p $DIR && date +%s > $DIR/start
  DETACH= OUT=$DIR setsid nohup bash -c "'$0' '$tier' $* > $DIR/summary 2>&1; echo \$? > $DIR/done" \
    > /dev/null 2>&1 < /dev/null &
  wait_detached "${WAIT:-560}"; exit $?
fi
commits=("$@")
[ ${#commits[@]} -eq 0 ] && commits=(HEAD)
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
# The tiers (cells, gate cells, the order of a full run) are benchmarks/tiers.py's.
mapfile -t QUICK < <($PY -m benchmarks.tiers gpu-quick)
mapfile -t PLAN < <($PY -m benchmarks.tiers --plan)  # rounds, chunk name, regexes (tab-separated)
bsel() { for r in "$@"; do printf -- '-b\0%s\0' "$r"; done; }

source scripts/gpu_env.sh
# each benchmark process appends where its time went (python3 -m perfmodel.suite_cost reads it)
export PERFMODEL_COST_LOG=${PERFMODEL_COST_LOG:-/tmp/perfmodel-cost-$tier.jsonl}

M=${MACHINE:-$($PY -c 'from perfmodel.track import stack, machine_name; print(machine_name(stack()))')}
$PY -c "from perfmodel.track import register_machine, stack; register_machine('$M', stack())"
if [ "$tier" = gate ]; then  # perfmodel gate: the device's gate tier and factor (tiers.py GATE)
  set +e
  $PY -m perfmodel gate --machine "$M" "${1:-main}" "${2:-HEAD}"
  exit $?
fi
echo "machine: $M   tier: $tier   commits: ${commits[*]}"
args=(--machine "$M" --show-stderr --record-samples)
[ -n "${LAUNCH:-}" ] && args+=(--launch-method "$LAUNCH")
save() {  # the results so far (asv saves a commit's file after each asv run), and the cost log
  [ -n "${OUT:-}" ] || return 0
  tar czf "$OUT/results-$M.tar.gz" results/"$M" results/benchmarks.json
  gzip -c "$PERFMODEL_COST_LOG" > "$OUT/cost-$tier.jsonl.gz" 2>/dev/null || true
}
# one asv run: NAME ROUNDS(0: the class's) REGEX...; appends its line to the summary
chunk() {
  local name=$1 rounds=$2; shift 2
  local sel extra=() t0 rc
  if [ -n "${CHUNKS:-}" ] && ! [[ "$name" =~ $CHUNKS ]]; then return 0; fi
  mapfile -d '' -t sel < <(bsel "$@")
  [ "$rounds" != 0 ] && extra=(-a "rounds=$rounds")
  t0=$(date +%s)
  set +e; $PY -m asv run "${args[@]}" "${sel[@]}" "${extra[@]}" "$h^!" >> "/tmp/asv-$tier-${h:0:8}.log" 2>&1; rc=$?; set -e
  echo "  ${h:0:8} $name: $(( $(date +%s) - t0 )) s, asv exit $rc"
  save
}
for c in "${commits[@]}"; do
  h=$(git rev-parse "$c")
  t0=$(date +%s)
  echo "commit ${h:0:8} ($(git log -1 --format=%s "$h" | cut -c1-60))"
  if [ "$tier" = quick ]; then
    chunk "quick tier" 0 "${QUICK[@]}"
  else  # full: the gate's cells in 2 rounds, then the rest in one, most-read cells first
    for line in "${PLAN[@]}"; do
      IFS=$'\t' read -r -a plan <<< "$line"
      chunk "${plan[1]}" "${plan[0]}" "${plan[@]:2}" < /dev/null
    done
  fi
  echo "commit ${h:0:8}: $(( $(date +%s) - t0 )) s"
done
cp /tmp/asv-$tier-*.log "${OUT:-/tmp}/" 2>/dev/null || true
