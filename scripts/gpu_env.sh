# Source me on an offline GPU box (recipe: notes/gpu-box.md): asv from .whl/, environments from
# .whl/house/, the project's history from .whl/repo.bundle where the copy has no usable .git.
#   source scripts/gpu_env.sh
PY=${PYTHON:-python3}
if ! $PY -c "import asv" 2>/dev/null; then
  $PY -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/asv-site .whl/*.whl
  export PYTHONPATH=/tmp/asv-site${PYTHONPATH:+:$PYTHONPATH} PATH=/tmp/asv-site/bin:$PATH
fi
export PIP_NO_INDEX=1 PIP_FIND_LINKS=$PWD/.whl/house PYTHONUNBUFFERED=1
export PERFMODEL_BASE_SITE=$($PY -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
if [ -f .whl/repo.bundle ]; then
  # the copy's .git may be missing, broken or stale (seen: an older HEAD): history comes from
  # the bundle made right before the copy (git bundle create .whl/repo.bundle main)
  rm -rf .git
  git init -q -b main . && git fetch -q .whl/repo.bundle main && git update-ref refs/heads/main FETCH_HEAD
  git reset -q  # index = HEAD; the working tree is the copy, left as it is
fi
# Triton's and Inductor's caches (compiled kernels, autotuning choices, FX graphs) in one folder
# that can outlive the box: a box kept between commits has them, a lent box that is fresh each
# time gets them back packed in the copy (.gpu-cache.tar.xz, ignored by git, as gpu_asv.sh
# returned it in parts), unpacked here.
export PERFMODEL_GPU_CACHE=${PERFMODEL_GPU_CACHE:-$PWD/.gpu-cache}
if [ -f .gpu-cache.tar.xz ] && [ ! -d "$PERFMODEL_GPU_CACHE" ]; then
  mkdir -p "$PERFMODEL_GPU_CACHE"
  tar xJf .gpu-cache.tar.xz -C "$PERFMODEL_GPU_CACHE" --strip-components=1 ||
    echo "gpu_env: .gpu-cache.tar.xz could not be unpacked; compiling afresh" >&2
fi
export TRITON_CACHE_DIR=$PERFMODEL_GPU_CACHE/triton TORCHINDUCTOR_CACHE_DIR=$PERFMODEL_GPU_CACHE/inductor
mkdir -p "$TRITON_CACHE_DIR" "$TORCHINDUCTOR_CACHE_DIR"
# The kernels are the same on every card of one architecture (an H100's serve an H200), but the
# autotuning choices were timed on the card that made them, and their keys do not name it
# (Triton's name the architecture only): a cache from another card, or from one not named,
# keeps its kernels and drops its choices, so each machine's history is tuned on that machine.
CARD=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 || true)
if [ -n "$CARD" ] && [ "$(cat "$PERFMODEL_GPU_CACHE/card" 2>/dev/null)" != "$CARD" ]; then
  dropped=$(find "$PERFMODEL_GPU_CACHE" \( -name '*.autotune.json' -o -name '*.best_config' \) \
            -print -delete 2>/dev/null | wc -l || true)
  [ "$dropped" -gt 0 ] && echo "gpu_env: $dropped autotuning choices made on another card dropped" >&2
  printf '%s\n' "$CARD" > "$PERFMODEL_GPU_CACHE/card"
fi
git config user.email >/dev/null 2>&1 || { git config user.email gpu@box; git config user.name gpu; }
