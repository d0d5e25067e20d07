"""One cell timed by triton.testing.do_bench: the independent timer the tools hold perfmodel's
own samples against (agreement, gpu_check) and calibrate the gate check's plant with."""
from __future__ import annotations

import torch

from perfmodel.attention import get_attention
from perfmodel.workloads import DTYPES, AttentionCell


def fn_ms(fn, warmup: int = 50, rep: int = 300, grad_to_none=None) -> float:
    """do_bench's median of ``fn`` in ms: its own warm-up, L2 flush and queueing."""
    from triton.testing import do_bench  # noqa: PLC0415 (GPU boxes only)

    return do_bench(fn, warmup=warmup, rep=rep, grad_to_none=grad_to_none, return_mode="median")


def attention_inputs(impl: str, dtype: str, d: int, seq: int, device, grad: bool = False,
                     batch: int = 8):
    """The attention function and fresh (batch, seq, d) q, k, v, as AttentionCell builds them."""
    q, k, v = (torch.randn(batch, seq, d, device=device, dtype=DTYPES[dtype], requires_grad=grad)
               for _ in range(3))
    return get_attention(impl), q, k, v


def cell_ms(cell, device, warmup: int = 50, rep: int = 300) -> float:
    """do_bench's median of the same work a perfmodel cell times (a forward or a backward of
    attention, a model step)."""
    if isinstance(cell, AttentionCell):
        fn, q, k, v = attention_inputs(cell.impl, cell.dtype, cell.d, cell.seq, device,
                                       grad=cell.pass_ != "fwd", batch=cell.batch)
        if cell.pass_ == "fwd":
            return fn_ms(lambda: fn(q, k, v, cell.causal), warmup, rep)
        out = fn(q, k, v, cell.causal)
        g = torch.randn_like(out)
        return fn_ms(lambda: out.backward(g, retain_graph=True), warmup, rep,
                     grad_to_none=[q, k, v])
    run = cell.build(device)  # a model cell: its step zeroes the grads itself
    try:
        return fn_ms(lambda: run.step(run.prepare()), warmup, rep)
    finally:
        run.release()
        torch.cuda.empty_cache()
