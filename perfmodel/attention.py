"""Attention implementations, selectable by name, on (batch, seq, d) or (batch, heads, seq, d).

All of them compute softmax(q k^T / sqrt(d)) v, with query i attending keys j <= i when causal
(top-left aligned, as torch's SDPA does). Each is checked against ``reference_attention`` in
float64 by the tests.
"""
from __future__ import annotations

import importlib
import math
from typing import Callable

import torch
import torch.nn.functional as F

from .errors import UserError, choose


def eager_attention(q, k, v, is_causal: bool = True):
    """matmul, mask, softmax, matmul: materializes the seq x seq scores, like the seeds did."""
    scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(q.shape[-1]))
    if is_causal:
        sq, sk = q.shape[-2], k.shape[-2]
        keep = torch.ones(sq, sk, dtype=torch.bool, device=q.device).tril()
        scores = scores.masked_fill(~keep, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


def compile_for_grids(fn):
    """torch.compile(fn) that stays compiled across a whole grid of shapes.

    Dynamo keeps a small number of specializations per code object (8 by default) and silently
    falls back to eager past it; a grid of 40 attention shapes or of every preset would then time
    eager code under the name "compiled". Raising the limits keeps every cell compiled.
    """
    import torch._dynamo.config as dynamo_config  # noqa: PLC0415

    for name in ("cache_size_limit", "recompile_limit", "accumulated_cache_size_limit",
                 "accumulated_recompile_limit"):
        if hasattr(dynamo_config, name):
            setattr(dynamo_config, name, max(getattr(dynamo_config, name), 4096))
    return torch.compile(fn, dynamic=False)


_compiled_eager = None


def compiled_attention(q, k, v, is_causal: bool = True):
    """torch.compile of eager_attention.

    A compiled graph donates its saved buffers to its backward, so that backward cannot be re-run
    with retain_graph=True. The measurement core never does that: every timed backward has a fresh
    forward of its own, run outside the timed region.
    """
    global _compiled_eager
    if _compiled_eager is None:
        _compiled_eager = compile_for_grids(eager_attention)
    return _compiled_eager(q, k, v, is_causal)


def sdpa_attention(q, k, v, is_causal: bool = True):
    if q.dim() == 3:
        # SDPA's fused backends (flash, cuDNN, memory-efficient) take (batch, heads, seq, d) only;
        # given 3-D inputs it silently falls back to the math path, which materializes seq x seq.
        return sdpa_attention(q.unsqueeze(1), k.unsqueeze(1), v.unsqueeze(1), is_causal).squeeze(1)
    return F.scaled_dot_product_attention(q, k, v, is_causal=is_causal)


def reference_attention(q, k, v, is_causal: bool = True) -> torch.Tensor:
    """float64 on the CPU, the yardstick for every implementation (output in float64).

    Differentiable: pass float64 leaves to get reference gradients."""
    return eager_attention(*(t.double().cpu() for t in (q, k, v)), is_causal)


def reference_logsumexp(q, k, is_causal: bool = True) -> torch.Tensor:
    """float64 row logsumexp of the scaled, masked scores: what FlashAttention keeps per query
    row for its backward pass (checked against it in tests and in tools/bench_flash.py)."""
    q, k = q.double().cpu(), k.double().cpu()
    scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(q.shape[-1]))
    if is_causal:
        keep = torch.ones(q.shape[-2], k.shape[-2], dtype=torch.bool).tril()
        scores = scores.masked_fill(~keep, float("-inf"))
    return torch.logsumexp(scores, dim=-1)


# name -> the function, or "module:function" for implementations that live in their own module
# and may be missing (older commits) or unusable on this device (Triton without a GPU).
IMPLEMENTATIONS: dict[str, Callable | str] = {
    "eager": eager_attention,
    "compiled": compiled_attention,
    "sdpa": sdpa_attention,
    "flash": "perfmodel.flash_triton:flash_attention",
    "flash_torch": "perfmodel.flash_torch:flash_torch_attention",
}


def _load(name: str) -> Callable:
    choose("attention implementation", name, IMPLEMENTATIONS)
    impl = IMPLEMENTATIONS[name]
    if callable(impl):
        return impl
    module, func = impl.split(":")
    try:
        return getattr(importlib.import_module(module), func)
    except (ImportError, AttributeError) as err:
        raise NotImplementedError(f"attention {name!r} is not available: {err}") from None


def availability(name: str, device: str | torch.device) -> tuple[bool, str]:
    """Whether ``name`` can run on ``device``, and if not, why (one line)."""
    try:
        _load(name)
    except NotImplementedError as err:
        return False, str(err)
    if name == "flash":
        from .flash_triton import is_available  # noqa: PLC0415 (optional module)

        return is_available(torch.device(device))
    return True, ""


def get_attention(name: str) -> Callable:
    """The function for ``name``; UserError for an unknown name, NotImplementedError if absent."""
    return _load(name)


def check_shapes(q, k, v, is_causal: bool) -> None:
    if q.dim() not in (3, 4) or k.dim() != q.dim() or v.dim() != q.dim():
        raise UserError("attention takes (batch, seq, d) or (batch, heads, seq, d) tensors, got "
                        f"q{tuple(q.shape)} k{tuple(k.shape)} v{tuple(v.shape)}")
    if q.shape[:-2] != k.shape[:-2] or k.shape[:-1] != v.shape[:-1] or q.shape[-1] != k.shape[-1]:
        raise UserError(f"mismatched attention shapes q{tuple(q.shape)} k{tuple(k.shape)} "
                        f"v{tuple(v.shape)}")
    if is_causal and q.shape[-2] != k.shape[-2]:
        raise UserError("causal attention needs equal query and key lengths, got "
                        f"{q.shape[-2]} and {k.shape[-2]}")


def attention(q, k, v, is_causal: bool = True, impl: str = "sdpa") -> torch.Tensor:
    check_shapes(q, k, v, is_causal)
    return get_attention(impl)(q, k, v, is_causal)
