#!/usr/bin/env bash
# The asv suite on a GPU box without network (recipe: ../shared/notes/asv-on-the-gpu-box.md).
#
#   scripts/gpu_asv.sh quick|full [COMMIT ...]      (default commit: HEAD)
#   DETACH=1 scripts/gpu_asv.sh full HEAD           (runs on after this command returns)
#   scripts/gpu_asv.sh wait [SECONDS]               (waits for a detached run, default 560 s)
#   scripts/gpu_asv.sh gate [BASE [HEAD]]           (the GPU merge gate: asv continuous over the
#                                                    quick tier at --factor 1.05; exit 1 = slower)
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
# quick: the QUICK_GPU_REGEX subset (~1-3 min per commit); full: every GPU cell (see notes/asv.md).
# Results land in results/<machine>/ (commit them: the GPU history ships in the repository) and,
# when $OUT is set, a copy in $OUT/results-<machine>.tar.gz plus the log.
# BENCH=REGEX adds an asv -b selection (split the full tier over several 10-minute calls).
# LAUNCH=spawn compares asv's other launch method (default: forkserver, from asv.conf.json).
set -euo pipefail
tier=${1:-quick}
shift || true
DIR=/tmp/perfmodel-gpu-asv  # the detached run's log, exit status and summary
wait_detached() {  # wait_detached SECONDS: until the detached run ends or SECONDS pass
  local end=$(( $(date +%s) + $1 ))
  while [ ! -f $DIR/done ] && [ "$(date +%s)" -lt $end ]; do sleep 5; done
  if [ -f $DIR/done ]; then
    cat $DIR/summary 2>/dev/null; echo "detached run over: exit $(cat $DIR/done)"
    [ -n "${OUT:-}" ] && cp $DIR/results-*.tar.gz $DIR/*.log "$OUT/" 2>/dev/null
    return 0
  fi
  echo "detached run still going after $(( $(date +%s) - $(cat $DIR/start) )) s; last lines:"
  tail -3 $DIR/summary 2>/dev/null; grep -h "^\[" /tmp/asv-*.log 2>/dev/null | tail -2
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
# compiled and flash cells pay a torch.compile / Triton autotune in every process (10-20 s): the
# quick tier leaves them out (measured on an H100: with them the subset took 390 s). The merge
# gate's cells (scripts/gate_check.py) are quick-tier cells. Its one model cell is `small` at
# context 1024 in fp32: at 512, or in bf16, the step is host-bound on the H200 box (31-52 ms to
# issue, 17 ms of GPU work, the host's speed different in each process: scripts/gpu_noise.py)
# and an unchanged commit flagged 1.42 / 1.32 / 0.95 there (notes/gate.md). 237 s per
# `asv continuous` of both commits.
QUICK_GPU_REGEX="Attention\.[a-z_]+\('(eager|sdpa)', '[a-z0-9]+', 128, (4096|16384)\)|Model\.[a-z_]+\('small', 1024, 'fp32', 'sdpa'\)"

source scripts/gpu_env.sh

M=${MACHINE:-$($PY -c 'from perfmodel.track import stack, machine_name; print(machine_name(stack()))')}
$PY -c "from perfmodel.track import register_machine, stack; register_machine('$M', stack())"
if [ "$tier" = gate ]; then  # what notes/gate.md measured: 237 s on the H200 for both commits
  set +e
  $PY -m asv continuous --machine "$M" --factor 1.05 -b "$QUICK_GPU_REGEX" "${1:-main}" "${2:-HEAD}"
  exit $?
fi
echo "machine: $M   tier: $tier   commits: ${commits[*]}"
args=(--machine "$M" --show-stderr --record-samples)
[ "$tier" = quick ] && args+=(-b "$QUICK_GPU_REGEX")
[ -n "${BENCH:-}" ] && args+=(-b "$BENCH")   # e.g. BENCH=bench_model to split the full tier
[ -n "${LAUNCH:-}" ] && args+=(--launch-method "$LAUNCH")
for c in "${commits[@]}"; do
  h=$(git rev-parse "$c")
  t0=$(date +%s)
  set +e; $PY -m asv run "${args[@]}" "$h^!" > "/tmp/asv-$tier-${h:0:8}.log" 2>&1; rc=$?; set -e
  echo "commit ${h:0:8} ($(git log -1 --format=%s "$h" | cut -c1-60)): $(( $(date +%s) - t0 )) s, asv exit $rc"
  grep -E "^\[.*\] ··· (bench|Setting)" "/tmp/asv-$tier-${h:0:8}.log" | sed 's/^/    /' || true
done
if [ -n "${OUT:-}" ]; then
  tar czf "$OUT/results-$M.tar.gz" results/"$M" results/benchmarks.json
  cp /tmp/asv-$tier-*.log "$OUT/" 2>/dev/null || true
fi
