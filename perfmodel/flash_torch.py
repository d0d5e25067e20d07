"""FlashAttention-2 written with plain PyTorch tensor operations, tile by tile.

Forward: the queries are cut into tiles of ``block_q`` rows; for each query tile we loop
over tiles of ``block_k`` keys with the online softmax (running row max ``m`` and running
row sum ``l``, all in float32), so no (seq_q x seq_k) tensor ever exists.  The row
logsumexp ``L = m + log(l)`` (natural log) is kept for the backward pass.

Backward (FlashAttention-2 equations): ``D = rowsum(dO * O)``; for each key tile, loop over
the query tiles, recompute ``P = exp(S - L)``, then ``dV += P^T dO``, ``dP = dO V^T``,
``dS = P * (dP - D)``, ``dQ += scale * dS K``, ``dK += scale * dS^T Q``.

Runs on any device PyTorch runs on (CPU in CI, CUDA on the GPU box).  It is a readable
reference for the Triton kernels in :mod:`perfmodel.flash_triton`, not a fast kernel.
"""
from __future__ import annotations

import math

import torch

# Default tile sizes (rows of queries and of keys handled at once).
BLOCK_Q = 64
BLOCK_K = 64

# Head dims: multiples of HEAD_DIM_STEP up to MAX_HEAD_DIM (the 2.7B preset has 80).  The Triton
# kernels pad d to the next power of two inside the kernel; 8 keeps every row 16-byte aligned
# in 16-bit dtypes, which vectorized loads need.
HEAD_DIM_STEP = 8
MAX_HEAD_DIM = 256


def check_head_dim(d: int) -> None:
    """Raise ValueError unless ``d`` is a multiple of 8 between 8 and 256."""
    if d < HEAD_DIM_STEP or d > MAX_HEAD_DIM or d % HEAD_DIM_STEP:
        raise ValueError(
            f"head dimension d={d} is not supported: it must be a multiple of {HEAD_DIM_STEP} "
            f"from {HEAD_DIM_STEP} to {MAX_HEAD_DIM}")


def check_inputs(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, is_causal: bool) -> None:
    """Shape checks shared by both implementations, on (batch, seq, d) tensors."""
    if q.dim() != 3 or k.dim() != 3 or v.dim() != 3:
        raise ValueError(f"expected (batch, seq, d) tensors, got shapes {tuple(q.shape)}, "
                         f"{tuple(k.shape)}, {tuple(v.shape)}")
    check_head_dim(q.shape[-1])
    if k.shape != v.shape or q.shape[0] != k.shape[0] or q.shape[2] != k.shape[2]:
        raise ValueError(f"incompatible shapes q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}")
    if not (q.dtype == k.dtype == v.dtype):
        raise ValueError(f"q, k, v must share one dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    if q.dtype not in (torch.float32, torch.bfloat16, torch.float16):
        raise ValueError(f"dtype {q.dtype} is not supported (float32, bfloat16, float16)")
    if q.shape[1] == 0 or k.shape[1] == 0:
        raise ValueError("sequence lengths must be at least 1")


def saved_logsumexp(out: torch.Tensor) -> torch.Tensor:
    """The row logsumexp a flash forward saved for ``out``'s backward, shaped as ``out`` less its
    last dim: (batch, seq) or (batch, heads, seq). Both implementations save (q, k, v, out, lse);
    the Triton one keeps lse per head, (batch, 1, seq) for (batch, seq, d) inputs."""
    return out.grad_fn.saved_tensors[4].reshape(out.shape[:-1])


def check_heads(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    """(batch, heads, seq, d) inputs: one batch size and one head count (check_inputs checks
    the rest on one head)."""
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        raise ValueError(f"expected (batch, heads, seq, d) tensors, got shapes {tuple(q.shape)}, "
                         f"{tuple(k.shape)}, {tuple(v.shape)}")
    if not q.shape[:2] == k.shape[:2] == v.shape[:2] or q.shape[1] == 0:
        raise ValueError(f"q, k, v must share batch and heads, got shapes {tuple(q.shape)}, "
                         f"{tuple(k.shape)}, {tuple(v.shape)}")


def _flash_forward(q, k, v, is_causal, block_q, block_k):
    b, sq, d = q.shape
    sk = k.shape[1]
    scale = 1.0 / math.sqrt(d)
    out = torch.empty_like(q)
    lse = torch.empty((b, sq), dtype=torch.float32, device=q.device)
    for qs in range(0, sq, block_q):
        qe = min(qs + block_q, sq)
        qi = q[:, qs:qe].float() * scale
        rows = torch.arange(qs, qe, device=q.device)
        m = torch.full((b, qe - qs), float("-inf"), dtype=torch.float32, device=q.device)
        l = torch.zeros((b, qe - qs), dtype=torch.float32, device=q.device)
        acc = torch.zeros((b, qe - qs, d), dtype=torch.float32, device=q.device)
        # causal: query i sees keys j <= i, so key tiles starting at or after qe are skipped
        k_end = min(sk, qe) if is_causal else sk
        for ks in range(0, k_end, block_k):
            ke = min(ks + block_k, k_end)
            s = torch.matmul(qi, k[:, ks:ke].float().transpose(1, 2))  # (b, tq, tk)
            if is_causal and ke - 1 > qs:  # only tiles that cross the diagonal need the mask
                cols = torch.arange(ks, ke, device=q.device)
                s = s.masked_fill(cols[None, None, :] > rows[None, :, None], float("-inf"))
            m_new = torch.maximum(m, s.amax(dim=-1))
            p = torch.exp(s - m_new[..., None])
            alpha = torch.exp(m - m_new)
            l = l * alpha + p.sum(dim=-1)
            acc = acc * alpha[..., None] + torch.matmul(p, v[:, ks:ke].float())
            m = m_new
        out[:, qs:qe] = (acc / l[..., None]).to(q.dtype)
        lse[:, qs:qe] = m + torch.log(l)
    return out, lse


def _flash_backward(q, k, v, o, lse, do, is_causal, block_q, block_k):
    b, sq, d = q.shape
    sk = k.shape[1]
    scale = 1.0 / math.sqrt(d)
    delta = (do.float() * o.float()).sum(dim=-1)  # D = rowsum(dO * O), (b, sq)
    dq = torch.zeros((b, sq, d), dtype=torch.float32, device=q.device)
    dk = torch.empty((b, sk, d), dtype=torch.float32, device=q.device)
    dv = torch.empty((b, sk, d), dtype=torch.float32, device=q.device)
    for ks in range(0, sk, block_k):
        ke = min(ks + block_k, sk)
        kj = k[:, ks:ke].float()
        vj = v[:, ks:ke].float()
        cols = torch.arange(ks, ke, device=q.device)
        dkj = torch.zeros((b, ke - ks, d), dtype=torch.float32, device=q.device)
        dvj = torch.zeros((b, ke - ks, d), dtype=torch.float32, device=q.device)
        # causal: only queries i >= ks see any key of this tile
        q_start = (ks // block_q) * block_q if is_causal else 0
        for qs in range(q_start, sq, block_q):
            qe = min(qs + block_q, sq)
            qi = q[:, qs:qe].float()
            doi = do[:, qs:qe].float()
            s = torch.matmul(qi, kj.transpose(1, 2)) * scale
            p = torch.exp(s - lse[:, qs:qe, None])  # recomputed probabilities
            if is_causal and ke - 1 > qs:
                rows = torch.arange(qs, qe, device=q.device)
                p = p.masked_fill(cols[None, None, :] > rows[None, :, None], 0.0)
            dvj += torch.matmul(p.transpose(1, 2), doi)
            dp = torch.matmul(doi, vj.transpose(1, 2))
            ds = p * (dp - delta[:, qs:qe, None])
            dq[:, qs:qe] += torch.matmul(ds, kj) * scale
            dkj += torch.matmul(ds.transpose(1, 2), qi) * scale
        dk[:, ks:ke] = dkj
        dv[:, ks:ke] = dvj
    return dq.to(q.dtype), dk.to(k.dtype), dv.to(v.dtype)


class FlashAttentionTorch(torch.autograd.Function):
    """FlashAttention-2 in tiled PyTorch: ``FlashAttentionTorch.apply(q, k, v, is_causal)``.

    q: (batch, seq_q, d), k and v: (batch, seq_k, d).  Saves exactly (q, k, v, out, lse) for
    backward, lse being the (batch, seq_q) float32 natural-log row logsumexp of the scaled
    scores.
    """

    @staticmethod
    def forward(ctx, q, k, v, is_causal=False, block_q=BLOCK_Q, block_k=BLOCK_K):
        check_inputs(q, k, v, is_causal)
        out, lse = _flash_forward(q, k, v, bool(is_causal), block_q, block_k)
        ctx.save_for_backward(q, k, v, out, lse)
        ctx.is_causal = bool(is_causal)
        ctx.blocks = (block_q, block_k)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        q, k, v, o, lse = ctx.saved_tensors
        dq, dk, dv = _flash_backward(q, k, v, o, lse, grad_out, ctx.is_causal, *ctx.blocks)
        return dq, dk, dv, None, None, None


def to_3d(q, k, v):
    """(batch, heads, seq, d) -> (batch*heads, seq, d); 3D inputs pass through.

    Returns the three tensors and a function that maps a 3D output back to the input layout.
    """
    if q.dim() == 3:
        return q, k, v, lambda x: x
    if q.dim() != 4:
        raise ValueError(f"expected (batch, seq, d) or (batch, heads, seq, d), got shape {tuple(q.shape)}")
    b, h, sq, d = q.shape

    def flat(x):
        return x.reshape(x.shape[0] * x.shape[1], x.shape[2], x.shape[3])

    return flat(q), flat(k), flat(v), lambda x: x.reshape(b, h, sq, x.shape[-1])


def flash_torch_attention(q, k, v, is_causal=True, block_q=BLOCK_Q, block_k=BLOCK_K):
    """Attention softmax(q k^T / sqrt(d)) v with FlashAttentionTorch; 3D or 4D inputs."""
    q3, k3, v3, back = to_3d(q, k, v)
    return back(FlashAttentionTorch.apply(q3, k3, v3, is_causal, block_q, block_k))
