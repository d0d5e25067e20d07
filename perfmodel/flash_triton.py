"""FlashAttention-2 forward and backward as Triton kernels.

Layout: (batch, seq, d) contiguous tensors; 4D (batch, heads, seq, d) inputs are folded to
(batch*heads, seq, d) by :func:`flash_attention`.

Forward (``_fwd_kernel``): one program per (query tile, batch); it loops once over the key
tiles with the online softmax in float32, in the log2 domain (``exp2``, with log2(e) folded
into the softmax scale).  The key range is split in two stages: tiles that need no mask at
all (fully below the causal diagonal and inside seq_k) and the few tiles that need one (the
diagonal tiles when causal, the ragged last tile).  Causal tiles above the diagonal are
never visited.  The row logsumexp is written out (natural log) for the backward pass.

Backward: ``_bwd_preprocess_kernel`` computes D = rowsum(dO * O); ``_bwd_dkdv_kernel`` holds
one key tile and loops over query tiles, recomputing P = exp(S - L) from the saved
logsumexp; ``_bwd_dq_kernel`` holds one query tile and loops over key tiles.  Neither needs
atomics, and no (seq_q x seq_k) tensor is ever stored.

float32 inputs use ``input_precision="ieee"`` in every ``tl.dot`` (no tf32), bf16/fp16 use
the tensor cores with float32 accumulation; the probabilities are cast to the input dtype
before the second product of each pair.

Under ``TRITON_INTERPRET=1`` (Triton's CPU interpreter) a small fixed configuration is used
instead of the autotuner.
"""
from __future__ import annotations

import math
import os

import torch

from .flash_torch import check_inputs, to_3d

try:
    import triton
    import triton.language as tl
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


# Fixed configuration used by the interpreter (and by callers who turn autotuning off).
# (BLOCK_M, BLOCK_N, num_warps, num_stages); BLOCK_M = query rows, BLOCK_N = key rows.
INTERPRET_CONFIG = (32, 32, 4, 1)


# Autotuning spaces for Hopper, (BLOCK_M, BLOCK_N, num_warps, num_stages).  BLOCK_M is always
# the query tile and BLOCK_N the key tile.  bf16/fp16 use wgmma: a 128-row tile is two
# warpgroups with 8 warps; fp32 ("ieee") products run on the CUDA cores, where big tiles only
# cost registers and shared memory (and long compiles), so that space is small.
TUNING_SPACE = {
    "fwd": [(128, 64, 4, 3), (128, 64, 4, 4), (128, 64, 8, 3), (128, 128, 8, 2), (128, 128, 8, 3),
            (64, 64, 4, 3), (64, 128, 4, 3)],
    # holds a key tile of BLOCK_N rows (dK, dV accumulators), loops over query tiles
    "dkdv": [(64, 128, 8, 2), (64, 128, 8, 3), (128, 128, 8, 2), (64, 64, 4, 2), (64, 64, 4, 3),
             (128, 64, 4, 2)],
    # holds a query tile of BLOCK_M rows (dQ accumulator), loops over key tiles
    "dq": [(128, 64, 8, 2), (128, 64, 8, 3), (128, 128, 8, 2), (64, 64, 4, 2), (64, 64, 4, 3),
           (64, 128, 4, 2)],
}
TUNING_SPACE_FP32 = [(64, 64, 4, 2), (64, 64, 8, 2)]


def tuning_configs(kernel: str, dtype: torch.dtype) -> list[tuple]:
    """The (BLOCK_M, BLOCK_N, num_warps, num_stages) tuples autotuned for a kernel and dtype."""
    return list(TUNING_SPACE_FP32 if dtype == torch.float32 else TUNING_SPACE[kernel])


def config_meta(cfg: tuple) -> dict:
    """Launch keywords for one config tuple."""
    return dict(BLOCK_M=cfg[0], BLOCK_N=cfg[1], num_warps=cfg[2], num_stages=cfg[3])


def _triton_configs(kernel):
    space = sorted(set(TUNING_SPACE[kernel]) | set(TUNING_SPACE_FP32))
    return [triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=w, num_stages=s)
            for bm, bn, w, s in space]


def _pruner(kernel):
    def prune(configs, named_args, **kwargs):
        wanted = set(tuning_configs(kernel, named_args["Q"].dtype))
        return [c for c in configs
                if (c.kwargs["BLOCK_M"], c.kwargs["BLOCK_N"], c.num_warps, c.num_stages) in wanted]
    return prune


if triton is not None:

    @triton.jit
    def _fwd_inner(acc, l_i, m_i, q, k_ptrs, v_ptrs, stride_kn, stride_vn, offs_m, offs_n,
                   lo, hi, seq_k, qk_scale,
                   BLOCK_N: tl.constexpr, MASK: tl.constexpr, IS_CAUSAL: tl.constexpr,
                   DOT_PREC: tl.constexpr):
        k_ptrs += lo * stride_kn
        v_ptrs += lo * stride_vn
        for start_n in range(lo, hi, BLOCK_N):
            start_n = tl.multiple_of(start_n, BLOCK_N)
            cols = start_n + offs_n
            if MASK:
                k = tl.load(k_ptrs, mask=cols[:, None] < seq_k, other=0.0)
            else:
                k = tl.load(k_ptrs)
            qk = tl.dot(q, tl.trans(k), input_precision=DOT_PREC)
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
            acc = acc * alpha[:, None]
            if MASK:
                v = tl.load(v_ptrs, mask=cols[:, None] < seq_k, other=0.0)
            else:
                v = tl.load(v_ptrs)
            acc = tl.dot(p.to(v.dtype), v, acc, input_precision=DOT_PREC)
            m_i = m_new
            k_ptrs += BLOCK_N * stride_kn
            v_ptrs += BLOCK_N * stride_vn
        return acc, l_i, m_i

    @triton.jit
    def _fwd_kernel(Q, K, V, O, LSE, qk_scale,
                    stride_qb, stride_qm, stride_kb, stride_kn, stride_vb, stride_vn,
                    stride_ob, stride_om, seq_q, seq_k,
                    HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                    IS_CAUSAL: tl.constexpr, DOT_PREC: tl.constexpr):
        pid_m = tl.program_id(0)
        if IS_CAUSAL:
            # the last query tiles have the most key tiles: start them first
            pid_m = tl.num_programs(0) - 1 - pid_m
        bh = tl.program_id(1).to(tl.int64)
        start_m = pid_m * BLOCK_M
        offs_m = start_m + tl.arange(0, BLOCK_M)
        offs_n = tl.arange(0, BLOCK_N)
        offs_d = tl.arange(0, HEAD_DIM)
        q = tl.load(Q + bh * stride_qb + offs_m[:, None] * stride_qm + offs_d[None, :],
                    mask=offs_m[:, None] < seq_q, other=0.0)
        k_ptrs = K + bh * stride_kb + offs_n[:, None] * stride_kn + offs_d[None, :]
        v_ptrs = V + bh * stride_vb + offs_n[:, None] * stride_vn + offs_d[None, :]
        m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
        l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
        acc = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
        if IS_CAUSAL:
            hi = tl.minimum(start_m + BLOCK_M, seq_k)
            # key tiles wholly before this query tile (and inside seq_k) need no mask
            mid = tl.minimum(start_m, seq_k) // BLOCK_N * BLOCK_N
        else:
            hi = seq_k
            mid = seq_k // BLOCK_N * BLOCK_N
        acc, l_i, m_i = _fwd_inner(acc, l_i, m_i, q, k_ptrs, v_ptrs, stride_kn, stride_vn,
                                   offs_m, offs_n, 0, mid, seq_k, qk_scale,
                                   BLOCK_N, False, IS_CAUSAL, DOT_PREC)
        acc, l_i, m_i = _fwd_inner(acc, l_i, m_i, q, k_ptrs, v_ptrs, stride_kn, stride_vn,
                                   offs_m, offs_n, mid, hi, seq_k, qk_scale,
                                   BLOCK_N, True, IS_CAUSAL, DOT_PREC)
        # every row sees key 0 (top-left causal alignment, seq_k >= 1), so l_i > 0
        acc = acc / l_i[:, None]
        lse = (m_i + tl.math.log2(l_i)) * 0.6931471805599453  # back to natural log
        row_ok = offs_m < seq_q
        tl.store(LSE + bh * seq_q + offs_m, lse, mask=row_ok)
        tl.store(O + bh * stride_ob + offs_m[:, None] * stride_om + offs_d[None, :],
                 acc.to(O.dtype.element_ty), mask=row_ok[:, None])

    @triton.jit
    def _bwd_preprocess_kernel(O, DO, Delta, stride_ob, stride_om, stride_dob, stride_dom, seq_q,
                               HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr):
        bh = tl.program_id(1).to(tl.int64)
        offs_m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
        offs_d = tl.arange(0, HEAD_DIM)
        row_ok = offs_m < seq_q
        o = tl.load(O + bh * stride_ob + offs_m[:, None] * stride_om + offs_d[None, :],
                    mask=row_ok[:, None], other=0.0).to(tl.float32)
        do = tl.load(DO + bh * stride_dob + offs_m[:, None] * stride_dom + offs_d[None, :],
                     mask=row_ok[:, None], other=0.0).to(tl.float32)
        tl.store(Delta + bh * seq_q + offs_m, tl.sum(o * do, 1), mask=row_ok)

    @triton.jit
    def _bwd_dkdv_inner(dk, dv, k, v, q_ptrs, do_ptrs, lse_ptrs, delta_ptrs, stride_qm, stride_dom,
                        offs_n, offs_m, lo, hi, seq_q, qk_scale,
                        BLOCK_M: tl.constexpr, MASK: tl.constexpr, IS_CAUSAL: tl.constexpr,
                        DOT_PREC: tl.constexpr):
        q_ptrs += lo * stride_qm
        do_ptrs += lo * stride_dom
        lse_ptrs += lo
        delta_ptrs += lo
        for start_m in range(lo, hi, BLOCK_M):
            start_m = tl.multiple_of(start_m, BLOCK_M)
            rows = start_m + offs_m
            if MASK:
                row_ok = rows < seq_q
                q = tl.load(q_ptrs, mask=row_ok[:, None], other=0.0)
                do = tl.load(do_ptrs, mask=row_ok[:, None], other=0.0)
                # padded query rows get lse = +inf, hence P = 0: they add nothing
                lse = tl.load(lse_ptrs, mask=row_ok, other=float("inf"))
                delta = tl.load(delta_ptrs, mask=row_ok, other=0.0)
            else:
                q = tl.load(q_ptrs)
                do = tl.load(do_ptrs)
                lse = tl.load(lse_ptrs)
                delta = tl.load(delta_ptrs)
            # both products first: dP^T can run on the tensor cores while the exp2s run
            qkT = tl.dot(k, tl.trans(q), input_precision=DOT_PREC)  # (BLOCK_N, BLOCK_M)
            dpT = tl.dot(v, tl.trans(do), input_precision=DOT_PREC)
            pT = tl.math.exp2(qkT * qk_scale - (lse * 1.4426950408889634)[None, :])
            if MASK:
                if IS_CAUSAL:
                    pT = tl.where(rows[None, :] >= offs_n[:, None], pT, 0.0)
            dv = tl.dot(pT.to(do.dtype), do, dv, input_precision=DOT_PREC)
            dsT = pT * (dpT - delta[None, :])
            dk = tl.dot(dsT.to(q.dtype), q, dk, input_precision=DOT_PREC)
            q_ptrs += BLOCK_M * stride_qm
            do_ptrs += BLOCK_M * stride_dom
            lse_ptrs += BLOCK_M
            delta_ptrs += BLOCK_M
        return dk, dv

    @triton.jit
    def _bwd_dkdv_kernel(Q, K, V, DO, DK, DV, LSE, Delta, qk_scale, sm_scale,
                         stride_qb, stride_qm, stride_kb, stride_kn, stride_vb, stride_vn,
                         stride_dob, stride_dom, seq_q, seq_k,
                         HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                         IS_CAUSAL: tl.constexpr, DOT_PREC: tl.constexpr):
        # BLOCK_N keys held by this program, loop over query tiles of BLOCK_M rows
        # (causal: the first key tiles have the most query tiles; they already start first)
        pid_n = tl.program_id(0)
        bh = tl.program_id(1).to(tl.int64)
        start_n = pid_n * BLOCK_N
        offs_n = start_n + tl.arange(0, BLOCK_N)
        offs_m = tl.arange(0, BLOCK_M)
        offs_d = tl.arange(0, HEAD_DIM)
        col_ok = offs_n < seq_k
        k = tl.load(K + bh * stride_kb + offs_n[:, None] * stride_kn + offs_d[None, :],
                    mask=col_ok[:, None], other=0.0)
        v = tl.load(V + bh * stride_vb + offs_n[:, None] * stride_vn + offs_d[None, :],
                    mask=col_ok[:, None], other=0.0)
        dk = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
        dv = tl.zeros([BLOCK_N, HEAD_DIM], dtype=tl.float32)
        q_ptrs = Q + bh * stride_qb + offs_m[:, None] * stride_qm + offs_d[None, :]
        do_ptrs = DO + bh * stride_dob + offs_m[:, None] * stride_dom + offs_d[None, :]
        lse_ptrs = LSE + bh * seq_q + offs_m
        delta_ptrs = Delta + bh * seq_q + offs_m
        full_end = seq_q // BLOCK_M * BLOCK_M
        if IS_CAUSAL:
            # queries i >= start_n see this tile; tiles starting at or after
            # start_n + BLOCK_N see all of it (no causal mask)
            lo = start_n // BLOCK_M * BLOCK_M
            mid = tl.cdiv(start_n + BLOCK_N, BLOCK_M) * BLOCK_M
        else:
            lo = 0
            mid = 0
        # 1) diagonal tiles, masked
        dk, dv = _bwd_dkdv_inner(dk, dv, k, v, q_ptrs, do_ptrs, lse_ptrs, delta_ptrs, stride_qm,
                                 stride_dom, offs_n, offs_m, lo, tl.minimum(mid, seq_q), seq_q,
                                 qk_scale, BLOCK_M, True, IS_CAUSAL, DOT_PREC)
        # 2) full tiles below the diagonal, no mask
        dk, dv = _bwd_dkdv_inner(dk, dv, k, v, q_ptrs, do_ptrs, lse_ptrs, delta_ptrs, stride_qm,
                                 stride_dom, offs_n, offs_m, mid, full_end, seq_q,
                                 qk_scale, BLOCK_M, False, IS_CAUSAL, DOT_PREC)
        # 3) ragged last query tile, masked
        dk, dv = _bwd_dkdv_inner(dk, dv, k, v, q_ptrs, do_ptrs, lse_ptrs, delta_ptrs, stride_qm,
                                 stride_dom, offs_n, offs_m, tl.maximum(mid, full_end), seq_q, seq_q,
                                 qk_scale, BLOCK_M, True, IS_CAUSAL, DOT_PREC)
        dk = dk * sm_scale
        tl.store(DK + bh * stride_kb + offs_n[:, None] * stride_kn + offs_d[None, :],
                 dk.to(DK.dtype.element_ty), mask=col_ok[:, None])
        tl.store(DV + bh * stride_vb + offs_n[:, None] * stride_vn + offs_d[None, :],
                 dv.to(DV.dtype.element_ty), mask=col_ok[:, None])

    @triton.jit
    def _bwd_dq_inner(dq, q, do, lse2, delta, k_ptrs, v_ptrs, stride_kn, stride_vn,
                      offs_m, offs_n, lo, hi, seq_k, qk_scale,
                      BLOCK_N: tl.constexpr, MASK: tl.constexpr, IS_CAUSAL: tl.constexpr,
                      DOT_PREC: tl.constexpr):
        k_ptrs += lo * stride_kn
        v_ptrs += lo * stride_vn
        for start_n in range(lo, hi, BLOCK_N):
            start_n = tl.multiple_of(start_n, BLOCK_N)
            cols = start_n + offs_n
            if MASK:
                k = tl.load(k_ptrs, mask=cols[:, None] < seq_k, other=0.0)
                v = tl.load(v_ptrs, mask=cols[:, None] < seq_k, other=0.0)
            else:
                k = tl.load(k_ptrs)
                v = tl.load(v_ptrs)
            qk = tl.dot(q, tl.trans(k), input_precision=DOT_PREC)
            dp = tl.dot(do, tl.trans(v), input_precision=DOT_PREC)  # before the exp2s, as above
            p = tl.math.exp2(qk * qk_scale - lse2[:, None])
            if MASK:
                valid = cols[None, :] < seq_k
                if IS_CAUSAL:
                    valid = valid & (cols[None, :] <= offs_m[:, None])
                p = tl.where(valid, p, 0.0)
            ds = p * (dp - delta[:, None])
            dq = tl.dot(ds.to(k.dtype), k, dq, input_precision=DOT_PREC)
            k_ptrs += BLOCK_N * stride_kn
            v_ptrs += BLOCK_N * stride_vn
        return dq

    @triton.jit
    def _bwd_dq_kernel(Q, K, V, DO, DQ, LSE, Delta, qk_scale, sm_scale,
                       stride_qb, stride_qm, stride_kb, stride_kn, stride_vb, stride_vn,
                       stride_dob, stride_dom, seq_q, seq_k,
                       HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                       IS_CAUSAL: tl.constexpr, DOT_PREC: tl.constexpr):
        pid_m = tl.program_id(0)
        if IS_CAUSAL:
            pid_m = tl.num_programs(0) - 1 - pid_m
        bh = tl.program_id(1).to(tl.int64)
        start_m = pid_m * BLOCK_M
        offs_m = start_m + tl.arange(0, BLOCK_M)
        offs_n = tl.arange(0, BLOCK_N)
        offs_d = tl.arange(0, HEAD_DIM)
        row_ok = offs_m < seq_q
        q = tl.load(Q + bh * stride_qb + offs_m[:, None] * stride_qm + offs_d[None, :],
                    mask=row_ok[:, None], other=0.0)
        do = tl.load(DO + bh * stride_dob + offs_m[:, None] * stride_dom + offs_d[None, :],
                     mask=row_ok[:, None], other=0.0)
        lse2 = tl.load(LSE + bh * seq_q + offs_m, mask=row_ok, other=0.0) * 1.4426950408889634
        delta = tl.load(Delta + bh * seq_q + offs_m, mask=row_ok, other=0.0)
        k_ptrs = K + bh * stride_kb + offs_n[:, None] * stride_kn + offs_d[None, :]
        v_ptrs = V + bh * stride_vb + offs_n[:, None] * stride_vn + offs_d[None, :]
        dq = tl.zeros([BLOCK_M, HEAD_DIM], dtype=tl.float32)
        if IS_CAUSAL:
            hi = tl.minimum(start_m + BLOCK_M, seq_k)
            mid = tl.minimum(start_m, seq_k) // BLOCK_N * BLOCK_N
        else:
            hi = seq_k
            mid = seq_k // BLOCK_N * BLOCK_N
        dq = _bwd_dq_inner(dq, q, do, lse2, delta, k_ptrs, v_ptrs, stride_kn, stride_vn,
                           offs_m, offs_n, 0, mid, seq_k, qk_scale,
                           BLOCK_N, False, IS_CAUSAL, DOT_PREC)
        dq = _bwd_dq_inner(dq, q, do, lse2, delta, k_ptrs, v_ptrs, stride_kn, stride_vn,
                           offs_m, offs_n, mid, hi, seq_k, qk_scale,
                           BLOCK_N, True, IS_CAUSAL, DOT_PREC)
        dq = dq * sm_scale
        tl.store(DQ + bh * stride_qb + offs_m[:, None] * stride_qm + offs_d[None, :],
                 dq.to(DQ.dtype.element_ty), mask=row_ok[:, None])

    # retuned whenever a sequence length, d, the causal flag or the dtypes change
    _KEY = ["seq_q", "seq_k", "HEAD_DIM", "IS_CAUSAL"]

    def _tuned(kernel, name):
        return triton.autotune(_triton_configs(name), key=_KEY,
                               prune_configs_by={"early_config_prune": _pruner(name)})(kernel)

    _fwd_tuned = _tuned(_fwd_kernel, "fwd")
    _dkdv_tuned = _tuned(_bwd_dkdv_kernel, "dkdv")
    _dq_tuned = _tuned(_bwd_dq_kernel, "dq")


def _use_fixed_config() -> bool:
    return _interpreting() or os.environ.get("PERFMODEL_FLASH_AUTOTUNE", "1") == "0"


# Fixed config for PERFMODEL_FLASH_AUTOTUNE=0 on a GPU: a safe middle of the tuning space.
FIXED_CONFIG = (64, 64, 4, 2)

# "ieee": exact float32 products (no tf32); the option is ignored for bf16/fp16 inputs.
DOT_PRECISION = "ieee"


def _launch(tuned, kernel, rows, tile_key, batch, args, const):
    """Launch over (cdiv(rows, tile), batch) programs, autotuned or with the fixed config."""
    if _use_fixed_config():
        meta = config_meta(INTERPRET_CONFIG if _interpreting() else FIXED_CONFIG)
        kernel[(triton.cdiv(rows, meta[tile_key]), batch)](*args, **meta, **const)
    else:
        tuned[lambda meta: (triton.cdiv(rows, meta[tile_key]), batch)](*args, **const)


class FlashAttentionTriton(torch.autograd.Function):
    """FlashAttention-2 with Triton kernels: ``FlashAttentionTriton.apply(q, k, v, is_causal)``.

    q: (batch, seq_q, d), k and v: (batch, seq_k, d).  Saves exactly (q, k, v, out, lse).
    """

    @staticmethod
    def forward(ctx, q, k, v, is_causal=False):
        if triton is None:
            raise RuntimeError(f"triton is not importable ({_TRITON_ERROR})")
        check_inputs(q, k, v, is_causal)
        q, k, v = q.contiguous(), k.contiguous(), v.contiguous()
        b, sq, d = q.shape
        sk = k.shape[1]
        o = torch.empty_like(q)
        lse = torch.empty((b, sq), dtype=torch.float32, device=q.device)
        sm_scale = 1.0 / math.sqrt(d)
        const = dict(HEAD_DIM=d, IS_CAUSAL=bool(is_causal), DOT_PREC=DOT_PRECISION)
        args = (q, k, v, o, lse, sm_scale * LOG2E,
                q.stride(0), q.stride(1), k.stride(0), k.stride(1), v.stride(0), v.stride(1),
                o.stride(0), o.stride(1), sq, sk)
        _launch(_fwd_tuned, _fwd_kernel, sq, "BLOCK_M", b, args, const)
        ctx.save_for_backward(q, k, v, o, lse)
        ctx.is_causal = bool(is_causal)
        return o

    @staticmethod
    def backward(ctx, grad_out):
        q, k, v, o, lse = ctx.saved_tensors
        do = grad_out.contiguous()
        b, sq, d = q.shape
        sk = k.shape[1]
        sm_scale = 1.0 / math.sqrt(d)
        delta = torch.empty((b, sq), dtype=torch.float32, device=q.device)
        pre_block = 32 if _interpreting() else 128
        _bwd_preprocess_kernel[(triton.cdiv(sq, pre_block), b)](
            o, do, delta, o.stride(0), o.stride(1), do.stride(0), do.stride(1), sq,
            HEAD_DIM=d, BLOCK_M=pre_block)
        dq = torch.empty_like(q)
        dk = torch.empty_like(k)
        dv = torch.empty_like(v)
        const = dict(HEAD_DIM=d, IS_CAUSAL=ctx.is_causal, DOT_PREC=DOT_PRECISION)
        strides = (q.stride(0), q.stride(1), k.stride(0), k.stride(1), v.stride(0), v.stride(1),
                   do.stride(0), do.stride(1), sq, sk)
        _launch(_dkdv_tuned, _bwd_dkdv_kernel, sk, "BLOCK_N", b,
                (q, k, v, do, dk, dv, lse, delta, sm_scale * LOG2E, sm_scale) + strides, const)
        _launch(_dq_tuned, _bwd_dq_kernel, sq, "BLOCK_M", b,
                (q, k, v, do, dq, lse, delta, sm_scale * LOG2E, sm_scale) + strides, const)
        return dq, dk, dv, None


def flash_attention(q, k, v, is_causal=True):
    """Attention softmax(q k^T / sqrt(d)) v with the Triton kernels; 3D or 4D inputs."""
    q3, k3, v3, back = to_3d(q, k, v)
    return back(FlashAttentionTriton.apply(q3, k3, v3, is_causal))
