"""The Transformer language model whose performance perfmodel tracks.

A decoder-only LM: token embedding, N pre-norm blocks (RMSNorm -> causal self-attention with
rotary embeddings, RMSNorm -> SwiGLU), a final RMSNorm and an untied LM head. This is the exact
architecture the seed tables were measured on, so parameter counts must match theirs to the unit.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn as nn
import torch.nn.functional as F

from .attention import attention
from .errors import UserError, choose


@dataclass(frozen=True)
class ModelConfig:
    d_model: int
    d_ff: int
    n_layers: int
    n_heads: int
    vocab_size: int = 10_000
    rope_theta: float = 10_000.0
    attention: str = "sdpa"  # any name in perfmodel.attention.IMPLEMENTATIONS

    def __post_init__(self):
        for name in ("d_model", "d_ff", "n_layers", "n_heads", "vocab_size"):
            if getattr(self, name) <= 0:
                raise UserError(f"{name} must be positive, got {getattr(self, name)}")
        if self.d_model % self.n_heads or (self.d_model // self.n_heads) % 2:
            raise UserError(
                f"d_model {self.d_model} must split into {self.n_heads} heads of even size")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads


# d_model / d_ff / layers / heads. The five seed sizes, plus two that a 2-core CPU runs in seconds.
PRESETS: dict[str, ModelConfig] = {
    "nano": ModelConfig(64, 256, 2, 4),
    "tiny": ModelConfig(256, 1024, 4, 4),
    "small": ModelConfig(768, 3072, 12, 12),
    "medium": ModelConfig(1024, 4096, 24, 16),
    "large": ModelConfig(1280, 5120, 36, 20),
    "xl": ModelConfig(1600, 6400, 48, 25),
    "2.7B": ModelConfig(2560, 10240, 32, 32),
}
CPU_PRESETS = ("nano", "tiny")
SEED_PRESETS = ("small", "medium", "large", "xl", "2.7B")


def get_config(preset: str, **overrides) -> ModelConfig:
    choose("preset", preset, PRESETS)
    return replace(PRESETS[preset], **overrides)


def _trunc_normal(t: torch.Tensor, std: float) -> torch.Tensor:
    return nn.init.trunc_normal_(t, mean=0.0, std=std, a=-3 * std, b=3 * std)


class Linear(nn.Module):
    """y = x W^T without bias; init std sqrt(2 / (d_in + d_out)) truncated at 3 std."""

    def __init__(self, d_in: int, d_out: int, device=None, dtype=None):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(d_out, d_in, device=device, dtype=dtype))
        _trunc_normal(self.weight, math.sqrt(2.0 / (d_in + d_out)))

    def forward(self, x):
        return F.linear(x, self.weight)


class Embedding(nn.Module):
    def __init__(self, n: int, d: int, device=None, dtype=None):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n, d, device=device, dtype=dtype))
        _trunc_normal(self.weight, 1.0)

    def forward(self, ids):
        return self.weight[ids]


class RMSNorm(nn.Module):
    def __init__(self, d: int, eps: float = 1e-5, device=None, dtype=None):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d, device=device, dtype=dtype))

    def forward(self, x):
        # float32 whatever the input: the mean of squares overflows/underflows in bf16.
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return (x32 * self.weight.float()).to(x.dtype)


class SwiGLU(nn.Module):
    def __init__(self, d_model: int, d_ff: int, device=None, dtype=None):
        super().__init__()
        self.w1 = Linear(d_model, d_ff, device, dtype)
        self.w2 = Linear(d_ff, d_model, device, dtype)
        self.w3 = Linear(d_model, d_ff, device, dtype)

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


def rope_tables(seq: int, head_dim: int, theta: float, device) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of the rotary angles, (seq, head_dim / 2), float32.

    Built once per forward and shared by every layer: per-layer tables cost a dozen small kernel
    launches each, which is what bounds the small presets' step time on a GPU.
    """
    inv_freq = theta ** (-torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim)
    angles = torch.arange(seq, device=device, dtype=torch.float32)[:, None] * inv_freq
    return angles.cos(), angles.sin()


def rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate consecutive pairs of x (..., seq, head_dim) by position-dependent angles."""
    x1, x2 = x.float()[..., 0::2], x.float()[..., 1::2]
    out = torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1).flatten(-2)
    return out.to(x.dtype)


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig, device=None, dtype=None):
        super().__init__()
        d = cfg.d_model
        self.cfg = cfg
        self.q_proj = Linear(d, d, device, dtype)
        self.k_proj = Linear(d, d, device, dtype)
        self.v_proj = Linear(d, d, device, dtype)
        self.output_proj = Linear(d, d, device, dtype)

    def forward(self, x, cos, sin):
        b, s, d = x.shape
        h = self.cfg.n_heads

        def heads(t):
            return t.view(b, s, h, d // h).transpose(1, 2)

        q, k, v = heads(self.q_proj(x)), heads(self.k_proj(x)), heads(self.v_proj(x))
        q, k = rope(q, cos, sin), rope(k, cos, sin)
        y = attention(q, k, v, is_causal=True, impl=self.cfg.attention)
        return self.output_proj(y.transpose(1, 2).reshape(b, s, d))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, device=None, dtype=None):
        super().__init__()
        self.ln1 = RMSNorm(cfg.d_model, device=device, dtype=dtype)
        self.attn = CausalSelfAttention(cfg, device, dtype)
        self.ln2 = RMSNorm(cfg.d_model, device=device, dtype=dtype)
        self.ffn = SwiGLU(cfg.d_model, cfg.d_ff, device, dtype)

    def forward(self, x, cos, sin):
        x = x + self.attn(self.ln1(x), cos, sin)
        return x + self.ffn(self.ln2(x))


class TransformerLM(nn.Module):
    def __init__(self, cfg: ModelConfig, device=None, dtype=None):
        super().__init__()
        self.cfg = cfg
        self.token_embeddings = Embedding(cfg.vocab_size, cfg.d_model, device, dtype)
        self.layers = nn.ModuleList(Block(cfg, device, dtype) for _ in range(cfg.n_layers))
        self.ln_final = RMSNorm(cfg.d_model, device=device, dtype=dtype)
        self.lm_head = Linear(cfg.d_model, cfg.vocab_size, device, dtype)  # not tied

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.token_embeddings(ids)
        cos, sin = rope_tables(ids.shape[1], self.cfg.head_dim, self.cfg.rope_theta, ids.device)
        for layer in self.layers:
            x = layer(x, cos, sin)
        return self.lm_head(self.ln_final(x))


def count_params(cfg: ModelConfig) -> int:
    """Parameter count from a meta-device model: exact, and allocates no weights."""
    with torch.device("meta"):
        model = TransformerLM(cfg)
    return sum(p.numel() for p in model.parameters())
