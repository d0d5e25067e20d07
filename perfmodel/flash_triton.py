"""FlashAttention-2 forward and backward as Triton kernels.

Layout: (batch, heads, seq, d) tensors with d contiguous and any batch, head and row strides,
read in place (one program per query or key tile and (batch, head) pair); (batch, seq, d)
tensors are one head.  The model's heads are a transposed view of its projections, so no copy
is made of q, k, v, the output or the gradients.

Forward (``_fwd_kernel``): one program per (query tile, batch); it loops once over the key
tiles with the online softmax in float32, in the log2 domain (``exp2``, with log2(e) folded
into the softmax scale).  The key range is split in two stages: tiles that need no mask at
all (fully below the causal diagonal and inside seq_k) and the few tiles that need one (the
diagonal tiles when causal, the ragged last tile).  Causal tiles above the diagonal are
never visited.  The row logsumexp is written out (natural log) for the backward pass.

Backward: ``_bwd_preprocess_kernel`` computes D = rowsum(dO * O), then one of these variants
(``BWD_VARIANT``, from the environment variable ``PERFMODEL_FLASH_BWD`` at import; ``"auto"``,
the default, picks per call):

* ``"split"`` (the default, but for float32 above d=64: :func:`bwd_variant`):
  ``_bwd_dkdv_kernel`` holds one key tile and loops over query tiles, recomputing
  P = exp(S - L) from the saved logsumexp; ``_bwd_dq_kernel`` holds one query tile and loops
  over key tiles.  No atomics; 7 matrix products per tile pair, P twice.
* ``"atomic"``: ``_bwd_dkdv_atomic_kernel`` is the dK/dV kernel that also adds dS K into a
  float32 dQ buffer with relaxed ``tl.atomic_add`` (FlashAttention-2's own scheme), then
  ``_dq_cast_kernel`` scales it and casts to the input dtype.  5 products per pair, P once.
  The default for float32 (tf32x3) above d=64.
* ``"atomic_tma"``: the same with the query tiles read through tensor descriptors and each dQ
  tile added by the copy engine (``tensor_descriptor.atomic_add``: one bulk reduction into
  global memory per tile, FlashAttention-3's way, instead of a float32 atomic per element);
  16-bit inputs (others take ``"atomic"``). Opt-in.
* ``"fused"``: ``_bwd_fused_kernel``, program i runs the dK/dV loop for key tile i and then
  the dQ loop for query tile i (one launch; causal work per program is then constant).

No (seq_q x seq_k) tensor is ever stored.  float32 inputs use ``input_precision="tf32x3"`` in
every ``tl.dot`` (three TF32 tensor-core products per product, about float32 accuracy; plain
TF32 is never used; ``"ieee"`` FMA products by ``PERFMODEL_FLASH_FP32_PRECISION=ieee``, see
``FP32_PRECISION``), bf16/fp16 use the tensor cores with float32 accumulation; the
probabilities are cast to the input dtype before the second product of each pair.

Configs: every kernel is autotuned over a space chosen by dtype and head dim (``TUNING_SPACE``,
``TUNING_SPACE_D256``, ``TUNING_SPACE_TF32X3``, ``TUNING_SPACE_IEEE``; :func:`tuning_configs`).
``FORCE_CONFIG`` pins one config per kernel name (tests, benchmarks), and under
``TRITON_INTERPRET=1`` (Triton's CPU interpreter) ``INTERPRET_CONFIG`` is used instead of the
autotuner.

Head dims: any multiple of 8 up to 256.  The kernels compute with BLOCK_D, the next power of two
(at least 16): loads of the padding columns are masked to zeros, which add nothing to any
product, and stores skip them.  A power-of-two d keeps the unmasked loads.
"""
from __future__ import annotations

import contextlib
import inspect
import math
import os

import torch

from .flash_torch import check_heads, check_inputs

try:
    import triton
    import triton.language as tl
    import triton.testing
    _TRITON_ERROR = None
except Exception as exc:  # pragma: no cover - depends on the environment
    triton = None
    tl = None
    _TRITON_ERROR = f"{type(exc).__name__}: {exc}"

LOG2E = 1.4426950408889634
LN2 = 0.6931471805599453


def _interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def is_available(device) -> tuple[bool, str]:
    """Whether the Triton kernels can run on ``device``: (ok, one-line reason)."""
    if triton is None:
        return False, f"triton is not importable ({_TRITON_ERROR})"
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            return False, "CUDA is not available to torch"
        return True, f"triton {triton.__version__} on {torch.cuda.get_device_name(dev)}"
    if _interpreting():
        return True, f"triton {triton.__version__} interpreter (TRITON_INTERPRET=1) on {dev.type}"
    return False, f"Triton kernels need a CUDA device (or TRITON_INTERPRET=1), got {dev.type}"


# Triton's interpreter (3.6 to 3.9) keeps bfloat16 as raw 16-bit integers and multiplies those
# in tl.dot (upstream: "not supported yet"), so a bfloat16 call there would return numbers off
# by 1e9 without a word; it is refused instead.  float16 runs the same kernels' 16-bit paths.
INTERPRETER_BF16 = ("bfloat16 flash needs a GPU: Triton's interpreter multiplies bfloat16 tiles "
                    "as raw bits; on the CPU use float16 or float32")


# Fixed configuration used by the interpreter (and by callers who turn autotuning off).
# (BLOCK_M, BLOCK_N, num_warps, num_stages); BLOCK_M = query rows, BLOCK_N = key rows.
INTERPRET_CONFIG = (32, 32, 4, 1)
# How long the autotuner times each candidate config (ms of warm-up, ms of timed runs); Triton's
# own default is 25 and 100.
TRIAL_WARMUP_MS, TRIAL_REP_MS = 5, 25

# Kernel names (the keys of TUNING_SPACE and FORCE_CONFIG) and the backward variants.
KERNELS = ("fwd", "dkdv", "dq", "dkdv_atomic", "bwd_fused")
BWD_VARIANTS = {"split": ("dkdv", "dq"), "atomic": ("dkdv_atomic",), "fused": ("bwd_fused",)}
# "auto" (the default): the variant measured fastest for the inputs' dtype and head dim,
# bwd_variant() below; any name of BWD_VARIANTS pins it for every call
BWD_VARIANT = os.environ.get("PERFMODEL_FLASH_BWD", "auto")
# The forward's variants (env PERFMODEL_FLASH_FWD), each its own kernel with the forward's
# tuning space: "pointer" (plain tl.load of each tile), "tma" (Hopper's tensor memory
# accelerator through device-side tensor descriptors: one copy engine request per tile, out of
# range rows and padded head-dim columns read as zeros). Experimental: the tracked default stays
# "pointer" until the GPU shows a gain. (Triton's warp specialization of the key loop was tried
# too, compiled offline for sm_90 with Triton 3.6: a kernel whose only loop is the specialized
# one splits into producer and consumer warps with 4 warps, not with 8; but with the causal
# diagonal as well, a second loop or unrolled tiles before or after it, the compile fails, and
# one loop that masks only its last tiles fails the pipeliner even unspecialized. So not for
# the causal forward with this Triton.)
FWD_VARIANTS = {"pointer": "fwd", "tma": "fwd_tma"}
FWD_VARIANT = os.environ.get("PERFMODEL_FLASH_FWD", "pointer")
# "split_tma": the split backward with its streamed tiles read through descriptors too;
# "atomic_tma": the atomic one so, its dQ tiles added through a descriptor (16-bit inputs)
BWD_VARIANTS["split_tma"] = ("dkdv_tma", "dq_tma")
BWD_VARIANTS["atomic_tma"] = ("dkdv_atomic_tma",)
# each descriptor backward -> the pointer one a call takes where descriptors cannot read its
# inputs (_tma_ok: atomic_tma's float32 among them; split_tma's float32 splits first instead)
DESC_FALLBACK = {"split_tma": "split", "atomic_tma": "atomic"}
# kernels that read through tensor descriptors -> the kernel whose tuning space they share
DESC_TWINS = {"fwd_tma": "fwd", "dkdv_tma": "dkdv", "dq_tma": "dq",
              "dkdv_atomic_tma": "dkdv_atomic"}
# every kernel name that a launch, a shared-memory estimate or a config check takes
ALL_KERNELS = KERNELS + tuple(DESC_TWINS)

# Autotuning spaces for Hopper, (BLOCK_M, BLOCK_N, num_warps, num_stages).  BLOCK_M is always
# the query tile and BLOCK_N the key tile.  bf16/fp16 use wgmma: a 128-row tile is two
# warpgroups with 8 warps.  Every config is compiled once per (kernel, d, causal, dtype) the
# first time it is needed, so each entry costs a few seconds of compile on first use.
TUNING_SPACE = {
    "fwd": [(128, 64, 4, 3), (128, 64, 4, 4), (128, 64, 8, 3), (128, 64, 8, 4), (128, 128, 8, 2),
            (128, 128, 8, 3), (128, 128, 8, 4), (64, 64, 4, 3), (64, 128, 4, 3)],
    # holds a key tile of BLOCK_N rows (dK, dV accumulators), loops over query tiles of BLOCK_M.
    # The last two here and dQ's last: the fastest of each kernel alone on the bf16 targets
    # (--explore on an H100, 2026-12-06; each config of the two spaces passed the per-config check
    # there, 123 of 123, not yet on the H200)
    "dkdv": [(32, 128, 4, 2), (32, 128, 4, 3), (32, 128, 8, 2), (32, 128, 8, 3), (64, 128, 8, 2),
             (64, 128, 8, 3), (128, 128, 8, 2), (64, 64, 4, 2), (64, 64, 4, 3), (128, 64, 4, 2),
             (32, 64, 4, 3), (64, 64, 4, 4)],
    # holds a query tile of BLOCK_M rows (dQ accumulator), loops over key tiles of BLOCK_N
    "dq": [(128, 32, 4, 3), (128, 32, 8, 3), (64, 32, 4, 3), (128, 64, 4, 3), (128, 64, 8, 2),
           (128, 64, 8, 3), (128, 128, 8, 2), (64, 64, 4, 2), (64, 64, 4, 3), (64, 128, 4, 2),
           (128, 64, 8, 4)],
    # as dkdv, plus a (BLOCK_M x d) float32 dQ tile added atomically per step: the atomic
    # traffic is seq_q * seq_k / BLOCK_N * d adds (halved when causal), so BLOCK_N is large.
    # 8 warps: the offline sm_90 compile shows the 4-warp versions spilling (notes, v3)
    "dkdv_atomic": [(32, 128, 8, 2), (32, 128, 8, 3), (32, 128, 8, 4), (16, 128, 8, 3),
                    (64, 128, 8, 2), (64, 128, 8, 3), (64, 64, 8, 3)],
    # program i: key tile i of BLOCK_N rows with query steps of BLOCK_M, then query tile i of
    # BLOCK_N rows with key steps of BLOCK_M
    "bwd_fused": [(32, 128, 8, 2), (32, 128, 8, 3), (32, 128, 8, 4), (16, 128, 8, 3), (64, 128, 8, 3),
                  (32, 64, 8, 3)],
}
# bf16/fp16 at BLOCK_D = 256 (d from 136 to 256): the tiles above would need up to 288 KiB of
# shared memory (227 KiB per block on Hopper) or spill kilobytes per thread.  Compiled for sm_90
# offline with Triton 3.6 (`tools/bench_flash.py --resources`, notes/flash.md): these fit and
# spill least (forward 128x32 w8: none; dK/dV 32x64 w8: 320 bytes, every dK/dV tile spills).
TUNING_SPACE_D256 = {
    "fwd": [(128, 32, 8, 2), (128, 64, 8, 1), (64, 32, 4, 2), (128, 64, 8, 2)],
    "dkdv": [(32, 64, 8, 2), (64, 64, 8, 2), (32, 64, 8, 1), (16, 64, 4, 2)],
    "dq": [(128, 32, 8, 2), (64, 32, 4, 2), (64, 64, 8, 2), (128, 32, 8, 1)],
    "dkdv_atomic": [(32, 64, 8, 2), (32, 64, 8, 1), (16, 64, 4, 2)],
    "bwd_fused": [(32, 64, 8, 2), (32, 64, 8, 1), (16, 64, 4, 2)],
}
# float32 with "tf32x3" (the default): tensor-core products, but each operand tile is held
# twice (TF32 high part and remainder) and is twice the bytes of bf16, so the tiles are smaller.
# Per BLOCK_D (64 covers d <= 64); chosen from the offline sm_90 compile (regs / spill / smem,
# Triton 3.6, notes/flash.md): at d <= 64 these do not spill (dK/dV 32x128 w8: 32 bytes); at
# d=128 every dK/dV and dQ tile spills (0.4-1 KB per thread), these least within 227 KiB; at
# d=256 the only dK/dV and dQ tiles that fit have 16-32 rows (Ampere-style mma, heavy spills):
# d=256 float32 works but is slow.  No 32-row query tiles in the forward and dQ at d <= 128
# (the compiler gives them no wgmma).
#
# No tile dimension of 16 with 8 warps in these spaces (tests/test_flash.py checks every one):
# on the H200 (Triton 3.6) every such config probed at d=128 died with an illegal memory access
# (dK/dV 16x64 w8 s1 and s2, dQ 64x16 w8 s2; issue 17), while the same tiles with 4 warps and
# 32-wide tiles with 8 warps ran and matched float64.  8 warps are two warpgroups, and a 16-wide
# side leaves each of them a sliver of the tensor-core products; most likely Triton 3.6's tf32x3
# lowering gets that split wrong (not confirmed inside the compiler).  A fault is not an error
# the autotuner can skip: it poisons the process's CUDA context, so the whole class stays out
# (also at d <= 64, where dK/dV 16x128 w8 happened to run).
TUNING_SPACE_TF32X3 = {
    64: {"fwd": [(64, 32, 4, 2), (128, 32, 8, 2), (128, 64, 8, 2), (128, 64, 8, 1), (64, 64, 4, 2)],
         "dkdv": [(32, 128, 8, 2), (16, 64, 4, 2), (32, 64, 8, 2)],
         "dq": [(64, 32, 4, 2), (128, 32, 8, 2), (128, 64, 8, 2), (64, 16, 4, 2)]},
    128: {"fwd": [(128, 32, 8, 2), (64, 32, 4, 2), (64, 32, 4, 3), (128, 64, 8, 1)],
          "dkdv": [(16, 64, 4, 2), (32, 64, 8, 1)],
          "dq": [(64, 16, 4, 2), (64, 32, 4, 1), (64, 32, 4, 2)],
          # the atomic dK/dV kernel also holds K again and stages the float32 dQ tile: with
          # 64 keys it needs 224 KiB (Triton 3.6, sm_90), too close to the limit
          "dkdv_atomic": [(16, 32, 4, 2), (32, 32, 4, 2)]},
    256: {"fwd": [(64, 16, 4, 1), (64, 32, 4, 1), (64, 16, 4, 2)],
          "dkdv": [(16, 32, 4, 1), (32, 32, 4, 1)],
          "dq": [(16, 32, 4, 1), (32, 16, 4, 1), (32, 32, 4, 1)],
          "dkdv_atomic": [(16, 16, 4, 1)]},
}
# float32 with "ieee" (PERFMODEL_FLASH_FP32_PRECISION=ieee): products on the CUDA cores with
# operands and accumulators in registers.  Compiled for sm_90 offline (notes/flash.md, v3): with
# 4 warps every tile from 32x64 up spills at d >= 64, 8 warps or 16-row tiles mostly do not.
TUNING_SPACE_IEEE = [(16, 32, 4, 2), (32, 16, 4, 2), (32, 32, 8, 2), (32, 64, 8, 2), (64, 32, 8, 2),
                     (64, 64, 8, 2), (64, 64, 4, 2)]


def _ieee_fits(cfg: tuple, head_dim: int) -> bool:
    bm, bn, warps, _ = cfg
    if head_dim < 64:
        return True
    if head_dim > 128:
        return bm * bn <= 16 * 32
    if head_dim > 64:
        return bm * bn <= 32 * 64
    return bm * bn <= 32 * 64 or warps >= 8


# The v2 spaces, which passed every correctness check on an H100 (notes/flash.md, run 4), for
# bf16/fp16 with d <= 128 and for "ieee" float32.  The v3 candidates that extend them passed the
# H200's per-config check (every config of every bf16 and tf32x3 space, each forward and
# backward in its own process against float64: 314 of 314, 2026-12-03; notes/flash.md), so the
# autotuner takes them by default; PERFMODEL_FLASH_CANDIDATES=0 keeps to the v2 spaces.  The
# "ieee" float32 candidates were never checked there: they stay opt-in (=1).  Everything else
# (d > 128, "tf32x3", the atomic and fused backward) has no v2 space: its candidates are used.
VERIFIED_SPACE = {
    "fwd": [(128, 64, 4, 3), (128, 64, 4, 4), (128, 64, 8, 3), (128, 128, 8, 2), (128, 128, 8, 3),
            (64, 64, 4, 3), (64, 128, 4, 3)],
    "dkdv": [(64, 128, 8, 2), (64, 128, 8, 3), (128, 128, 8, 2), (64, 64, 4, 2), (64, 64, 4, 3),
             (128, 64, 4, 2)],
    "dq": [(128, 64, 8, 2), (128, 64, 8, 3), (128, 128, 8, 2), (64, 64, 4, 2), (64, 64, 4, 3),
           (64, 128, 4, 2)],
}
VERIFIED_SPACE_FP32 = [(64, 64, 4, 2), (64, 64, 8, 2)]

# Candidates beyond the spaces, timed by tools/bench_flash.py --explore (16-bit inputs) and
# --explore-fp32, and run by perfmodel.flash_check --explore before one may enter a space.
# 16-bit: on top of each kernel's tuning space (bf16 targets)
EXPLORE = {
    "fwd": [(128, 64, 4, 2), (128, 32, 4, 3), (128, 32, 8, 3), (64, 64, 4, 4), (64, 128, 8, 3)],
    "dkdv": [(32, 128, 8, 4), (16, 128, 8, 3), (32, 64, 8, 3), (32, 64, 4, 3), (64, 128, 4, 3),
             (64, 64, 4, 4), (64, 128, 8, 4)],
    "dq": [(64, 64, 4, 4), (128, 64, 8, 4), (128, 16, 4, 3), (128, 32, 4, 4), (128, 32, 8, 4)],
    "dkdv_atomic": [(32, 128, 4, 3), (64, 64, 4, 3), (32, 64, 8, 3), (64, 128, 4, 3), (128, 128, 8, 2)],
    "bwd_fused": [(32, 128, 4, 3), (64, 64, 4, 3), (64, 128, 8, 2), (64, 64, 8, 3), (64, 128, 4, 3)],
}
# tf32x3 float32, per BLOCK_D: tiles with a side of 32 and 4 warps, which Triton 3.6 compiles
# to Ampere-style mma.sync products rather than wgmma (offline sm_90 compile): the atomic dK/dV
# kernel's 32x32 tile ran that way on an H100 at twice the split kernels' speed (notes/flash.md,
# 2026-12-07). None has a 16-wide side with 8 warps (the class that faulted under tf32x3); each
# must fit shared memory (fits_smem) to run.
EXPLORE_FP32 = {
    64: {"dkdv": [(32, 32, 4, 2), (32, 64, 4, 2), (64, 32, 4, 2)],
         "dq": [(32, 32, 4, 2), (32, 64, 4, 2), (64, 64, 4, 2)],
         "dkdv_atomic": [(32, 32, 4, 2), (32, 32, 4, 3), (32, 64, 4, 2), (64, 32, 4, 2)]},
    128: {"dkdv": [(32, 32, 4, 2), (32, 32, 4, 3), (16, 32, 4, 2), (64, 32, 4, 1)],
          "dq": [(32, 32, 4, 2), (32, 32, 4, 3), (32, 16, 4, 2), (32, 64, 4, 1)],
          "dkdv_atomic": [(32, 32, 4, 1), (32, 32, 4, 3), (32, 32, 8, 2), (16, 64, 4, 1),
                          (64, 32, 4, 1)]},
}


def candidates_enabled(ieee: bool = False) -> bool:
    """The candidate spaces rather than the v2 ones: by default for bf16/fp16, opt-in for
    "ieee" float32 (see VERIFIED_SPACE)."""
    return os.environ.get("PERFMODEL_FLASH_CANDIDATES", "0" if ieee else "1") == "1"


# Shared memory per thread block on the H200 (sm_90): 227 KiB, the limit Triton checks a
# launch against ("out of resource: shared memory, Required: 294912, Hardware limit: 232448").
SMEM_LIMIT = 232448
# What the estimate must leave free.  smem_bytes() is never below Triton 3.6's own figure on
# any config of the spaces compiled offline for sm_90 (tests/fixtures/flash_smem_sm90.json,
# and flash_smem_sm90_twins.json for the descriptor kernels), and within 1 KiB of it on most;
# the margin covers what a different Triton version may add (a barrier, a small scratch
# buffer) without dropping fwd 128x128 s3 at d=128 (224 KiB, ran; its descriptor twin 225 KiB,
# at the margin's edge).
SMEM_MARGIN = 2048


def smem_bytes(kernel: str, cfg: tuple, dtype: torch.dtype, head_dim: int,
               both_parts: bool = False) -> int:
    """Estimated shared memory of one config (bytes): the operand tiles a kernel keeps for its
    whole loop plus one buffer per pipeline stage of the tiles it streams.  ``kernel`` may be a
    descriptor kernel (a DESC_TWINS key): its twin's figure plus what the copy engine needs.

    Tiles are (rows x BLOCK_D) of the input dtype.  Under tf32x3 each resident tile is held
    twice (TF32 high part and remainder); the streamed ones are split on the fly.  With one
    stage Triton may reuse a buffer (fwd: K and V share one), so this is an upper bound there.
    Checked against the offline sm_90 compile with Triton 3.6 (exact on the issue's datapoint:
    fwd bf16 d=80 128x128 w8 s4 needs 294912 bytes).  ``both_parts``: the descriptor backward's
    float32 path, which streams both TF32 parts of each tile too (PRE_SPLIT)."""
    bm, bn, _, stages = cfg
    bd = block_d(head_dim)
    elem = torch.empty((), dtype=dtype).element_size()
    split = 2 if dtype == torch.float32 and dot_precision(dtype) == "tf32x3" else 1
    if kernel in DESC_TWINS:
        # the copy engine's barriers and the alignment of its swizzled tiles: Triton 3.6 gives a
        # descriptor kernel at most 1024 bytes more than its pointer twin's tiles (sm_90)
        pad = 1024
        if kernel == "dkdv_atomic_tma":
            # the dK/dV loop, the float32 dQ tile staged for the copy engine's add, and dS,
            # which the dS K product reads from shared memory; K is not loaded twice here
            return (smem_bytes("dkdv", cfg, dtype, head_dim, both_parts)
                    + bm * bd * 4 + split * bm * bn * elem + pad)
        return smem_bytes(DESC_TWINS[kernel], cfg, dtype, head_dim, both_parts) + pad
    # the descriptor loads of PRE_SPLIT keep two buffers even at one stage (Triton 3.6, sm_90)
    buffers = max(2 if both_parts else 1, stages)

    def loop(resident_rows, step_rows, row_vectors):
        # two resident tiles (K, V or Q, dO); per stage two streamed tiles, and float32 row
        # vectors (the dK/dV loop streams the logsumexp and D with Q and dO: counted with one
        # buffer more than the stages, which covers what Triton 3.6 gives them)
        streamed = 2 if both_parts else 1
        return (split * 2 * resident_rows * bd * elem
                + streamed * buffers * 2 * step_rows * bd * elem
                + (buffers + 1) * row_vectors * step_rows * 4)

    if kernel == "fwd":  # Q resident, K and V streamed
        return split * bm * bd * elem + buffers * 2 * bn * bd * elem
    dkdv = loop(bn, bm, 2)
    if kernel == "dkdv":
        return dkdv
    if kernel == "dq":
        return loop(bm, bn, 0)
    if kernel == "dkdv_atomic":
        # plus K again as the B operand of dS K, and the float32 dQ tile on its way to the
        # vectorized atomic adds (both split under tf32x3); exact for most 16/32-row tiles,
        # an upper bound for 64-row ones
        return dkdv + split * (bn * bd * elem + bm * bd * 4)
    if kernel == "bwd_fused":
        # the dK/dV loop, then the dQ loop with the tiles swapped (its query tile's
        # logsumexp and D are held too); the two loops' buffers are not live together
        return max(dkdv, loop(bn, bm, 0) + 2 * bn * 4)
    raise ValueError(f"unknown kernel {kernel!r}: one of {ALL_KERNELS}")


def fits_smem(kernel: str, cfg: tuple, dtype: torch.dtype, head_dim: int,
              both_parts: bool = False) -> bool:
    return smem_bytes(kernel, cfg, dtype, head_dim, both_parts) <= SMEM_LIMIT - SMEM_MARGIN


def tuning_configs(kernel: str, dtype: torch.dtype, head_dim: int = 64) -> list[tuple]:
    """The (BLOCK_M, BLOCK_N, num_warps, num_stages) tuples autotuned for a kernel, dtype and d:
    the space for the dtype, precision and BLOCK_D, less the configs whose shared memory
    (:func:`smem_bytes`) would not fit on the H200 (for the descriptor backward kernels on
    float32, with both TF32 parts of each streamed tile: PRE_SPLIT)."""
    both_parts = (kernel in BWD_VARIANTS["split_tma"] and dtype == torch.float32
                 and dot_precision(dtype) == "tf32x3")
    name, kernel = kernel, DESC_TWINS.get(kernel, kernel)
    if kernel not in KERNELS:
        raise ValueError(f"unknown kernel {kernel!r}: one of {ALL_KERNELS}")
    bd = block_d(head_dim)
    verified = None
    ieee = dtype == torch.float32 and dot_precision(dtype) == "ieee"
    if ieee:
        space = [c for c in TUNING_SPACE_IEEE if _ieee_fits(c, head_dim)]
        if bd <= 128 and kernel in VERIFIED_SPACE:
            verified = VERIFIED_SPACE_FP32
    elif dtype == torch.float32:
        by_kernel = TUNING_SPACE_TF32X3[max(bd, 64)]
        space = by_kernel.get(kernel, by_kernel["dkdv"])  # atomic / fused: dK/dV-shaped tiles
    elif bd <= 128:
        space, verified = TUNING_SPACE[kernel], VERIFIED_SPACE.get(kernel)
    else:
        space = TUNING_SPACE_D256[kernel]
    if verified is not None and not candidates_enabled(ieee):
        space = verified
    # one space serves several BLOCK_D (bf16 d 8..128): a tile that fits at d=64 may not at
    # d=128, and Triton refuses such a launch (the autotuner would skip it, a forced launch
    # fails), so it is left out here
    return [c for c in space if fits_smem(name, c, dtype, head_dim, both_parts)]


def explore_configs(name: str, dtype: torch.dtype, head_dim: int,
                    fitting: bool = True) -> list[tuple]:
    """The candidates beyond kernel ``name``'s space for this dtype and d (EXPLORE for 16-bit
    inputs, EXPLORE_FP32 for tf32x3 float32); ``fitting``: only those that fit shared memory
    (a launch of any other fails; the offline compile takes them all to show their figures)."""
    base = DESC_TWINS.get(name, name)
    if dtype == torch.float32:
        if dot_precision(dtype) != "tf32x3":
            return []
        more = EXPLORE_FP32.get(block_d(head_dim), {}).get(base, [])
    else:
        more = EXPLORE.get(base, [])
    both = launched_pre_split(name, dtype, head_dim)
    return [c for c in more if not fitting or fits_smem(name, c, dtype, head_dim, both)]


def config_meta(cfg: tuple) -> dict:
    """Launch keywords for one config tuple."""
    return dict(BLOCK_M=cfg[0], BLOCK_N=cfg[1], num_warps=cfg[2], num_stages=cfg[3])


# Per kernel name, a config tuple that replaces the autotuner (and the interpreter's fixed
# config): set it through :func:`forced` in tests and benchmarks.
FORCE_CONFIG: dict[str, tuple] = {}


@contextlib.contextmanager
def forced(configs: dict | None = None, variant: str | None = None, fwd: str | None = None):
    """Pin configs per kernel name, the backward variant and/or the forward's inside a
    ``with`` block."""
    global BWD_VARIANT, FWD_VARIANT
    old_cfg, old_var, old_fwd = dict(FORCE_CONFIG), BWD_VARIANT, FWD_VARIANT
    try:
        FORCE_CONFIG.update(configs or {})
        if variant is not None:
            BWD_VARIANT = variant
        if fwd is not None:
            FWD_VARIANT = fwd
        yield
    finally:
        FORCE_CONFIG.clear()
        FORCE_CONFIG.update(old_cfg)
        BWD_VARIANT, FWD_VARIANT = old_var, old_fwd


def _triton_configs(kernel):
    kernel = DESC_TWINS.get(kernel, kernel)
    space = set(TUNING_SPACE[kernel]) | set(TUNING_SPACE_D256[kernel]) | set(TUNING_SPACE_IEEE)
    for by_kernel in TUNING_SPACE_TF32X3.values():
        space |= set(by_kernel.get(kernel, by_kernel["dkdv"]))
    space = sorted(space)
    return [triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=w, num_stages=s)
            for bm, bn, w, s in space]


def _pruner(kernel):
    def prune(configs, named_args, **kwargs):
        q = named_args["Q"]
        head_dim = kwargs.get("HEAD_DIM", q.shape[-1])
        wanted = set(tuning_configs(kernel, q.dtype, head_dim))
        return [c for c in configs
                if (c.kwargs["BLOCK_M"], c.kwargs["BLOCK_N"], c.num_warps, c.num_stages) in wanted]
    return prune


if triton is not None:

    @triton.jit
    def _load(ptrs, rows, n_rows, offs_d, ROW_MASK: tl.constexpr, HEAD_DIM: tl.constexpr,
              BLOCK_D: tl.constexpr):
        # a (rows x BLOCK_D) tile: rows past n_rows (when ROW_MASK) and the columns of a head
        # dim padded up to BLOCK_D read as zeros, which add nothing to any product; a head dim
        # that is a power of two keeps the plain (vectorized, unmasked) loads
        if HEAD_DIM == BLOCK_D:
            if ROW_MASK:
                x = tl.load(ptrs, mask=rows[:, None] < n_rows, other=0.0)
            else:
                x = tl.load(ptrs)
        else:
            if ROW_MASK:
                x = tl.load(ptrs, mask=(rows[:, None] < n_rows) & (offs_d[None, :] < HEAD_DIM),
                            other=0.0)
            else:
                x = tl.load(ptrs, mask=offs_d[None, :] < HEAD_DIM, other=0.0)
        return x

    @triton.jit
    def _head(bh, H, stride_b, stride_h):
        # program (batch * H + head)'s first element in a (batch, head, seq, d) tensor of any
        # batch, head and row strides: the model's q, k, v and gradients need no copy
        return (bh // H) * stride_b + (bh % H) * stride_h

    @triton.jit
    def _tf32_split(x):
        # x = hi + lo exactly: hi keeps TF32's 10 mantissa bits, rounded to nearest (ties away,
        # as cvt.rna.tf32: half a unit added to the magnitude, the dropped bits cleared);
        # tf32_split() is the same on the host
        hi = ((x.to(tl.int32, bitcast=True) + 0x1000) & -8192).to(tl.float32, bitcast=True)
        return hi, x - hi

    @triton.jit
    def _dot3(a, a_lo, b, b_lo):
        # a @ b in about float32's precision from three TF32 products, a and b given as their
        # TF32 high parts and remainders (PRE_SPLIT), small products first, every operand a
        # tile as loaded (Triton's own tf32x3 splits inside the kernel, and a split tile held
        # through the loop lives in registers: its float32 d=128 dK/dV kernel spilled about 1 KB
        # a thread, offline sm_90 compile). The chain starts from zero and the caller adds it to
        # its running sum with a float32 add, as Triton's tf32x3 does: chained into the running
        # dK, dV or dQ itself, the sum went through the tensor cores' accumulation, which on
        # Hopper keeps fewer bits than a float32 add and drops them one way, so the error grew
        # with the sequence (H100: dV 1.1e-5 at s1024, 6e-4 against SDPA at s65536).
        acc = tl.dot(a_lo, b, input_precision="tf32")
        acc = tl.dot(a, b_lo, acc, input_precision="tf32")
        return tl.dot(a, b, acc, input_precision="tf32")

    @triton.jit
    def _desc(X, bh, H, stride_b, stride_h, stride_row, n_rows, HEAD_DIM: tl.constexpr,
              ROWS: tl.constexpr, BLOCK_D: tl.constexpr):
        # one head of a (batch, head, seq, d) tensor as a tensor descriptor of (ROWS x BLOCK_D)
        # tiles: rows past n_rows and columns past HEAD_DIM read as zeros
        return tl.make_tensor_descriptor(X + _head(bh, H, stride_b, stride_h), shape=[n_rows, HEAD_DIM],
                                         strides=[stride_row, 1], block_shape=[ROWS, BLOCK_D])

    @triton.jit
    def _query_tile_id(IS_CAUSAL: tl.constexpr):
        # a program's query tile; causal: the last query tiles have the most key tiles, so they
        # start first
        pid_m = tl.program_id(0)
        if IS_CAUSAL:
            pid_m = tl.num_programs(0) - 1 - pid_m
        return pid_m

    @triton.jit
    def _key_bounds(start_m, seq_k, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                    IS_CAUSAL: tl.constexpr):
        # a query tile's keys: [0, mid) need no mask (causal: the key tiles wholly before the
        # query tile, and inside seq_k), [mid, hi) do
        if IS_CAUSAL:
            hi = tl.minimum(start_m + BLOCK_M, seq_k)
            mid = tl.minimum(start_m, seq_k) // BLOCK_N * BLOCK_N
        else:
            hi = seq_k
            mid = seq_k // BLOCK_N * BLOCK_N
        return mid, hi

    @triton.jit
    def _query_bounds(start_n, seq_q, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                      IS_CAUSAL: tl.constexpr):
        # a key tile's queries: [lo, mid) the diagonal tiles, masked (causal: queries i >=
        # start_n see this tile; tiles from start_n + BLOCK_N on see all of it); [mid,
        # full_end) full tiles, no mask; [max(mid, full_end), seq_q) the ragged last one, masked
        full_end = seq_q // BLOCK_M * BLOCK_M
        if IS_CAUSAL:
            lo = start_n // BLOCK_M * BLOCK_M
            mid = tl.cdiv(start_n + BLOCK_N, BLOCK_M) * BLOCK_M
        else:
            lo = 0
            mid = 0
        return lo, mid, full_end

    @triton.jit
    def _fwd_store(acc, l_i, m_i, O, LSE, bh, H, stride_ob, stride_oh, stride_om, offs_m, offs_d,
                   seq_q, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr):
        # every row sees key 0 (top-left causal alignment, seq_k >= 1), so l_i > 0
        acc = acc / l_i[:, None]
        lse = (m_i + tl.math.log2(l_i)) * 0.6931471805599453  # back to natural log
        tl.store(LSE + bh * seq_q + offs_m, lse, mask=offs_m < seq_q)
        _store(O + _head(bh, H, stride_ob, stride_oh) + offs_m[:, None] * stride_om + offs_d[None, :],
               acc.to(O.dtype.element_ty), offs_m, seq_q, offs_d, HEAD_DIM, BLOCK_D)

    @triton.jit
    def _store(ptrs, x, rows, n_rows, offs_d, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr):
        if HEAD_DIM == BLOCK_D:
            tl.store(ptrs, x, mask=rows[:, None] < n_rows)
        else:
            tl.store(ptrs, x, mask=(rows[:, None] < n_rows) & (offs_d[None, :] < HEAD_DIM))

    @triton.jit
    def _softmax_step(qk, l_i, m_i, cols, offs_m, seq_k, qk_scale, MASK: tl.constexpr,
                      IS_CAUSAL: tl.constexpr):
        # one key tile of the online softmax, in exp2's domain: the tile's probabilities (not yet
        # normalized), the factor that rescales what was summed before, the new row sums and maxima
        if MASK:
            valid = cols[None, :] < seq_k
            if IS_CAUSAL:
                valid = valid & (cols[None, :] <= offs_m[:, None])
            qk = tl.where(valid, qk * qk_scale, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(qk, 1))
            qk = qk - m_new[:, None]
        else:
            m_new = tl.maximum(m_i, tl.max(qk, 1) * qk_scale)
            qk = qk * qk_scale - m_new[:, None]
        p = tl.math.exp2(qk)
        alpha = tl.math.exp2(m_i - m_new)
        l_i = l_i * alpha + tl.sum(p, 1)
        return p, alpha, l_i, m_new

    @triton.jit
    def _fwd_inner(acc, l_i, m_i, q, k_ptrs, v_ptrs, stride_kn, stride_vn, offs_m, offs_n, offs_d,
                   lo, hi, seq_k, qk_scale,
                   BLOCK_N: tl.constexpr, MASK: tl.constexpr, IS_CAUSAL: tl.constexpr,
                   DOT_PREC: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr):
        k_ptrs += lo * stride_kn
        v_ptrs += lo * stride_vn
        for start_n in range(lo, hi, BLOCK_N):
            start_n = tl.multiple_of(start_n, BLOCK_N)
            cols = start_n + offs_n
            k = _load(k_ptrs, cols, seq_k, offs_d, MASK, HEAD_DIM, BLOCK_D)
            qk = tl.dot(q, tl.trans(k), input_precision=DOT_PREC)
            p, alpha, l_i, m_i = _softmax_step(qk, l_i, m_i, cols, offs_m, seq_k, qk_scale,
                                               MASK, IS_CAUSAL)
            acc = acc * alpha[:, None]
            v = _load(v_ptrs, cols, seq_k, offs_d, MASK, HEAD_DIM, BLOCK_D)
            acc = tl.dot(p.to(v.dtype), v, acc, input_precision=DOT_PREC)
            k_ptrs += BLOCK_N * stride_kn
            v_ptrs += BLOCK_N * stride_vn
        return acc, l_i, m_i

    @triton.jit
    def _fwd_desc_inner(acc, l_i, m_i, q, k_desc, v_desc, offs_m, offs_n, lo, hi, seq_k,
                        qk_scale, BLOCK_N: tl.constexpr, MASK: tl.constexpr,
                        IS_CAUSAL: tl.constexpr, DOT_PREC: tl.constexpr):
        # _fwd_inner with the tiles fetched through tensor descriptors (rows past seq_k and
        # padded head-dim columns arrive as zeros, so no load needs a mask)
        for start_n in range(lo, hi, BLOCK_N):
            start_n = tl.multiple_of(start_n, BLOCK_N)
            k = k_desc.load([start_n, 0])
            qk = tl.dot(q, tl.trans(k), input_precision=DOT_PREC)
            p, alpha, l_i, m_i = _softmax_step(qk, l_i, m_i, start_n + offs_n, offs_m, seq_k,
                                               qk_scale, MASK, IS_CAUSAL)
            acc = acc * alpha[:, None]
            v = v_desc.load([start_n, 0])
            acc = tl.dot(p.to(v.dtype), v, acc, input_precision=DOT_PREC)
        return acc, l_i, m_i

    @triton.jit
    def _fwd_kernel(Q, K, V, O, LSE, qk_scale,
                    stride_qb, stride_qh, stride_qm, stride_kb, stride_kh, stride_kn,
                    stride_vb, stride_vh, stride_vn, stride_ob, stride_oh, stride_om, H,
                    seq_q, seq_k,
                    HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                    IS_CAUSAL: tl.constexpr, DOT_PREC: tl.constexpr, BLOCK_D: tl.constexpr):
        bh = tl.program_id(1).to(tl.int64)
        start_m = _query_tile_id(IS_CAUSAL) * BLOCK_M
        offs_m = start_m + tl.arange(0, BLOCK_M)
        offs_n = tl.arange(0, BLOCK_N)
        offs_d = tl.arange(0, BLOCK_D)
        q = _load(Q + _head(bh, H, stride_qb, stride_qh) + offs_m[:, None] * stride_qm
                  + offs_d[None, :], offs_m, seq_q, offs_d, True, HEAD_DIM, BLOCK_D)
        k_ptrs = K + _head(bh, H, stride_kb, stride_kh) + offs_n[:, None] * stride_kn + offs_d[None, :]
        v_ptrs = V + _head(bh, H, stride_vb, stride_vh) + offs_n[:, None] * stride_vn + offs_d[None, :]
        m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
        l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
        acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
        mid, hi = _key_bounds(start_m, seq_k, BLOCK_M, BLOCK_N, IS_CAUSAL)
        acc, l_i, m_i = _fwd_inner(acc, l_i, m_i, q, k_ptrs, v_ptrs, stride_kn, stride_vn,
                                   offs_m, offs_n, offs_d, 0, mid, seq_k, qk_scale,
                                   BLOCK_N, False, IS_CAUSAL, DOT_PREC, HEAD_DIM, BLOCK_D)
        acc, l_i, m_i = _fwd_inner(acc, l_i, m_i, q, k_ptrs, v_ptrs, stride_kn, stride_vn,
                                   offs_m, offs_n, offs_d, mid, hi, seq_k, qk_scale,
                                   BLOCK_N, True, IS_CAUSAL, DOT_PREC, HEAD_DIM, BLOCK_D)
        _fwd_store(acc, l_i, m_i, O, LSE, bh, H, stride_ob, stride_oh, stride_om, offs_m, offs_d,
                   seq_q, HEAD_DIM, BLOCK_D)

    @triton.jit
    def _fwd_tma_kernel(Q, K, V, O, LSE, qk_scale,
                        stride_qb, stride_qh, stride_qm, stride_kb, stride_kh, stride_kn,
                        stride_vb, stride_vh, stride_vn, stride_ob, stride_oh, stride_om, H,
                        seq_q, seq_k,
                        HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                        IS_CAUSAL: tl.constexpr, DOT_PREC: tl.constexpr, BLOCK_D: tl.constexpr):
        # _fwd_kernel's program, its Q, K and V read through one descriptor each per head
        # (device-side: Triton writes them into scratch from triton.set_allocator); needs 16-byte
        # aligned heads and row strides (_tma_ok)
        bh = tl.program_id(1).to(tl.int64)
        start_m = _query_tile_id(IS_CAUSAL) * BLOCK_M
        offs_m = start_m + tl.arange(0, BLOCK_M)
        offs_n = tl.arange(0, BLOCK_N)
        offs_d = tl.arange(0, BLOCK_D)
        q = _desc(Q, bh, H, stride_qb, stride_qh, stride_qm, seq_q, HEAD_DIM, BLOCK_M, BLOCK_D).load([start_m, 0])
        k_desc = _desc(K, bh, H, stride_kb, stride_kh, stride_kn, seq_k, HEAD_DIM, BLOCK_N, BLOCK_D)
        v_desc = _desc(V, bh, H, stride_vb, stride_vh, stride_vn, seq_k, HEAD_DIM, BLOCK_N, BLOCK_D)
        m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
        l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
        acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
        mid, hi = _key_bounds(start_m, seq_k, BLOCK_M, BLOCK_N, IS_CAUSAL)
        acc, l_i, m_i = _fwd_desc_inner(acc, l_i, m_i, q, k_desc, v_desc, offs_m, offs_n, 0, mid,
                                        seq_k, qk_scale, BLOCK_N, False, IS_CAUSAL, DOT_PREC)
        acc, l_i, m_i = _fwd_desc_inner(acc, l_i, m_i, q, k_desc, v_desc, offs_m, offs_n, mid, hi,
                                        seq_k, qk_scale, BLOCK_N, True, IS_CAUSAL, DOT_PREC)
        # a plain store: a descriptor's would stage the tile in shared memory the loop needs
        _fwd_store(acc, l_i, m_i, O, LSE, bh, H, stride_ob, stride_oh, stride_om, offs_m, offs_d,
                   seq_q, HEAD_DIM, BLOCK_D)

    @triton.jit
    def _bwd_preprocess_kernel(O, DO, Delta, stride_ob, stride_oh, stride_om, stride_dob,
                               stride_doh, stride_dom, H, seq_q, HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr):
        bh = tl.program_id(1).to(tl.int64)
        offs_m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
        offs_d = tl.arange(0, BLOCK_D)
        row_ok = offs_m < seq_q
        o = _load(O + _head(bh, H, stride_ob, stride_oh) + offs_m[:, None] * stride_om
                  + offs_d[None, :], offs_m, seq_q, offs_d, True, HEAD_DIM, BLOCK_D).to(tl.float32)
        do = _load(DO + _head(bh, H, stride_dob, stride_doh) + offs_m[:, None] * stride_dom
                   + offs_d[None, :], offs_m, seq_q, offs_d, True, HEAD_DIM, BLOCK_D).to(tl.float32)
        tl.store(Delta + bh * seq_q + offs_m, tl.sum(o * do, 1), mask=row_ok)

    @triton.jit
    def _probs_t(qkT, lse, rows, offs_n, qk_scale, MASK: tl.constexpr, IS_CAUSAL: tl.constexpr):
        # P^T of a (key, query) tile from its scores and the queries' logsumexp (natural log)
        pT = tl.math.exp2(qkT * qk_scale - (lse * 1.4426950408889634)[None, :])
        if MASK:
            if IS_CAUSAL:
                pT = tl.where(rows[None, :] >= offs_n[:, None], pT, 0.0)
        return pT

    @triton.jit
    def _dkdv_step(dk, dv, k, v, q, do, lse, delta, rows, offs_n, qk_scale, MASK: tl.constexpr,
                   IS_CAUSAL: tl.constexpr, DOT_PREC: tl.constexpr):
        # one query tile against the held key tile: dV += P^T dO, dK += dS^T Q (unscaled);
        # returns dS^T too (the atomic variant's dQ)
        # both products first: dP^T can run on the tensor cores while the exp2s run
        qkT = tl.dot(k, tl.trans(q), input_precision=DOT_PREC)  # (BLOCK_N, BLOCK_M)
        dpT = tl.dot(v, tl.trans(do), input_precision=DOT_PREC)
        pT = _probs_t(qkT, lse, rows, offs_n, qk_scale, MASK, IS_CAUSAL)
        dv = tl.dot(pT.to(do.dtype), do, dv, input_precision=DOT_PREC)
        dsT = (pT * (dpT - delta[None, :])).to(q.dtype)
        dk = tl.dot(dsT, q, dk, input_precision=DOT_PREC)
        return dk, dv, dsT

    @triton.jit
    def _dkdv_step_pre(dk, dv, k, k_lo, v, v_lo, q, q_lo, do, do_lo, lse, delta, rows, offs_n,
                       qk_scale, MASK: tl.constexpr, IS_CAUSAL: tl.constexpr):
        # _dkdv_step on float32 operands given as TF32 parts (PRE_SPLIT)
        qkT = _dot3(k, k_lo, tl.trans(q), tl.trans(q_lo))
        dpT = _dot3(v, v_lo, tl.trans(do), tl.trans(do_lo))
        pT = _probs_t(qkT, lse, rows, offs_n, qk_scale, MASK, IS_CAUSAL)
        p_hi, p_lo = _tf32_split(pT)
        dv += _dot3(p_hi, p_lo, do, do_lo)
        ds_hi, ds_lo = _tf32_split(pT * (dpT - delta[None, :]))
        dk += _dot3(ds_hi, ds_lo, q, q_lo)
        return dk, dv

    @triton.jit
    def _bwd_dkdv_inner(dk, dv, k, v, q_ptrs, do_ptrs, lse_ptrs, delta_ptrs, dq_ptrs,
                        stride_qm, stride_dom, stride_dqm, offs_n, offs_m, offs_d, lo, hi, seq_q,
                        qk_scale, BLOCK_M: tl.constexpr, MASK: tl.constexpr, IS_CAUSAL: tl.constexpr,
                        DOT_PREC: tl.constexpr, ATOMIC_DQ: tl.constexpr, HEAD_DIM: tl.constexpr,
                        BLOCK_D: tl.constexpr):
        q_ptrs += lo * stride_qm
        do_ptrs += lo * stride_dom
        lse_ptrs += lo
        delta_ptrs += lo
        if ATOMIC_DQ:
            dq_ptrs += lo * stride_dqm
        for start_m in range(lo, hi, BLOCK_M):
            start_m = tl.multiple_of(start_m, BLOCK_M)
            rows = start_m + offs_m
            q = _load(q_ptrs, rows, seq_q, offs_d, MASK, HEAD_DIM, BLOCK_D)
            do = _load(do_ptrs, rows, seq_q, offs_d, MASK, HEAD_DIM, BLOCK_D)
            if MASK:
                row_ok = rows < seq_q
                # padded query rows get lse = +inf, hence P = 0: they add nothing
                lse = tl.load(lse_ptrs, mask=row_ok, other=float("inf"))
                delta = tl.load(delta_ptrs, mask=row_ok, other=0.0)
            else:
                lse = tl.load(lse_ptrs)
                delta = tl.load(delta_ptrs)
            dk, dv, dsT = _dkdv_step(dk, dv, k, v, q, do, lse, delta, rows, offs_n, qk_scale,
                                     MASK, IS_CAUSAL, DOT_PREC)
            if ATOMIC_DQ:
                # dQ rows of this query tile += dS K (unscaled; padded keys have k = 0)
                dq = tl.dot(tl.trans(dsT), k, input_precision=DOT_PREC)  # (BLOCK_M, BLOCK_D)
                if HEAD_DIM == BLOCK_D:
                    if MASK:
                        tl.atomic_add(dq_ptrs, dq, mask=row_ok[:, None], sem="relaxed")
                    else:
                        tl.atomic_add(dq_ptrs, dq, sem="relaxed")
                else:
                    d_ok = offs_d[None, :] < HEAD_DIM
                    if MASK:
                        tl.atomic_add(dq_ptrs, dq, mask=row_ok[:, None] & d_ok, sem="relaxed")
                    else:
                        tl.atomic_add(dq_ptrs, dq, mask=d_ok, sem="relaxed")
                dq_ptrs += BLOCK_M * stride_dqm
            q_ptrs += BLOCK_M * stride_qm
            do_ptrs += BLOCK_M * stride_dom
            lse_ptrs += BLOCK_M
            delta_ptrs += BLOCK_M
        return dk, dv

    @triton.jit
    def _dkdv_tile(Q, K, V, DO, DK, DV, DQ, LSE, Delta, qk_scale, sm_scale,
                   stride_qb, stride_qh, stride_qm, stride_kb, stride_kh, stride_kn,
                   stride_vb, stride_vh, stride_vn, stride_dob, stride_doh, stride_dom,
                   stride_dqb, stride_dqh, stride_dqm, H, seq_q, seq_k, pid_n, bh,
                   HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                   IS_CAUSAL: tl.constexpr, DOT_PREC: tl.constexpr, ATOMIC_DQ: tl.constexpr,
                   BLOCK_D: tl.constexpr):
        # BLOCK_N keys held by this program, loop over query tiles of BLOCK_M rows
        start_n = pid_n * BLOCK_N
        offs_n = start_n + tl.arange(0, BLOCK_N)
        offs_m = tl.arange(0, BLOCK_M)
        offs_d = tl.arange(0, BLOCK_D)
        k_off = _head(bh, H, stride_kb, stride_kh)
        v_off = _head(bh, H, stride_vb, stride_vh)
        k = _load(K + k_off + offs_n[:, None] * stride_kn + offs_d[None, :],
                  offs_n, seq_k, offs_d, True, HEAD_DIM, BLOCK_D)
        v = _load(V + v_off + offs_n[:, None] * stride_vn + offs_d[None, :],
                  offs_n, seq_k, offs_d, True, HEAD_DIM, BLOCK_D)
        dk = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
        dv = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
        q_ptrs = Q + _head(bh, H, stride_qb, stride_qh) + offs_m[:, None] * stride_qm + offs_d[None, :]
        do_ptrs = DO + _head(bh, H, stride_dob, stride_doh) + offs_m[:, None] * stride_dom + offs_d[None, :]
        dq_ptrs = DQ + _head(bh, H, stride_dqb, stride_dqh) + offs_m[:, None] * stride_dqm + offs_d[None, :]
        lse_ptrs = LSE + bh * seq_q + offs_m
        delta_ptrs = Delta + bh * seq_q + offs_m
        lo, mid, full_end = _query_bounds(start_n, seq_q, BLOCK_M, BLOCK_N, IS_CAUSAL)
        # 1) diagonal tiles, masked
        dk, dv = _bwd_dkdv_inner(dk, dv, k, v, q_ptrs, do_ptrs, lse_ptrs, delta_ptrs, dq_ptrs,
                                 stride_qm, stride_dom, stride_dqm, offs_n, offs_m, offs_d,
                                 lo, tl.minimum(mid, seq_q), seq_q, qk_scale,
                                 BLOCK_M, True, IS_CAUSAL, DOT_PREC, ATOMIC_DQ, HEAD_DIM, BLOCK_D)
        # 2) full tiles below the diagonal, no mask
        dk, dv = _bwd_dkdv_inner(dk, dv, k, v, q_ptrs, do_ptrs, lse_ptrs, delta_ptrs, dq_ptrs,
                                 stride_qm, stride_dom, stride_dqm, offs_n, offs_m, offs_d,
                                 mid, full_end, seq_q, qk_scale,
                                 BLOCK_M, False, IS_CAUSAL, DOT_PREC, ATOMIC_DQ, HEAD_DIM, BLOCK_D)
        # 3) ragged last query tile, masked
        dk, dv = _bwd_dkdv_inner(dk, dv, k, v, q_ptrs, do_ptrs, lse_ptrs, delta_ptrs, dq_ptrs,
                                 stride_qm, stride_dom, stride_dqm, offs_n, offs_m, offs_d,
                                 tl.maximum(mid, full_end), seq_q, seq_q, qk_scale,
                                 BLOCK_M, True, IS_CAUSAL, DOT_PREC, ATOMIC_DQ, HEAD_DIM, BLOCK_D)
        dk = dk * sm_scale
        _store(DK + k_off + offs_n[:, None] * stride_kn + offs_d[None, :],
               dk.to(DK.dtype.element_ty), offs_n, seq_k, offs_d, HEAD_DIM, BLOCK_D)
        _store(DV + v_off + offs_n[:, None] * stride_vn + offs_d[None, :],
               dv.to(DV.dtype.element_ty), offs_n, seq_k, offs_d, HEAD_DIM, BLOCK_D)

    @triton.jit
    def _bwd_dkdv_kernel(Q, K, V, DO, DK, DV, LSE, Delta, qk_scale, sm_scale,
                         stride_qb, stride_qh, stride_qm, stride_kb, stride_kh, stride_kn,
                         stride_vb, stride_vh, stride_vn, stride_dob, stride_doh, stride_dom, H,
                         seq_q, seq_k,
                         HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                         IS_CAUSAL: tl.constexpr, DOT_PREC: tl.constexpr, BLOCK_D: tl.constexpr):
        # causal: the first key tiles have the most query tiles; they already start first
        # (DK stands in for the unused dQ pointer)
        _dkdv_tile(Q, K, V, DO, DK, DV, DK, LSE, Delta, qk_scale, sm_scale,
                   stride_qb, stride_qh, stride_qm, stride_kb, stride_kh, stride_kn,
                   stride_vb, stride_vh, stride_vn, stride_dob, stride_doh, stride_dom,
                   0, 0, 0, H, seq_q, seq_k, tl.program_id(0), tl.program_id(1).to(tl.int64),
                   HEAD_DIM, BLOCK_M, BLOCK_N, IS_CAUSAL, DOT_PREC, False, BLOCK_D)

    @triton.jit
    def _bwd_dkdv_atomic_kernel(Q, K, V, DO, DK, DV, DQ, LSE, Delta, qk_scale, sm_scale,
                                stride_qb, stride_qh, stride_qm, stride_kb, stride_kh, stride_kn,
                                stride_vb, stride_vh, stride_vn, stride_dob, stride_doh,
                                stride_dom, stride_dqb, stride_dqh, stride_dqm, H, seq_q, seq_k,
                                HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr,
                                BLOCK_N: tl.constexpr, IS_CAUSAL: tl.constexpr,
                                DOT_PREC: tl.constexpr, BLOCK_D: tl.constexpr):
        # DQ: float32, zeroed by the caller; receives (dS K) without the softmax scale
        _dkdv_tile(Q, K, V, DO, DK, DV, DQ, LSE, Delta, qk_scale, sm_scale,
                   stride_qb, stride_qh, stride_qm, stride_kb, stride_kh, stride_kn,
                   stride_vb, stride_vh, stride_vn, stride_dob, stride_doh, stride_dom,
                   stride_dqb, stride_dqh, stride_dqm, H, seq_q, seq_k,
                   tl.program_id(0), tl.program_id(1).to(tl.int64),
                   HEAD_DIM, BLOCK_M, BLOCK_N, IS_CAUSAL, DOT_PREC, True, BLOCK_D)

    @triton.jit
    def _dq_cast_kernel(ACC, OUT, scale, n, BLOCK: tl.constexpr):
        offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        ok = offs < n
        x = tl.load(ACC + offs, mask=ok, other=0.0)
        tl.store(OUT + offs, (x * scale).to(OUT.dtype.element_ty), mask=ok)

    @triton.jit
    def _probs(qk, lse2, cols, offs_m, seq_k, qk_scale, MASK: tl.constexpr,
               IS_CAUSAL: tl.constexpr):
        # P of a (query, key) tile from its scores and the queries' logsumexp (base 2)
        p = tl.math.exp2(qk * qk_scale - lse2[:, None])
        if MASK:
            valid = cols[None, :] < seq_k
            if IS_CAUSAL:
                valid = valid & (cols[None, :] <= offs_m[:, None])
            p = tl.where(valid, p, 0.0)
        return p

    @triton.jit
    def _dq_step(dq, q, do, lse2, delta, k, v, cols, offs_m, seq_k, qk_scale, MASK: tl.constexpr,
                 IS_CAUSAL: tl.constexpr, DOT_PREC: tl.constexpr):
        # one key tile against the held query tile: dQ += dS K (unscaled)
        qk = tl.dot(q, tl.trans(k), input_precision=DOT_PREC)
        dp = tl.dot(do, tl.trans(v), input_precision=DOT_PREC)  # before the exp2s, as above
        p = _probs(qk, lse2, cols, offs_m, seq_k, qk_scale, MASK, IS_CAUSAL)
        ds = p * (dp - delta[:, None])
        return tl.dot(ds.to(k.dtype), k, dq, input_precision=DOT_PREC)

    @triton.jit
    def _dq_step_pre(dq, q, q_lo, do, do_lo, lse2, delta, k, k_lo, v, v_lo, cols, offs_m, seq_k,
                     qk_scale, MASK: tl.constexpr, IS_CAUSAL: tl.constexpr):
        # _dq_step on float32 operands given as TF32 parts (PRE_SPLIT)
        qk = _dot3(q, q_lo, tl.trans(k), tl.trans(k_lo))
        dp = _dot3(do, do_lo, tl.trans(v), tl.trans(v_lo))
        p = _probs(qk, lse2, cols, offs_m, seq_k, qk_scale, MASK, IS_CAUSAL)
        ds_hi, ds_lo = _tf32_split(p * (dp - delta[:, None]))
        return dq + _dot3(ds_hi, ds_lo, k, k_lo)

    @triton.jit
    def _bwd_dq_inner(dq, q, do, lse2, delta, k_ptrs, v_ptrs, stride_kn, stride_vn,
                      offs_m, offs_n, offs_d, lo, hi, seq_k, qk_scale,
                      BLOCK_N: tl.constexpr, MASK: tl.constexpr, IS_CAUSAL: tl.constexpr,
                      DOT_PREC: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr):
        k_ptrs += lo * stride_kn
        v_ptrs += lo * stride_vn
        for start_n in range(lo, hi, BLOCK_N):
            start_n = tl.multiple_of(start_n, BLOCK_N)
            cols = start_n + offs_n
            k = _load(k_ptrs, cols, seq_k, offs_d, MASK, HEAD_DIM, BLOCK_D)
            v = _load(v_ptrs, cols, seq_k, offs_d, MASK, HEAD_DIM, BLOCK_D)
            dq = _dq_step(dq, q, do, lse2, delta, k, v, cols, offs_m, seq_k, qk_scale, MASK,
                          IS_CAUSAL, DOT_PREC)
            k_ptrs += BLOCK_N * stride_kn
            v_ptrs += BLOCK_N * stride_vn
        return dq

    @triton.jit
    def _dq_tile(Q, K, V, DO, DQ, LSE, Delta, qk_scale, sm_scale,
                 stride_qb, stride_qh, stride_qm, stride_kb, stride_kh, stride_kn,
                 stride_vb, stride_vh, stride_vn, stride_dob, stride_doh, stride_dom, H,
                 seq_q, seq_k, pid_m, bh,
                 HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                 IS_CAUSAL: tl.constexpr, DOT_PREC: tl.constexpr, BLOCK_D: tl.constexpr):
        # BLOCK_M queries held by this program, loop over key tiles of BLOCK_N rows;
        # DQ has Q's strides
        start_m = pid_m * BLOCK_M
        offs_m = start_m + tl.arange(0, BLOCK_M)
        offs_n = tl.arange(0, BLOCK_N)
        offs_d = tl.arange(0, BLOCK_D)
        row_ok = offs_m < seq_q
        q_off = _head(bh, H, stride_qb, stride_qh)
        q = _load(Q + q_off + offs_m[:, None] * stride_qm + offs_d[None, :],
                  offs_m, seq_q, offs_d, True, HEAD_DIM, BLOCK_D)
        do = _load(DO + _head(bh, H, stride_dob, stride_doh) + offs_m[:, None] * stride_dom
                   + offs_d[None, :], offs_m, seq_q, offs_d, True, HEAD_DIM, BLOCK_D)
        lse2 = tl.load(LSE + bh * seq_q + offs_m, mask=row_ok, other=0.0) * 1.4426950408889634
        delta = tl.load(Delta + bh * seq_q + offs_m, mask=row_ok, other=0.0)
        k_ptrs = K + _head(bh, H, stride_kb, stride_kh) + offs_n[:, None] * stride_kn + offs_d[None, :]
        v_ptrs = V + _head(bh, H, stride_vb, stride_vh) + offs_n[:, None] * stride_vn + offs_d[None, :]
        dq = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
        mid, hi = _key_bounds(start_m, seq_k, BLOCK_M, BLOCK_N, IS_CAUSAL)
        dq = _bwd_dq_inner(dq, q, do, lse2, delta, k_ptrs, v_ptrs, stride_kn, stride_vn,
                           offs_m, offs_n, offs_d, 0, mid, seq_k, qk_scale,
                           BLOCK_N, False, IS_CAUSAL, DOT_PREC, HEAD_DIM, BLOCK_D)
        dq = _bwd_dq_inner(dq, q, do, lse2, delta, k_ptrs, v_ptrs, stride_kn, stride_vn,
                           offs_m, offs_n, offs_d, mid, hi, seq_k, qk_scale,
                           BLOCK_N, True, IS_CAUSAL, DOT_PREC, HEAD_DIM, BLOCK_D)
        dq = dq * sm_scale
        _store(DQ + q_off + offs_m[:, None] * stride_qm + offs_d[None, :],
               dq.to(DQ.dtype.element_ty), offs_m, seq_q, offs_d, HEAD_DIM, BLOCK_D)

    @triton.jit
    def _bwd_dq_kernel(Q, K, V, DO, DQ, LSE, Delta, qk_scale, sm_scale,
                       stride_qb, stride_qh, stride_qm, stride_kb, stride_kh, stride_kn,
                       stride_vb, stride_vh, stride_vn, stride_dob, stride_doh, stride_dom, H,
                       seq_q, seq_k,
                       HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                       IS_CAUSAL: tl.constexpr, DOT_PREC: tl.constexpr, BLOCK_D: tl.constexpr):
        _dq_tile(Q, K, V, DO, DQ, LSE, Delta, qk_scale, sm_scale,
                 stride_qb, stride_qh, stride_qm, stride_kb, stride_kh, stride_kn,
                 stride_vb, stride_vh, stride_vn, stride_dob, stride_doh, stride_dom, H,
                 seq_q, seq_k, _query_tile_id(IS_CAUSAL), tl.program_id(1).to(tl.int64),
                 HEAD_DIM, BLOCK_M, BLOCK_N, IS_CAUSAL, DOT_PREC, BLOCK_D)

    @triton.jit
    def _dkdv_desc_inner(dk, dv, k, k_lo, v, v_lo, q_desc, ql_desc, do_desc, dol_desc, dq_desc,
                         LSE, Delta, offs_n, offs_m, lo, hi, seq_q, qk_scale, BLOCK_M: tl.constexpr,
                         MASK: tl.constexpr, IS_CAUSAL: tl.constexpr, DOT_PREC: tl.constexpr,
                         PRE_SPLIT: tl.constexpr, ATOMIC_DQ: tl.constexpr):
        for start_m in range(lo, hi, BLOCK_M):
            start_m = tl.multiple_of(start_m, BLOCK_M)
            rows = start_m + offs_m
            q = q_desc.load([start_m, 0])
            do = do_desc.load([start_m, 0])
            if MASK:
                row_ok = rows < seq_q
                lse = tl.load(LSE + rows, mask=row_ok, other=float("inf"))
                delta = tl.load(Delta + rows, mask=row_ok, other=0.0)
            else:
                lse = tl.load(LSE + rows)
                delta = tl.load(Delta + rows)
            if PRE_SPLIT:
                dk, dv = _dkdv_step_pre(dk, dv, k, k_lo, v, v_lo, q, ql_desc.load([start_m, 0]),
                                        do, dol_desc.load([start_m, 0]), lse, delta, rows, offs_n,
                                        qk_scale, MASK, IS_CAUSAL)
            else:
                dk, dv, dsT = _dkdv_step(dk, dv, k, v, q, do, lse, delta, rows, offs_n, qk_scale,
                                         MASK, IS_CAUSAL, DOT_PREC)
                if ATOMIC_DQ:
                    # dQ rows of this query tile += dS K (unscaled), one bulk reduction by the
                    # copy engine; rows past seq_q and padded columns fall outside the
                    # descriptor's shape and are dropped
                    dq_desc.atomic_add([start_m, 0], tl.dot(tl.trans(dsT), k, input_precision=DOT_PREC))
        return dk, dv

    @triton.jit
    def _dkdv_desc_tile(Q, K, V, DO, DK, DV, DQ, LSE, Delta, qk_scale, sm_scale,
                        stride_qb, stride_qh, stride_qm, stride_kb, stride_kh, stride_kn,
                        stride_vb, stride_vh, stride_vn, stride_dob, stride_doh, stride_dom,
                        stride_dqb, stride_dqh, stride_dqm, QL, KL, VL, DOL, H, seq_q, seq_k,
                        HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                        IS_CAUSAL: tl.constexpr, DOT_PREC: tl.constexpr, BLOCK_D: tl.constexpr,
                        PRE_SPLIT: tl.constexpr, ATOMIC_DQ: tl.constexpr):
        # _dkdv_tile with the query tiles streamed through tensor descriptors: no tensor of
        # pointers is carried through the loop. PRE_SPLIT: float32 inputs as their TF32 high
        # parts (Q, K, V, DO) and remainders (QL, KL, VL, DOL, the same strides), three TF32
        # products each (_dot3). ATOMIC_DQ: dS K added into the float32 DQ through a descriptor
        bh = tl.program_id(1).to(tl.int64)
        start_n = tl.program_id(0) * BLOCK_N
        offs_n = start_n + tl.arange(0, BLOCK_N)
        offs_m = tl.arange(0, BLOCK_M)
        offs_d = tl.arange(0, BLOCK_D)
        k = _desc(K, bh, H, stride_kb, stride_kh, stride_kn, seq_k, HEAD_DIM, BLOCK_N, BLOCK_D).load([start_n, 0])
        v = _desc(V, bh, H, stride_vb, stride_vh, stride_vn, seq_k, HEAD_DIM, BLOCK_N, BLOCK_D).load([start_n, 0])
        q_desc = _desc(Q, bh, H, stride_qb, stride_qh, stride_qm, seq_q, HEAD_DIM, BLOCK_M, BLOCK_D)
        do_desc = _desc(DO, bh, H, stride_dob, stride_doh, stride_dom, seq_q, HEAD_DIM, BLOCK_M, BLOCK_D)
        if PRE_SPLIT:
            k_lo = _desc(KL, bh, H, stride_kb, stride_kh, stride_kn, seq_k, HEAD_DIM, BLOCK_N, BLOCK_D).load([start_n, 0])
            v_lo = _desc(VL, bh, H, stride_vb, stride_vh, stride_vn, seq_k, HEAD_DIM, BLOCK_N, BLOCK_D).load([start_n, 0])
            ql_desc = _desc(QL, bh, H, stride_qb, stride_qh, stride_qm, seq_q, HEAD_DIM, BLOCK_M, BLOCK_D)
            dol_desc = _desc(DOL, bh, H, stride_dob, stride_doh, stride_dom, seq_q, HEAD_DIM, BLOCK_M, BLOCK_D)
        else:
            k_lo, v_lo, ql_desc, dol_desc = k, v, q_desc, do_desc
        if ATOMIC_DQ:
            dq_desc = _desc(DQ, bh, H, stride_dqb, stride_dqh, stride_dqm, seq_q, HEAD_DIM, BLOCK_M, BLOCK_D)
        else:
            dq_desc = q_desc  # not used
        dk = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
        dv = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
        LSE += bh * seq_q
        Delta += bh * seq_q
        lo, mid, full_end = _query_bounds(start_n, seq_q, BLOCK_M, BLOCK_N, IS_CAUSAL)
        dk, dv = _dkdv_desc_inner(dk, dv, k, k_lo, v, v_lo, q_desc, ql_desc, do_desc, dol_desc,
                                  dq_desc, LSE, Delta, offs_n, offs_m, lo, tl.minimum(mid, seq_q),
                                  seq_q, qk_scale, BLOCK_M, True, IS_CAUSAL, DOT_PREC, PRE_SPLIT,
                                  ATOMIC_DQ)
        dk, dv = _dkdv_desc_inner(dk, dv, k, k_lo, v, v_lo, q_desc, ql_desc, do_desc, dol_desc,
                                  dq_desc, LSE, Delta, offs_n, offs_m, mid, full_end, seq_q,
                                  qk_scale, BLOCK_M, False, IS_CAUSAL, DOT_PREC, PRE_SPLIT, ATOMIC_DQ)
        dk, dv = _dkdv_desc_inner(dk, dv, k, k_lo, v, v_lo, q_desc, ql_desc, do_desc, dol_desc,
                                  dq_desc, LSE, Delta, offs_n, offs_m, tl.maximum(mid, full_end),
                                  seq_q, seq_q, qk_scale, BLOCK_M, True, IS_CAUSAL, DOT_PREC,
                                  PRE_SPLIT, ATOMIC_DQ)
        dk = dk * sm_scale
        _store(DK + _head(bh, H, stride_kb, stride_kh) + offs_n[:, None] * stride_kn + offs_d[None, :],
               dk.to(DK.dtype.element_ty), offs_n, seq_k, offs_d, HEAD_DIM, BLOCK_D)
        _store(DV + _head(bh, H, stride_vb, stride_vh) + offs_n[:, None] * stride_vn + offs_d[None, :],
               dv.to(DV.dtype.element_ty), offs_n, seq_k, offs_d, HEAD_DIM, BLOCK_D)

    @triton.jit
    def _bwd_dkdv_tma_kernel(Q, K, V, DO, DK, DV, LSE, Delta, qk_scale, sm_scale,
                             stride_qb, stride_qh, stride_qm, stride_kb, stride_kh, stride_kn,
                             stride_vb, stride_vh, stride_vn, stride_dob, stride_doh, stride_dom,
                             QL, KL, VL, DOL, H, seq_q, seq_k,
                             HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                             IS_CAUSAL: tl.constexpr, DOT_PREC: tl.constexpr, BLOCK_D: tl.constexpr,
                             PRE_SPLIT: tl.constexpr = False):
        # _bwd_dkdv_kernel through descriptors (DK stands in for the unused dQ)
        _dkdv_desc_tile(Q, K, V, DO, DK, DV, DK, LSE, Delta, qk_scale, sm_scale,
                        stride_qb, stride_qh, stride_qm, stride_kb, stride_kh, stride_kn,
                        stride_vb, stride_vh, stride_vn, stride_dob, stride_doh, stride_dom,
                        0, 0, 0, QL, KL, VL, DOL, H, seq_q, seq_k,
                        HEAD_DIM, BLOCK_M, BLOCK_N, IS_CAUSAL, DOT_PREC, BLOCK_D, PRE_SPLIT, False)

    @triton.jit
    def _bwd_dkdv_atomic_tma_kernel(Q, K, V, DO, DK, DV, DQ, LSE, Delta, qk_scale, sm_scale,
                                    stride_qb, stride_qh, stride_qm, stride_kb, stride_kh,
                                    stride_kn, stride_vb, stride_vh, stride_vn, stride_dob,
                                    stride_doh, stride_dom, stride_dqb, stride_dqh, stride_dqm, H,
                                    seq_q, seq_k,
                                    HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr,
                                    BLOCK_N: tl.constexpr, IS_CAUSAL: tl.constexpr,
                                    DOT_PREC: tl.constexpr, BLOCK_D: tl.constexpr):
        # _bwd_dkdv_atomic_kernel through descriptors, 16-bit inputs (Q, K, V, DO stand in for
        # the unused remainders); DQ: float32, zeroed by the caller
        _dkdv_desc_tile(Q, K, V, DO, DK, DV, DQ, LSE, Delta, qk_scale, sm_scale,
                        stride_qb, stride_qh, stride_qm, stride_kb, stride_kh, stride_kn,
                        stride_vb, stride_vh, stride_vn, stride_dob, stride_doh, stride_dom,
                        stride_dqb, stride_dqh, stride_dqm, Q, K, V, DO, H, seq_q, seq_k,
                        HEAD_DIM, BLOCK_M, BLOCK_N, IS_CAUSAL, DOT_PREC, BLOCK_D, False, True)

    @triton.jit
    def _dq_desc_inner(dq, q, q_lo, do, do_lo, lse2, delta, k_desc, kl_desc, v_desc, vl_desc,
                       offs_m, offs_n, lo, hi, seq_k, qk_scale, BLOCK_N: tl.constexpr,
                       MASK: tl.constexpr, IS_CAUSAL: tl.constexpr, DOT_PREC: tl.constexpr,
                       PRE_SPLIT: tl.constexpr):
        for start_n in range(lo, hi, BLOCK_N):
            start_n = tl.multiple_of(start_n, BLOCK_N)
            k = k_desc.load([start_n, 0])
            v = v_desc.load([start_n, 0])
            if PRE_SPLIT:
                dq = _dq_step_pre(dq, q, q_lo, do, do_lo, lse2, delta, k, kl_desc.load([start_n, 0]),
                                  v, vl_desc.load([start_n, 0]), start_n + offs_n, offs_m, seq_k,
                                  qk_scale, MASK, IS_CAUSAL)
            else:
                dq = _dq_step(dq, q, do, lse2, delta, k, v, start_n + offs_n, offs_m, seq_k,
                              qk_scale, MASK, IS_CAUSAL, DOT_PREC)
        return dq

    @triton.jit
    def _bwd_dq_tma_kernel(Q, K, V, DO, DQ, LSE, Delta, qk_scale, sm_scale,
                           stride_qb, stride_qh, stride_qm, stride_kb, stride_kh, stride_kn,
                           stride_vb, stride_vh, stride_vn, stride_dob, stride_doh, stride_dom,
                           QL, KL, VL, DOL, H, seq_q, seq_k,
                           HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                           IS_CAUSAL: tl.constexpr, DOT_PREC: tl.constexpr, BLOCK_D: tl.constexpr,
                           PRE_SPLIT: tl.constexpr = False):
        # _bwd_dq_kernel with the key tiles streamed through tensor descriptors (PRE_SPLIT: as
        # in _bwd_dkdv_tma_kernel)
        bh = tl.program_id(1).to(tl.int64)
        start_m = _query_tile_id(IS_CAUSAL) * BLOCK_M
        offs_m = start_m + tl.arange(0, BLOCK_M)
        offs_n = tl.arange(0, BLOCK_N)
        offs_d = tl.arange(0, BLOCK_D)
        row_ok = offs_m < seq_q
        q = _desc(Q, bh, H, stride_qb, stride_qh, stride_qm, seq_q, HEAD_DIM, BLOCK_M, BLOCK_D).load([start_m, 0])
        do = _desc(DO, bh, H, stride_dob, stride_doh, stride_dom, seq_q, HEAD_DIM, BLOCK_M, BLOCK_D).load([start_m, 0])
        lse2 = tl.load(LSE + bh * seq_q + offs_m, mask=row_ok, other=0.0) * 1.4426950408889634
        delta = tl.load(Delta + bh * seq_q + offs_m, mask=row_ok, other=0.0)
        k_desc = _desc(K, bh, H, stride_kb, stride_kh, stride_kn, seq_k, HEAD_DIM, BLOCK_N, BLOCK_D)
        v_desc = _desc(V, bh, H, stride_vb, stride_vh, stride_vn, seq_k, HEAD_DIM, BLOCK_N, BLOCK_D)
        if PRE_SPLIT:
            q_lo = _desc(QL, bh, H, stride_qb, stride_qh, stride_qm, seq_q, HEAD_DIM, BLOCK_M, BLOCK_D).load([start_m, 0])
            do_lo = _desc(DOL, bh, H, stride_dob, stride_doh, stride_dom, seq_q, HEAD_DIM, BLOCK_M, BLOCK_D).load([start_m, 0])
            kl_desc = _desc(KL, bh, H, stride_kb, stride_kh, stride_kn, seq_k, HEAD_DIM, BLOCK_N, BLOCK_D)
            vl_desc = _desc(VL, bh, H, stride_vb, stride_vh, stride_vn, seq_k, HEAD_DIM, BLOCK_N, BLOCK_D)
        else:
            q_lo, do_lo, kl_desc, vl_desc = q, do, k_desc, v_desc
        dq = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
        mid, hi = _key_bounds(start_m, seq_k, BLOCK_M, BLOCK_N, IS_CAUSAL)
        dq = _dq_desc_inner(dq, q, q_lo, do, do_lo, lse2, delta, k_desc, kl_desc, v_desc, vl_desc,
                            offs_m, offs_n, 0, mid, seq_k, qk_scale, BLOCK_N, False, IS_CAUSAL,
                            DOT_PREC, PRE_SPLIT)
        dq = _dq_desc_inner(dq, q, q_lo, do, do_lo, lse2, delta, k_desc, kl_desc, v_desc, vl_desc,
                            offs_m, offs_n, mid, hi, seq_k, qk_scale, BLOCK_N, True, IS_CAUSAL,
                            DOT_PREC, PRE_SPLIT)
        dq = dq * sm_scale
        _store(DQ + _head(bh, H, stride_qb, stride_qh) + offs_m[:, None] * stride_qm + offs_d[None, :],
               dq.to(DQ.dtype.element_ty), offs_m, seq_q, offs_d, HEAD_DIM, BLOCK_D)

    @triton.jit
    def _bwd_fused_kernel(Q, K, V, DO, DQ, DK, DV, LSE, Delta, qk_scale, sm_scale,
                          stride_qb, stride_qh, stride_qm, stride_kb, stride_kh, stride_kn,
                          stride_vb, stride_vh, stride_vn, stride_dob, stride_doh, stride_dom, H,
                          seq_q, seq_k,
                          HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                          IS_CAUSAL: tl.constexpr, DOT_PREC: tl.constexpr, BLOCK_D: tl.constexpr):
        # program i: dK, dV of key tile i (BLOCK_N keys, query steps of BLOCK_M), then dQ of
        # query tile i (BLOCK_N queries, key steps of BLOCK_M).  Causal: key tile i has work
        # ~ (n - i), query tile i ~ (i + 1): every program does about the same.
        pid = tl.program_id(0)
        bh = tl.program_id(1).to(tl.int64)
        if pid * BLOCK_N < seq_k:
            _dkdv_tile(Q, K, V, DO, DK, DV, DK, LSE, Delta, qk_scale, sm_scale,
                       stride_qb, stride_qh, stride_qm, stride_kb, stride_kh, stride_kn,
                       stride_vb, stride_vh, stride_vn, stride_dob, stride_doh, stride_dom,
                       0, 0, 0, H, seq_q, seq_k, pid, bh,
                       HEAD_DIM, BLOCK_M, BLOCK_N, IS_CAUSAL, DOT_PREC, False, BLOCK_D)
        if pid * BLOCK_N < seq_q:
            _dq_tile(Q, K, V, DO, DQ, LSE, Delta, qk_scale, sm_scale,
                     stride_qb, stride_qh, stride_qm, stride_kb, stride_kh, stride_kn,
                     stride_vb, stride_vh, stride_vn, stride_dob, stride_doh, stride_dom, H,
                     seq_q, seq_k, pid, bh,
                     HEAD_DIM, BLOCK_N, BLOCK_M, IS_CAUSAL, DOT_PREC, BLOCK_D)

    # retuned whenever a sequence length, d, the causal flag or the dtypes change
    _KEY = ["seq_q", "seq_k", "HEAD_DIM", "IS_CAUSAL"]

    # asv measures every cell in a fresh process: without a disk cache each of them would tune
    # again (seconds per kernel), and could pick a different config from its neighbours, which
    # shows up as process-to-process noise. Triton keys the cached choice on its version, the
    # GPU target, the kernel source, the tuning key with dtypes, and the configs tried.
    # PERFMODEL_FLASH_KEEP_TUNING=0 keeps the choice in memory only: the compile caches' warming
    # (perfmodel/prewarm.py) runs several processes on the GPU at once, and a choice timed
    # beside them must not be the one asv's lone process reads back.
    _CACHE_TUNING = ({"cache_results": True}
                     if "cache_results" in inspect.signature(triton.autotune).parameters
                     and os.environ.get("PERFMODEL_FLASH_KEEP_TUNING", "1") != "0" else {})

    # Triton times each candidate for 25 + 100 ms by default: with a few candidates per kernel
    # and a new key for every cell, that was most of a flash cell's cost in the GPU history
    # (1-2 s of its first step, 2026-12-02). The spaces are small and pruned, and the choice is
    # cached, so a shorter trial (at least a few runs of the kernel) chooses as well for less.
    def _trial(kernel_call, quantiles):
        return triton.testing.do_bench(kernel_call, warmup=TRIAL_WARMUP_MS, rep=TRIAL_REP_MS,
                                       quantiles=quantiles)

    def _tuned(kernel, name, **extra):
        return triton.autotune(_triton_configs(name), key=_KEY, **_CACHE_TUNING, **extra,
                               do_bench=_trial,
                               prune_configs_by={"early_config_prune": _pruner(name)})(kernel)

    _fwd_tuned = _tuned(_fwd_kernel, "fwd")
    _fwd_tma_tuned = _tuned(_fwd_tma_kernel, "fwd_tma")
    _dkdv_tuned = _tuned(_bwd_dkdv_kernel, "dkdv")
    _dq_tuned = _tuned(_bwd_dq_kernel, "dq")
    # its trial runs add into DQ: the autotuner zeroes it before each trial and before the launch
    # that follows a tuning run (a cached choice launches once, into the fresh zeros)
    _dkdv_atomic_tuned = _tuned(_bwd_dkdv_atomic_kernel, "dkdv_atomic", reset_to_zero=["DQ"])
    _fused_tuned = _tuned(_bwd_fused_kernel, "bwd_fused")
    _dkdv_tma_tuned = _tuned(_bwd_dkdv_tma_kernel, "dkdv_tma")
    _dq_tma_tuned = _tuned(_bwd_dq_tma_kernel, "dq_tma")
    _dkdv_atomic_tma_tuned = _tuned(_bwd_dkdv_atomic_tma_kernel, "dkdv_atomic_tma",
                                    reset_to_zero=["DQ"])

    # kernel name -> (plain kernel, autotuned kernel)
    KERNEL_FUNCS = {
        "fwd": (_fwd_kernel, _fwd_tuned),
        "fwd_tma": (_fwd_tma_kernel, _fwd_tma_tuned),
        "dkdv": (_bwd_dkdv_kernel, _dkdv_tuned),
        "dq": (_bwd_dq_kernel, _dq_tuned),
        "dkdv_atomic": (_bwd_dkdv_atomic_kernel, _dkdv_atomic_tuned),
        "bwd_fused": (_bwd_fused_kernel, _fused_tuned),
        "dkdv_tma": (_bwd_dkdv_tma_kernel, _dkdv_tma_tuned),
        "dq_tma": (_bwd_dq_tma_kernel, _dq_tma_tuned),
        "dkdv_atomic_tma": (_bwd_dkdv_atomic_tma_kernel, _dkdv_atomic_tma_tuned),
    }


def _use_fixed_config() -> bool:
    return _interpreting() or os.environ.get("PERFMODEL_FLASH_AUTOTUNE", "1") == "0"


# Fixed config for PERFMODEL_FLASH_AUTOTUNE=0 on a GPU: a safe middle of the tuning space (the
# first config of the space where it is not in it: large d, float32).
FIXED_CONFIG = (64, 64, 4, 2)

# Products of float32 inputs (bf16/fp16 always use the tensor cores with float32 accumulation):
# "tf32x3" (default) splits each operand into a TF32 high part and a TF32 remainder and adds the
# three significant products, all on the tensor cores: about fp32 accuracy (the dropped
# remainder x remainder term is ~2^-22 relative), the same scheme as the CUTLASS "fast fp32"
# products of PyTorch's memory-efficient SDPA kernel in float32.  "ieee" is plain fp32 FMA on
# the CUDA cores (30x slower than SDPA at d=128, notes/flash.md).  Plain "tf32" is not offered:
# it loses fp32 accuracy.
FP32_PRECISIONS = ("tf32x3", "ieee")
FP32_PRECISION = os.environ.get("PERFMODEL_FLASH_FP32_PRECISION", "tf32x3")


def dot_precision(dtype: torch.dtype) -> str:
    if dtype != torch.float32:
        return "ieee"  # ignored by tl.dot for 16-bit inputs
    if FP32_PRECISION not in FP32_PRECISIONS:
        raise ValueError(f"unknown float32 product precision {FP32_PRECISION!r} "
                         f"(PERFMODEL_FLASH_FP32_PRECISION): one of {FP32_PRECISIONS}")
    return FP32_PRECISION


def pre_split(dtype: torch.dtype, head_dim: int) -> bool:
    """Whether the descriptor backward (``split_tma``) reads these inputs as TF32 parts split
    beforehand (PRE_SPLIT): float32 under tf32x3 at d <= 128.  At d=256 no tile of its two
    kernels holds both parts in shared memory (their spaces are empty), so float32 keeps the
    pointer kernels there."""
    return (dtype == torch.float32 and dot_precision(dtype) == "tf32x3"
            and block_d(head_dim) <= 128)


def launched_pre_split(name: str, dtype: torch.dtype, head_dim: int) -> bool:
    """Whether kernel ``name`` is launched with PRE_SPLIT for this dtype and d: the descriptor
    backward pair where the backward splits beforehand (:func:`pre_split`)."""
    return name in BWD_VARIANTS["split_tma"] and pre_split(dtype, head_dim)


def twin_launched(name: str, dtype: torch.dtype, head_dim: int) -> bool:
    """Whether the launches ever take descriptor kernel ``name`` (a DESC_TWINS key) for this dtype
    and d: for 16-bit inputs (those _tma_ok's alignment then admits), and for float32's backward
    pair where it splits beforehand (:func:`launched_pre_split`)."""
    return dtype.itemsize == 2 or launched_pre_split(name, dtype, head_dim)


def block_d(d: int) -> int:
    """The head dim the kernels compute with: the next power of two, at least 16 (tl.dot's
    smallest inner size); the extra columns are masked to zeros."""
    return max(16, triton.next_power_of_2(d) if triton is not None else 1 << (d - 1).bit_length())


def constants(d: int, causal: bool, dtype: torch.dtype) -> dict:
    """The compile-time arguments every attention kernel takes."""
    return dict(HEAD_DIM=d, BLOCK_D=block_d(d), IS_CAUSAL=bool(causal), DOT_PREC=dot_precision(dtype))


def preprocess_block(d: int) -> int:
    # rows per program of the D = rowsum(dO * O) kernel: two (rows x BLOCK_D) float32 tiles
    return 32 if _interpreting() else (128 if block_d(d) <= 128 else 64)


def _strides(x) -> tuple:
    """(batch, head, row) strides of a (batch, head, seq, d) tensor whose d is contiguous."""
    return x.stride()[:3]


def _4d(x):
    return x.unsqueeze(1) if x is not None and x.dim() == 3 else x


def kernel_args(name, q, k, v, o=None, lse=None, do=None, delta=None, dq=None, dk=None, dv=None,
                dq_acc=None, lo=None):
    """Positional arguments of kernel ``name`` for these tensors, with the number of rows its
    grid covers and the block size that divides them: (args, rows, tile key).

    Tensors are (batch, heads, seq, d), or (batch, seq, d) as one head, with d contiguous and
    any batch, head and row strides; dq, dk and dv have q's, k's and v's strides (empty_like of a
    dense tensor keeps them); o, do and ``dq_acc`` (the float32 buffer of the atomic variant)
    have their own; lse and delta are (batch, heads, seq) contiguous float32.  ``lo``: the
    descriptor backward kernels' float32 remainders of (q, k, v, do), with their strides, where q,
    k, v and do are the TF32 high parts (PRE_SPLIT, :func:`tf32_split`).  The grid's second
    axis is batch * heads.  Used by the autograd function, and by tools/bench_flash.py to time
    and precompile single kernels."""
    q, k, v, o, do, dq, dk, dv, dq_acc = map(_4d, (q, k, v, o, do, dq, dk, dv, dq_acc))
    _, h, sq, d = q.shape
    sk = k.shape[2]
    for out, like in ((dq, q), (dk, k), (dv, v)):
        if out is not None and out.stride() != like.stride():
            raise ValueError(f"a gradient's strides {out.stride()} differ from its input's "
                             f"{like.stride()}")
    sm_scale = 1.0 / math.sqrt(d)
    qk_scale = sm_scale * LOG2E
    qkv = _strides(q) + _strides(k) + _strides(v)
    if name in FWD_VARIANTS.values():
        return (q, k, v, o, lse, qk_scale, *qkv, *_strides(o), h, sq, sk), sq, "BLOCK_M"
    st = qkv + _strides(do)
    # the descriptor kernels' float32 remainders (PRE_SPLIT; else q, k, v and do stand in)
    rest = () if name not in BWD_VARIANTS["split_tma"] else (
        tuple(map(_4d, lo)) if lo is not None else (q, k, v, do))
    if name in ("dkdv", "dkdv_tma"):
        return ((q, k, v, do, dk, dv, lse, delta, qk_scale, sm_scale, *st, *rest, h, sq, sk), sk,
                "BLOCK_N")
    if name in ("dq", "dq_tma"):
        return ((q, k, v, do, dq, lse, delta, qk_scale, sm_scale, *st, *rest, h, sq, sk), sq,
                "BLOCK_M")
    if name in ("dkdv_atomic", "dkdv_atomic_tma"):
        return ((q, k, v, do, dk, dv, dq_acc, lse, delta, qk_scale, sm_scale, *st,
                 *_strides(dq_acc), h, sq, sk), sk, "BLOCK_N")
    if name == "bwd_fused":
        return ((q, k, v, do, dq, dk, dv, lse, delta, qk_scale, sm_scale, *st, h, sq, sk),
                max(sq, sk), "BLOCK_N")
    raise ValueError(f"unknown kernel {name!r}: one of {KERNELS}")


def _dense(x) -> bool:
    """Whether ``x`` covers its storage without gaps or overlaps, d contiguous: then empty_like
    gives a gradient the same strides, and the kernels read it in place."""
    if x.is_contiguous():  # the common case, asked of torch once (each layer calls this 4 times)
        return True
    strides = x.stride()
    if strides[-1] != 1:
        return False
    expect = 1
    for stride, size in sorted(zip(strides, x.shape)):
        if size > 1:
            if stride != expect:
                return False
            expect *= size
    return True


def _operand(x):
    return x if _dense(x) else x.contiguous()


# The autotuner's choice per kernel and tuning key: a later launch of the same key goes to
# Triton's JIT with that config directly. The autotuner's own work per call (its key, its cache
# lookup, the grid function) was 16 us of a launch's 35 on the H200 at the model's shape, three
# launches per layer and step (notes/flash.md, the host's time per call).
_CHOSEN: dict = {}


def _tuning_key(name, args, const) -> tuple:
    """What the autotuner keys its choice on (_KEY: seq_q and seq_k, every kernel's last two
    arguments; HEAD_DIM, IS_CAUSAL; the tensors' dtype), with the products' precision."""
    return (name, args[-2], args[-1], const["HEAD_DIM"], const["IS_CAUSAL"], const["DOT_PREC"],
            args[0].dtype)


def _scratch(size: int, alignment: int, stream):
    """Global scratch for the tensor descriptors a kernel builds on the device (Triton asks
    for it at each launch of such a kernel): on the current CUDA device, or the CPU when
    interpreting."""
    device = "cpu" if _interpreting() else torch.device("cuda", torch.cuda.current_device())
    return torch.empty(size, dtype=torch.int8, device=device)


def _interpreter_descriptor_add() -> None:
    """Teach Triton's CPU interpreter the descriptor's ``atomic_add`` (Triton 3.6-3.9 lack it):
    an element-wise float32 atomic add over the tile's in-range elements, which is what the
    copy engine's bulk reduction computes, so the interpreter checks the atomic_tma kernel's
    offsets and masks as the GPU runs them."""
    from triton._C.libtriton import ir
    from triton.runtime import interpreter

    builder = interpreter.InterpreterBuilder
    if hasattr(builder, "create_descriptor_reduce"):
        return

    def create_descriptor_reduce(self, kind, desc, value, indices):
        if kind != ir.DESCRIPTOR_REDUCE_KIND.ADD:
            raise NotImplementedError(f"descriptor reduction {kind} under the interpreter")
        ptrs, mask = desc.materialize_pointers(indices)
        return self.create_atomic_rmw(ir.ATOMIC_OP.FADD, ptrs, value, mask,
                                      ir.MEM_SEMANTIC.RELAXED, None)

    builder.create_descriptor_reduce = create_descriptor_reduce


def tf32_split(x):
    """(hi, lo), contiguous float32 with x = hi + lo exactly: hi keeps TF32's 10 mantissa bits,
    rounded to nearest with ties away from zero (cvt.rna.tf32's rounding; the kernels'
    _tf32_split), lo is the remainder, whose leading 11 bits a TF32 product reads."""
    x = x.contiguous()
    hi = ((x.view(torch.int32) + 0x1000) & -8192).view(torch.float32)
    return hi, x - hi


def _tma_ok(*xs) -> bool:
    """Whether the descriptor kernels should read these (batch, head, seq, d) tensors: 16-bit
    (float32's tf32x3 products spill more from descriptor tiles: the offline sm_90 compile), and
    the copy engine's 16-byte aligned starts and batch, head and row strides."""
    for x in xs:
        if x.element_size() != 2:
            return False
        size = x.element_size()
        if x.data_ptr() % 16 or any(stride * size % 16 for stride in x.stride()[:3]):
            return False
    return True


def _fwd_name(q, k, v) -> str:
    """The forward kernel to launch: FWD_VARIANT's, or the plain one where descriptors cannot
    read the inputs."""
    if FWD_VARIANT not in FWD_VARIANTS:
        raise ValueError(f"unknown forward variant {FWD_VARIANT!r} (PERFMODEL_FLASH_FWD): "
                         f"one of {tuple(FWD_VARIANTS)}")
    name = FWD_VARIANTS[FWD_VARIANT]
    return name if name == "fwd" or _tma_ok(q, k, v) else "fwd"


def launch(name, args, rows, tile_key, batch, const, cfg=None):
    """Launch kernel ``name`` over (cdiv(rows, tile), batch) programs: with ``cfg`` if given,
    else FORCE_CONFIG's entry, else the fixed config (interpreter, PERFMODEL_FLASH_AUTOTUNE=0),
    else the autotuner's choice for this key (the autotuner itself the first time)."""
    kernel, tuned = KERNEL_FUNCS[name]
    if name in DESC_TWINS:
        triton.set_allocator(_scratch)  # per thread (a context variable): set at each launch
        if name == "dkdv_atomic_tma" and _interpreting():
            _interpreter_descriptor_add()
    if cfg is None:  # a descriptor twin takes its kernel's pinned config
        cfg = FORCE_CONFIG.get(name, FORCE_CONFIG.get(DESC_TWINS.get(name)))
    if cfg is None and _use_fixed_config():
        space = tuning_configs(name, args[0].dtype, const["HEAD_DIM"])
        cfg = INTERPRET_CONFIG if _interpreting() else (FIXED_CONFIG if FIXED_CONFIG in space else space[0])
    if cfg is not None:
        meta = config_meta(cfg)
        kernel[(triton.cdiv(rows, meta[tile_key]), batch)](*args, **meta, **const)
        return
    key = _tuning_key(name, args, const)
    meta = _CHOSEN.get(key)
    if meta is not None:
        kernel[(triton.cdiv(rows, meta[tile_key]), batch)](*args, **meta, **const)
        return
    tuned[lambda meta: (triton.cdiv(rows, meta[tile_key]), batch)](*args, **const)
    best = getattr(tuned, "best_config", None)
    if best is not None:
        _CHOSEN[key] = dict(best.all_kwargs())


def bwd_variant(dtype: torch.dtype, head_dim: int) -> str:
    """The backward variant a call with these inputs takes: BWD_VARIANT when it names one, else
    (``"auto"``) ``"atomic"`` for tf32x3 float32 with d > 64 and ``"split"`` otherwise.

    Why float32 above d=64 differs: under tf32x3 each product is three TF32 products, the
    operands' two parts fill shared memory, and the split backward's dK/dV tile at d=128 is
    16 x 64, so recomputing P and dP in a dQ kernel costs more than the atomic adds save. On an
    H100 (2026-12-07, notes/flash.md) the atomic backward halved float32's forward+backward at
    d 80, 128 and 256 (b8 s16384 d128: 52.7 ms against 103.0; SDPA 48.4) and lost at d=64
    (26.2 against 23.0). Its dQ sums in float32 atomics in no fixed order, as FlashAttention-2's
    does: not bitwise reproducible from run to run, as accurate (notes/flash.md)."""
    if BWD_VARIANT == "auto":
        if dtype == torch.float32 and dot_precision(dtype) == "tf32x3" and block_d(head_dim) > 64:
            return "atomic"
        return "split"
    if BWD_VARIANT not in BWD_VARIANTS:
        raise ValueError(f"unknown backward variant {BWD_VARIANT!r} (PERFMODEL_FLASH_BWD): "
                         f"one of {('auto',) + tuple(BWD_VARIANTS)}")
    return BWD_VARIANT


class FlashAttentionTriton(torch.autograd.Function):
    """FlashAttention-2 with Triton kernels: ``FlashAttentionTriton.apply(q, k, v, is_causal)``.

    q: (batch, heads, seq_q, d), k and v: (batch, heads, seq_k, d), each with d contiguous and
    any other strides (the model's heads, a transposed view, are read in place); or (batch,
    seq, d), as one head.  The output is (batch, seq_q, heads, d) in memory, so the model's
    transpose back to (batch, seq, d_model) is a view.  Saves exactly (q, k, v, out, lse).
    """

    @staticmethod
    def forward(ctx, q, k, v, is_causal=False):
        if triton is None:
            raise RuntimeError(f"triton is not importable ({_TRITON_ERROR})")
        ctx.three = q.dim() == 3
        if ctx.three:
            check_inputs(q, k, v, is_causal)
        else:
            check_heads(q, k, v)
            check_inputs(q[:, 0], k[:, 0], v[:, 0], is_causal)
        if q.dtype == torch.bfloat16 and _interpreting():
            raise ValueError(INTERPRETER_BF16)
        q, k, v = (_operand(_4d(x)) for x in (q, k, v))
        b, h, sq, d = q.shape
        o = torch.empty((b, sq, h, d), dtype=q.dtype, device=q.device).transpose(1, 2)
        lse = torch.empty((b, h, sq), dtype=torch.float32, device=q.device)
        const = constants(d, is_causal, q.dtype)
        name = _fwd_name(q, k, v)
        launch(name, *kernel_args(name, q, k, v, o=o, lse=lse), b * h, const)
        ctx.save_for_backward(q, k, v, o, lse)
        ctx.is_causal = bool(is_causal)
        return o.squeeze(1) if ctx.three else o

    @staticmethod
    def backward(ctx, grad_out):
        q, k, v, o, lse = ctx.saved_tensors
        b, h, sq, d = q.shape
        variant = bwd_variant(q.dtype, d)
        do = _operand(_4d(grad_out))
        delta = torch.empty((b, h, sq), dtype=torch.float32, device=q.device)
        pre_block = preprocess_block(d)
        _bwd_preprocess_kernel[(triton.cdiv(sq, pre_block), b * h)](
            o, do, delta, *_strides(o), *_strides(do), h, sq,
            HEAD_DIM=d, BLOCK_M=pre_block, BLOCK_D=block_d(d))
        const, lo = constants(d, ctx.is_causal, q.dtype), None
        if variant == "split_tma" and pre_split(q.dtype, d):
            # float32 through descriptors: q, k, v and dO (after D above) as their TF32 parts,
            # contiguous copies (so aligned for the copy engine), each tile loaded straight into
            # the products' shared memory (PRE_SPLIT)
            (q, ql), (k, kl), (v, vl), (do, dol) = map(tf32_split, (q, k, v, do))
            const, lo = dict(const, PRE_SPLIT=True), (ql, kl, vl, dol)
        elif variant in DESC_FALLBACK and not _tma_ok(q, k, v, do):
            variant = DESC_FALLBACK[variant]  # descriptors cannot read these: the plain loads
        # q, k and v are dense (_operand, or the copies above): empty_like keeps their strides,
        # as the kernels need
        dq = torch.empty_like(q)
        dk = torch.empty_like(k)
        dv = torch.empty_like(v)
        tensors = dict(lse=lse, do=do, delta=delta, dq=dq, dk=dk, dv=dv, lo=lo)
        if variant in ("atomic", "atomic_tma"):
            # q's strides too, so that the cast below pairs the two buffers element by element
            dq_acc = torch.zeros_like(q, dtype=torch.float32)
            name = BWD_VARIANTS[variant][0]
            args = kernel_args(name, q, k, v, dq_acc=dq_acc, **tensors)
            launch(name, *args, b * h, const)
            n = dq_acc.numel()
            _dq_cast_kernel[(triton.cdiv(n, 1024),)](dq_acc, dq, 1.0 / math.sqrt(d), n, BLOCK=1024)
        else:
            for name in BWD_VARIANTS[variant]:
                launch(name, *kernel_args(name, q, k, v, **tensors), b * h, const)
        if ctx.three:
            dq, dk, dv = dq.squeeze(1), dk.squeeze(1), dv.squeeze(1)
        return dq, dk, dv, None


def flash_attention(q, k, v, is_causal=True):
    """Attention softmax(q k^T / sqrt(d)) v with the Triton kernels; (batch, heads, seq, d)
    inputs of any strides (d contiguous) read in place, or (batch, seq, d)."""
    return FlashAttentionTriton.apply(q, k, v, is_causal)
