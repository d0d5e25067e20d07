#!/usr/bin/env bash
# GPU fidelity of the tracker (run after scripts/gpu_asv.sh, which installs asv and names the
# machine): in a throwaway clone, (1) an empty commit vs its parent must show no significant
# change, (2) a planted ~12% slowdown of sdpa (one extra 1/8-batch call) must be flagged, exit 1.
#   scripts/gpu_fidelity.sh            (about 2-3 minutes on an H100)
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export PYTHONPATH=/tmp/asv-site${PYTHONPATH:+:$PYTHONPATH} PATH=/tmp/asv-site/bin:$PATH
export PIP_NO_INDEX=1 PIP_FIND_LINKS=$PWD/.whl/house PYTHONUNBUFFERED=1
export PERFMODEL_BASE_SITE=$($PY -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
M=${MACHINE:-$($PY -c 'from perfmodel.track import stack, machine_name; print(machine_name(stack()))')}
B="Attention\.time_forward\('(sdpa|eager)', 'bfloat16', 64, (1024|4096)\)"
W=/tmp/perfmodel-fidelity
rm -rf $W && git clone -q . $W && cp -r .whl $W/ && cd $W
git -c user.name=f -c user.email=f@f commit -q --allow-empty -m "noop"
$PY -m asv continuous main~1 main -b "$B" --machine "$M" 2>&1 | tail -12; echo "noop vs parent: exit ${PIPESTATUS[0]}"
sed -i 's/    return F.scaled_dot_product_attention(q, k, v, is_causal=is_causal)/    F.scaled_dot_product_attention(q[:1], k[:1], v[:1], is_causal=is_causal)  # planted\n&/' perfmodel/attention.py
git diff --stat; git -c user.name=f -c user.email=f@f commit -q -am "planted: sdpa +1/8 batch"
$PY -m asv continuous main~1 main -b "$B" --machine "$M" 2>&1 | tail -12; echo "planted vs noop: exit ${PIPESTATUS[0]}"
