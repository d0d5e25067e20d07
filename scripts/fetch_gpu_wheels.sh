#!/usr/bin/env bash
# Where there is network: fetch what scripts/gpu_asv.sh needs on an offline GPU box (CPython 3.12,
# x86-64) into .whl/ (ignored by git), and a bundle of main for a copy that has no history.
#   scripts/fetch_gpu_wheels.sh [PYTHON_VERSION]        (default 3.12)
set -euo pipefail
cd "$(dirname "$0")/.."
py=${1:-3.12}
get() {
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$py" \
    --implementation cp --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux_2_28_x86_64 -d "$@"
}
mkdir -p .whl/house
# asv itself (virtualenv 20.29 and importlib-metadata 8.5: newer ones pull more dependencies)
# (the GPU image already has pyyaml, tabulate, build and packaging, which asv also needs)
get .whl asv==0.6.6 asv-runner==0.3.2 json5 virtualenv==20.29.3 distlib platformdirs "filelock<4" \
  pympler importlib-metadata==8.5.0 zipp
# what asv installs into each per-commit environment
get .whl/house pip wheel setuptools asv-runner==0.3.2 importlib-metadata==8.5.0 zipp pympler \
  build pyproject-hooks packaging
git bundle create .whl/repo.bundle main
du -sh .whl
