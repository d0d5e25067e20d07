"""What perfmodel runs: model cells and attention cells, each built into a Runnable.

A cell is a frozen description (preset, sizes, precision, pass). ``build(device)`` allocates its
inputs and modules and returns a perfmodel.measure.Runnable whose ``step`` is the timed work and
whose ``prepare`` is the untimed work before it. How a step is timed is measure.py's business.
"""
from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from .attention import availability, check_shapes, compile_for_grids, get_attention
from .errors import UserError, choose
from .flops import attention_flops, model_flops
from .measure import Marks, Runnable
from .memory import MemoryMeter
from .model import PRESETS, TransformerLM, count_params, get_config

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
DTYPE_ALIASES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
PRECISIONS = ("fp32", "bf16")  # bf16 = autocast over fp32 weights
ATTENTION_PASSES = ("fwd", "bwd", "fwd_bwd")
MODEL_MODES = ("fwd", "bwd", "fwd_bwd", "train")
# The modes that are parts of a train step, and its points (perfmodel.measure.Marks): 0 its start,
# 1 before the backward, 2 before the optimizer, 3 after it, 4 its end. A split cell times its
# mode as that part of a marked train step, so one burst of train steps gives all three.
TRAIN_PARTS = {"bwd": (1, 2), "fwd_bwd": (0, 2), "train": (0, 4)}
SEED_ATTENTION_D = (16, 32, 64, 128)
SEED_ATTENTION_SEQ = (256, 1024, 4096, 8192, 16384)
SEED_CONTEXTS = (128, 256, 512, 1024)


def dtype_name(name: str) -> str:
    name = DTYPE_ALIASES.get(name, name)
    choose("dtype", name, list(DTYPES) + list(DTYPE_ALIASES))
    return name


def _positive(**values) -> None:
    for key, value in values.items():
        if not isinstance(value, int) or value < 1:
            raise UserError(f"{key} must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class AttentionCell:
    impl: str
    d: int
    seq: int
    dtype: str = "float32"
    batch: int = 8
    heads: int = 0  # 0: (batch, seq, d) inputs, as the seeds; else (batch, heads, seq, d)
    causal: bool = True
    pass_: str = "fwd"
    seed: int = 0

    def validate(self) -> None:
        from .attention import IMPLEMENTATIONS  # noqa: PLC0415

        choose("attention implementation", self.impl, IMPLEMENTATIONS)
        choose("attention pass", self.pass_, ATTENTION_PASSES)
        dtype_name(self.dtype)
        _positive(d=self.d, seq=self.seq, batch=self.batch)
        if self.heads < 0:
            raise UserError(f"heads must be >= 0 (0 = 3-D inputs), got {self.heads}")

    def describe(self) -> dict:
        out = asdict(self)
        out["dtype"] = dtype_name(self.dtype)
        out["pass"] = out.pop("pass_")
        return out

    def availability(self, device) -> tuple[bool, str]:
        return availability(self.impl, device)

    @property
    def shape(self) -> tuple[int, ...]:
        if self.heads:
            return (self.batch, self.heads, self.seq, self.d)
        return (self.batch, self.seq, self.d)

    def flops(self) -> float:
        return attention_flops(self.batch, self.heads, self.seq, self.seq, self.d, self.causal,
                               self.pass_)

    def math_kind(self) -> str:
        return "bf16" if dtype_name(self.dtype) != "float32" else "fp32"

    def estimate_bytes(self) -> int:
        """Predicted peak bytes, on the generous side (used to call OOM on the CPU)."""
        el = DTYPES[dtype_name(self.dtype)].itemsize
        tensors = self.batch * max(self.heads, 1) * self.seq * self.d * el
        scores = self.batch * max(self.heads, 1) * self.seq * self.seq * el
        grads = self.pass_ != "fwd"
        io = tensors * (8 if grads else 4)
        if self.impl in ("eager", "compiled"):  # scores, probabilities, mask; their grads
            return io + scores * (5 if grads else 3)
        return io + 64 * 2**20

    def build(self, device: torch.device) -> Runnable:
        dtype = DTYPES[dtype_name(self.dtype)]
        fn = get_attention(self.impl)
        gen = torch.Generator(device=device).manual_seed(self.seed)
        needs_grad = self.pass_ != "fwd"

        def rand():
            t = torch.randn(self.shape, generator=gen, device=device, dtype=dtype)
            return t.requires_grad_(needs_grad)

        q, k, v = rand(), rand(), rand()
        check_shapes(q, k, v, self.causal)
        meter = MemoryMeter(device)
        if self.pass_ == "fwd":
            def step(_):
                fn(q, k, v, self.causal)
            return Runnable(device, step, meter=meter)

        grad_out = torch.randn(self.shape, generator=gen, device=device, dtype=dtype)

        def clear_grads():
            q.grad = k.grad = v.grad = None

        if self.pass_ == "bwd":
            def prepare():
                clear_grads()
                out = fn(q, k, v, self.causal)
                meter.mark_before_backward()
                return out

            def step(out):
                out.backward(grad_out)
            return Runnable(device, step, prepare, meter=meter)

        def step(_):
            out = fn(q, k, v, self.causal)
            meter.mark_before_backward()
            out.backward(grad_out)
        return Runnable(device, step, clear_grads, meter=meter)


@dataclass(frozen=True)
class ModelCell:
    preset: str
    context: int
    batch: int = 4
    precision: str = "fp32"
    compile: bool = False
    attention: str = "sdpa"
    mode: str = "fwd"
    tf32: bool = False
    vocab_size: int = 10_000
    seed: int = 0
    # time the mode as its part of a marked train step (TRAIN_PARTS) instead of a step of its
    # own: the backward then runs right behind its forward, as in training, and one burst of
    # train steps gives the three modes' numbers (Runnable.parts_sample)
    split: bool = False

    def validate(self) -> None:
        from .attention import IMPLEMENTATIONS  # noqa: PLC0415

        choose("preset", self.preset, PRESETS)
        choose("precision", self.precision, PRECISIONS)
        choose("mode", self.mode, MODEL_MODES)
        if self.split:
            choose("mode of a split train step", self.mode, TRAIN_PARTS)
        choose("attention implementation", self.attention, IMPLEMENTATIONS)
        _positive(context=self.context, batch=self.batch, vocab_size=self.vocab_size)

    @property
    def config(self):
        return get_config(self.preset, attention=self.attention, vocab_size=self.vocab_size)

    def describe(self) -> dict:
        cfg = self.config
        out = asdict(self)
        out.update(d_model=cfg.d_model, d_ff=cfg.d_ff, n_layers=cfg.n_layers, n_heads=cfg.n_heads,
                   params=count_params(cfg))
        return out

    def availability(self, device) -> tuple[bool, str]:
        return availability(self.attention, device)

    def math_kind(self) -> str:
        if self.precision == "bf16":
            return "bf16"
        return "tf32" if self.tf32 else "fp32"

    def flops(self) -> float:
        cfg = self.config
        return model_flops(count_params(cfg), self.batch, self.context, cfg.n_layers,
                           cfg.n_heads, cfg.head_dim, self.mode)

    def estimate_bytes(self) -> int:
        """Predicted peak bytes, on the generous side (used to call OOM on the CPU)."""
        cfg = self.config
        p = count_params(cfg)
        b, s, d, h = self.batch, self.context, cfg.d_model, cfg.n_heads
        el = 2 if self.precision == "bf16" else 4
        weights = 4 * p + (2 * p if self.precision == "bf16" else 0)  # + autocast's bf16 copies
        per_layer = b * s * (12 * d + 4 * cfg.d_ff) * el
        if self.attention in ("eager", "compiled"):
            per_layer += 3 * b * h * s * s * el
        logits = 3 * b * s * cfg.vocab_size * 4
        if self.mode == "fwd":
            return weights + 2 * per_layer + logits
        train = self.mode == "train" or self.split
        state = 4 * p + (8 * p if train else 0)  # grads, AdamW moments
        return int(1.2 * (weights + state + cfg.n_layers * per_layer + logits))

    def build(self, device: torch.device) -> Runnable:
        torch.backends.cuda.matmul.allow_tf32 = self.tf32  # explicit, and recorded with the result
        torch.backends.cudnn.allow_tf32 = self.tf32
        torch.manual_seed(self.seed)
        model = TransformerLM(self.config, device=device)
        forward = compile_for_grids(model) if self.compile else model
        gen = torch.Generator(device=device).manual_seed(self.seed)
        ids = torch.randint(0, self.vocab_size, (self.batch, self.context + 1), generator=gen,
                            device=device)
        inputs, targets = ids[:, :-1], ids[:, 1:]
        meter = MemoryMeter(device)

        def autocast():
            if self.precision == "bf16":
                return torch.autocast(device.type, dtype=torch.bfloat16)
            return contextlib.nullcontext()

        def loss():
            with autocast():
                logits = forward(inputs)
            return F.cross_entropy(logits.float().view(-1, self.vocab_size), targets.reshape(-1))

        def zero_grad():
            for p in model.parameters():
                p.grad = None

        if self.mode == "fwd":
            def step(_):
                with torch.no_grad(), autocast():
                    forward(inputs)
            return Runnable(device, step, meter=meter)

        if self.mode == "bwd" and not self.split:
            def prepare():
                zero_grad()
                value = loss()
                meter.mark_before_backward()
                return value

            def step(value):
                value.backward()
            return Runnable(device, step, prepare, meter=meter)

        # forward+backward and the train step; a split cell trains and marks its parts
        optimizer = (torch.optim.AdamW(model.parameters(), lr=1e-4)
                     if self.mode == "train" or self.split else None)
        marks = Marks(device) if self.split else None
        mark = marks.mark if marks is not None else (lambda: None)

        def step(_):
            zero_grad()
            value = loss()
            meter.mark_before_backward()
            mark()
            value.backward()
            mark()
            if optimizer is not None:
                optimizer.step()
            mark()
        if marks is None:
            return Runnable(device, step, meter=meter)
        return Runnable(device, step, meter=meter, marks=marks, parts=TRAIN_PARTS,
                        report=self.mode)
