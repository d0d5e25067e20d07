#!/usr/bin/env bash
# perfmodel on a GPU box without network: set it up, then call perfmodel's own commands.
#
#   scripts/gpu_asv.sh quick|full [COMMIT ...]   perfmodel track --tier gpu-quick|gpu (no publish)
#   scripts/gpu_asv.sh gate [BASE [HEAD]]        perfmodel gate (the device's gate: the gpu-quick
#                                                tier at factor 1.05, moved cells confirmed)
#   DETACH=1 scripts/gpu_asv.sh full HEAD        the same, running on after this command returns
#   scripts/gpu_asv.sh wait [SECONDS]            waits for a detached run (default 560 s)
#
# The set-up (scripts/gpu_env.sh; recipe: notes/gpu-box.md): asv from the wheels in .whl/, what
# asv installs into each environment from .whl/house/, the project's history from
# .whl/repo.bundle where the copy has no usable .git, and the box's torch reused by every
# environment. A full run takes benchmarks/tiers.py's plan as two asv runs (the gate's cells,
# then the rest, the cells that compile warmed first several at a time); CHUNKS=REGEX keeps
# the chunks it names, EACH_CHUNK=1 runs each chunk as its own asv run (each saved when it
# ends), PREWARM=N warms with N workers (0: not at all); a commit some of whose chunks never
# ran here (cut off, or not chosen) gets only those (perfmodel track's resume). A run longer
# than one command may last: DETACH=1 starts it in its own process session (it survives the
# command while the machine stays held) and waits up to WAIT seconds; each further `wait` waits
# again. Issue the next call at once: an idle machine goes back.
# When $OUT is set, what the run has so far comes back there on every return: the results
# (results.tar.gz, the whole results/: commit the box's new files, the GPU history ships in the
# repository), asv's log, Triton's and Inductor's caches (gpu-cache.tar.xz.NN: `cat` them into
# .gpu-cache.tar.xz in the copy's root for the next box, scripts/gpu_env.sh),
# the summary and the cost log (where each benchmark process's time went:
# python3 -m perfmodel.suite_cost LOG).
set -euo pipefail
tier=${1:-quick}
shift || true
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
DIR=/tmp/perfmodel-gpu-asv  # the detached run's summary and exit status
# A detached run works in a copy of the tree, there: on a lent box each further call lays the
# caller's tree over this one again, which dropped a result file the run had written (2026-12-07:
# the asv run in flight had it in memory, the next chunk's would have started without it), and
# which is the likeliest cause of the two processes a session that could not find their
# benchmark (asv_runner's lookup stats and lists the suite's files; 2026-12-06 twice, each at
# 2.7B ctx 1024, the model chunk's last cells, running when the second call began)
RUN=$DIR/tree
export PERFMODEL_COST_LOG=${PERFMODEL_COST_LOG:-/tmp/perfmodel-cost.jsonl}

collect() {  # what a run has so far, into $OUT (from the tree it runs in: here, or $RUN)
  [ -n "${OUT:-}" ] || return 0
  tar czf "$OUT/results.tar.gz" results
  cp $DIR/summary .asv/track.log "$OUT/" 2>/dev/null || true
  [ -f "$PERFMODEL_COST_LOG" ] && gzip -c "$PERFMODEL_COST_LOG" > "$OUT/cost.jsonl.gz"
  if [ -d .gpu-cache ]; then  # the compile caches, for the next box: xz (a tenth of gzip's size
    # here: the kernels' many text forms repeat each other), in parts of 15 MiB, at most 4
    # (a run still writing to it makes tar warn and exit 1: what it has is enough)
    rm -f /tmp/gpu-cache.tar.xz
    XZ_OPT=-T0 tar cJf /tmp/gpu-cache.tar.xz .gpu-cache 2>/dev/null || true
    local size; size=$(stat -c %s /tmp/gpu-cache.tar.xz 2>/dev/null || echo 0)
    echo "compile caches: $(du -sh .gpu-cache | cut -f1), packed $((size / 1048576)) MiB"
    rm -f "$OUT"/gpu-cache.tar.xz.*
    if [ "$size" -gt 0 ] && [ "$size" -lt 62000000 ]; then
      split -b 15M -d /tmp/gpu-cache.tar.xz "$OUT/gpu-cache.tar.xz." || true
    fi
  fi
  return 0
}
wait_detached() {  # wait_detached SECONDS: until the detached run ends or SECONDS pass
  local end=$(( $(date +%s) + $1 ))
  while [ ! -f $DIR/done ] && [ "$(date +%s)" -lt $end ]; do sleep 5; done
  if [ -d $RUN ]; then (cd $RUN && collect); else collect; fi
  if [ -f $DIR/done ]; then
    cat $DIR/summary 2>/dev/null || true; echo "detached run over: exit $(cat $DIR/done)"
    return 0
  fi
  echo "detached run still going after $(( $(date +%s) - $(cat $DIR/start) )) s; so far:"
  cat $DIR/summary 2>/dev/null || true
  return 3
}
if [ "$tier" = wait ]; then
  wait_detached "${1:-560}"; exit $?
fi
if [ -n "${DETACH:-}" ]; then
  rm -rf $DIR && mkdir -p $RUN && date +%s > $DIR/start
  tar cf - --exclude=./.asv --exclude=./.gpu-cache . | tar xf - -C $RUN
  DETACH= OUT= setsid nohup bash -c "cd '$RUN' && bash scripts/gpu_asv.sh '$tier' $* \
    > $DIR/summary 2>&1; echo \$? > $DIR/done" > /dev/null 2>&1 < /dev/null &
  wait_detached "${WAIT:-560}"; exit $?
fi

source scripts/gpu_env.sh
set +e
case "$tier" in
  gate) $PY -m perfmodel gate "${1:-main}" "${2:-HEAD}" ;;
  quick|full)
    [ $# -eq 0 ] && set -- HEAD
    refs=(); for c in "$@"; do refs+=(--commit "$c"); done
    [ "$tier" = quick ] && t=gpu-quick || t=gpu
    # CHUNKS=REGEX: only those chunks of a full run's plan (python3 -m benchmarks.tiers --plan);
    # EACH_CHUNK=1: one asv run per chunk; PREWARM=N: the warming's workers (0: no warming)
    $PY -m perfmodel track --tier "$t" --no-publish ${CHUNKS:+--chunk "$CHUNKS"} \
      ${EACH_CHUNK:+--each-chunk} ${PREWARM:+--prewarm "$PREWARM"} "${refs[@]}" ;;
  *) echo "usage: scripts/gpu_asv.sh quick|full [COMMIT ...] | gate [BASE [HEAD]] | wait [S]" >&2
     exit 2 ;;
esac
rc=$?
collect
exit $rc
