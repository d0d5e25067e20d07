#!/usr/bin/env bash
# GPU fidelity of the tracker (run after scripts/gpu_asv.sh, which installs asv and names the
# machine): in a throwaway clone, (1) an empty commit vs its parent must show no significant
# change, (2) a planted 10% slowdown of sdpa (an extra call over 31.6% of the sequence) must be
# flagged, exit 1. Both at --factor 1.05 (FACTOR=...).
#   scripts/gpu_fidelity.sh            (about 2-3 minutes on an H100)
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export PYTHONPATH=/tmp/asv-site${PYTHONPATH:+:$PYTHONPATH} PATH=/tmp/asv-site/bin:$PATH
export PIP_NO_INDEX=1 PIP_FIND_LINKS=$PWD/.whl/house PYTHONUNBUFFERED=1
export PERFMODEL_BASE_SITE=$($PY -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
M=${MACHINE:-$($PY -c 'from perfmodel.track import stack, machine_name; print(machine_name(stack()))')}
B="Attention\.time_forward\('(sdpa|eager)', 'bfloat16', 128, (4096|16384)\)"
F=${FACTOR:-1.05}  # a 10% change must pass the factor: asv flags ratio > factor only
W=/tmp/perfmodel-fidelity
rm -rf $W && git clone -q . $W && cp -r .whl $W/ && cd $W
git -c user.name=f -c user.email=f@f commit -q --allow-empty -m "noop"
$PY -m asv continuous main~1 main -b "$B" --machine "$M" --factor "$F" 2>&1 | tail -12; echo "noop vs parent: exit ${PIPESTATUS[0]}"
# planted: an extra causal SDPA over the first 31.6% of the sequence costs 0.316^2 = 10% more
python3 - <<'PY'
p = "perfmodel/attention.py"; s = open(p).read()
old = "    return F.scaled_dot_product_attention(q, k, v, is_causal=is_causal)"
cut = "    n = int(q.shape[-2] * 0.316)\n    F.scaled_dot_product_attention(q[..., :n, :], k[..., :n, :], v[..., :n, :], is_causal=is_causal)  # planted\n"
assert old in s; open(p, "w").write(s.replace(old, cut + old))
PY
git diff --stat; git -c user.name=f -c user.email=f@f commit -q -am "planted: sdpa +10%"
$PY -m asv continuous main~1 main -b "$B" --machine "$M" --factor "$F" 2>&1 | tail -12; echo "planted vs noop: exit ${PIPESTATUS[0]}"
