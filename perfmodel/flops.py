"""FLOPs a cell does and the peak rates MFU is stated against."""
from __future__ import annotations


def attention_flops(batch: int, heads: int, seq_q: int, seq_k: int, d: int, causal: bool,
                    pass_: str) -> float:
    """4*b*h*sq*sk*d forward (two matmuls), 2.5x that backward, halved when causal."""
    fwd = 4.0 * batch * max(heads, 1) * seq_q * seq_k * d * (0.5 if causal else 1.0)
    return {"fwd": fwd, "bwd": 2.5 * fwd, "fwd_bwd": 3.5 * fwd}[pass_]


def model_flops(params: int, batch: int, context: int, n_layers: int, heads: int, head_dim: int,
                mode: str) -> float:
    """6 * params * tokens for forward+backward (2 forward), plus the attention matmuls."""
    tokens = batch * context
    fwd = 2.0 * params * tokens + n_layers * attention_flops(batch, heads, context, context,
                                                             head_dim, True, "fwd")
    return fwd * {"fwd": 1.0, "bwd": 2.0, "fwd_bwd": 3.0, "train": 3.0}[mode]


# Dense peak rates (TFLOP/s) that MFU is stated against, from the vendors' datasheets (SXM parts).
PEAK_TFLOPS = {
    ("H100", "bf16"): 989.4, ("H100", "tf32"): 494.7, ("H100", "fp32"): 66.9,
    ("H200", "bf16"): 989.4, ("H200", "tf32"): 494.7, ("H200", "fp32"): 66.9,
    ("A100", "bf16"): 312.0, ("A100", "tf32"): 156.0, ("A100", "fp32"): 19.5,
}


def stated_peak(env: dict, kind: str) -> float | None:
    name = env.get("name", "")
    for (gpu, k), value in PEAK_TFLOPS.items():
        if gpu in name and k == kind:
            return value
    return None
