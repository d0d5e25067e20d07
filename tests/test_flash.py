"""FlashAttention-2 (perfmodel.flash_torch, perfmodel.flash_triton) against a float64 reference.

Every case draws fresh random inputs from a generator seeded at random (the seed is in the
failure message).  flash_torch runs on the CPU; the Triton kernels run on CUDA when there is
one, and on the CPU through Triton's interpreter (TRITON_INTERPRET=1, set in a subprocess so
the rest of the session imports triton normally).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from perfmodel.attention import reference_attention, reference_logsumexp
from perfmodel.flash_check import TOL as FLASH_TOL
from perfmodel.flash_torch import FlashAttentionTorch, flash_torch_attention, saved_logsumexp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HAS_CUDA = torch.cuda.is_available()

# relative-norm error bounds per (implementation, dtype); the Triton kernels' are the per-config
# check's (perfmodel.flash_check.TOL, which says why float32's is 5e-6)
TOL = {
    ("torch", torch.float32): 1e-5,
    ("torch", torch.bfloat16): 1e-2,
    **{("triton", getattr(torch, name)): tol for name, tol in FLASH_TOL.items()},
}


def reference(q, k, v, causal):
    """float64 attention on the CPU and its natural-log row logsumexp (perfmodel's reference)."""
    return reference_attention(q, k, v, causal), reference_logsumexp(q, k, causal)


def rel(x, ref):
    x, ref = x.detach().double().cpu(), ref.detach().double().cpu()
    return ((x - ref).norm() / ref.norm()).item()


def new_seed():
    return int.from_bytes(os.urandom(4), "little")


def run_case(fn, b, sq, sk, d, causal, dtype, device, seed, heads=None):
    """Forward + backward of ``fn`` and of the float64 reference; returns the relative errors.
    ``heads``: None, (b, seq, d) inputs; h > 0, (b, h, seq, d) contiguous; h < 0, |h| heads in
    the model's layout, (b, seq, |h|, d) seen through a transpose (the kernels read it in
    place, and the flash output's transpose back is contiguous)."""
    g = torch.Generator().manual_seed(seed)
    lead = (b,) if heads is None else (b, abs(heads))
    if heads is not None and heads < 0:
        leaves = [torch.randn(b, n, -heads, d, generator=g).to(dtype).to(device).requires_grad_()
                  for n in (sq, sk, sk)]
        q, k, v = (x.transpose(1, 2) for x in leaves)
    else:
        q, k, v = leaves = [torch.randn(*lead, n, d, generator=g).to(dtype).to(device)
                            .requires_grad_() for n in (sq, sk, sk)]
    do = torch.randn(*lead, sq, d, generator=g).to(dtype).to(device)
    out = fn(q, k, v, causal)
    assert out.shape == q.shape and out.dtype == dtype and out.device == q.device
    if heads is not None and heads < 0 and fn.__module__.endswith("flash_triton"):
        assert out.transpose(1, 2).is_contiguous()
    saved = out.grad_fn.saved_tensors if heads is None else None
    lse = saved_logsumexp(out).detach().clone() if saved is not None else None
    out.backward(do)
    grads = [x.grad.transpose(1, 2) if heads is not None and heads < 0 else x.grad for x in leaves]
    q64, k64, v64 = (x.detach().double().cpu().requires_grad_() for x in (q, k, v))
    ref, ref_lse = reference(q64, k64, v64, causal)
    ref.backward(do.double().cpu())
    errs = {"out": rel(out, ref)}
    if lse is not None:
        errs["lse"] = rel(lse, ref_lse)
    for name, got, want in (("dq", grads[0], q64.grad), ("dk", grads[1], k64.grad),
                            ("dv", grads[2], v64.grad)):
        if want.norm() > 0:
            errs[name] = rel(got, want)
        else:  # one key: the softmax is constant, dq = dk = 0 exactly; scale by |dv|
            errs[name] = (got.detach().double().norm() / v64.grad.norm()).item()
    return errs


def assert_close(errs, tol, what):
    bad = {n: e for n, e in errs.items() if not e < tol}  # NaN fails too
    assert not bad, f"{what}: errors {errs} over tolerance {tol}"


# ---------------------------------------------------------------------------------------------
# tiled PyTorch version, on the CPU

TORCH_SHAPES = [  # (batch, seq_q, seq_k, causal)
    (2, 1, 1, True), (2, 17, 17, True), (1, 100, 100, True), (1, 257, 257, True),
    (2, 100, 37, False), (1, 37, 257, False), (1, 1, 70, False), (2, 257, 257, False),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("d", [16, 32, 64, 80, 128])
@pytest.mark.parametrize("b,sq,sk,causal", TORCH_SHAPES, ids=[f"b{b}-q{q}-k{k}-{'causal' if c else 'full'}"
                                                            for b, q, k, c in TORCH_SHAPES])
def test_flash_torch_matches_reference(b, sq, sk, causal, d, dtype):
    seed = new_seed()
    errs = run_case(FlashAttentionTorch.apply, b, sq, sk, d, causal, dtype, "cpu", seed)
    assert_close(errs, TOL[("torch", dtype)], f"flash_torch b{b} sq{sq} sk{sk} d{d} {dtype} seed {seed}")


@pytest.mark.parametrize("block_q,block_k", [(16, 32), (32, 16), (128, 128)])
def test_flash_torch_tile_sizes(block_q, block_k):
    seed = new_seed()

    def fn(q, k, v, causal):
        return FlashAttentionTorch.apply(q, k, v, causal, block_q, block_k)

    for causal, sk in ((True, 150), (False, 61)):
        errs = run_case(fn, 2, 150, sk, 32, causal, torch.float32, "cpu", seed)
        assert_close(errs, 1e-5, f"tiles {block_q}x{block_k} causal={causal} seed {seed}")


def test_flash_torch_saves_q_k_v_o_lse():
    seed = new_seed()
    g = torch.Generator().manual_seed(seed)
    q, k, v = (torch.randn(3, n, 32, generator=g).requires_grad_() for n in (45, 70, 70))
    out = FlashAttentionTorch.apply(q, k, v, False)
    saved = out.grad_fn.saved_tensors
    assert len(saved) == 5
    for got, want in zip(saved[:4], (q, k, v, out)):
        assert got.shape == want.shape and torch.equal(got, want)
    assert saved[4].shape == (3, 45) and saved[4].dtype == torch.float32
    _, ref_lse = reference(q, k, v, False)
    assert rel(saved[4], ref_lse) < 1e-6


def test_flash_torch_4d_wrapper():
    seed = new_seed()
    for causal, sk in ((True, 77), (False, 40)):
        errs = run_case(flash_torch_attention, 2, 77, sk, 64, causal, torch.float32, "cpu", seed, heads=3)
        assert_close(errs, 1e-5, f"4D causal={causal} seed {seed}")


@pytest.mark.parametrize("d", [4, 12, 100, 264])
def test_bad_head_dim_raises(d):
    q = torch.randn(1, 4, d)
    with pytest.raises(ValueError, match="head dimension"):
        flash_torch_attention(q, q, q)
    from perfmodel.flash_triton import flash_attention  # the check comes before any kernel

    with pytest.raises(ValueError, match="head dimension"):
        flash_attention(q, q, q)


# ---------------------------------------------------------------------------------------------
# Triton kernels through the interpreter, on the CPU, in a subprocess

_INTERPRETER_SCRIPT = textwrap.dedent("""
    import json, sys
    import torch
    import tests.test_flash as t  # run from the repository root (cwd), as python3 -m tools.NAME
    from perfmodel import flash_triton as ft
    assert ft.is_available("cpu")[0], ft.is_available("cpu")
    results = []
    for cases, cfg in json.loads(sys.argv[1]):
        # a list: INTERPRET_CONFIG for every kernel; a dict: one config per kernel name
        ft.INTERPRET_CONFIG = tuple(cfg) if isinstance(cfg, list) else (32, 32, 4, 1)
        forced = {{n: tuple(c) for n, c in cfg.items()}} if isinstance(cfg, dict) else {{}}
        with ft.forced(forced, variant=sys.argv[2]):
            for case in cases:
                b, sq, sk, d, causal, dtype, heads = case
                fn = ft.flash_attention if heads else ft.FlashAttentionTriton.apply
                seed = t.new_seed()
                errs = t.run_case(fn, b, sq, sk, d, causal, getattr(torch, dtype), "cpu", seed, heads=heads)
                results.append(dict(case=case, config=cfg, seed=seed, errs=errs))
    print("RESULTS" + json.dumps(results))
""")

# tile configs run through the interpreter (BLOCK_M, BLOCK_N, warps, stages): square and both
# rectangles (the causal stage bounds differ when BLOCK_M != BLOCK_N), and one mix of
# different tiles per kernel (the forward's tiles need not match the backward's)
INTERPRETER_CONFIGS = [(32, 32, 4, 1), (32, 16, 4, 1), (16, 32, 4, 1),
                       {"fwd": (16, 32, 4, 1), "dkdv": (32, 16, 4, 1), "dq": (16, 16, 4, 1),
                        "dkdv_atomic": (16, 32, 4, 1), "bwd_fused": (32, 16, 4, 1)}]
# small: with 32-row tiles, 70 rows are 3 tiles with a ragged last one.
# bf16 is left to the GPU: the interpreter (triton 3.9) multiplies bf16 blocks as raw uint16.
INTERPRETER_CASES = [  # (batch, seq_q, seq_k, d, causal, dtype, heads: run_case)
    (2, 1, 1, 16, True, "float32", None),
    (2, 17, 17, 32, True, "float32", None),
    (1, 70, 70, 64, True, "float32", None),
    (2, 70, 45, 16, False, "float32", None),
    (1, 33, 100, 16, False, "float32", None),
    (1, 100, 33, 16, True, "float32", None),
    (1, 64, 64, 128, True, "float32", None),
    (1, 70, 70, 32, True, "float16", None),
    (1, 45, 70, 128, False, "float16", None),
    (1, 40, 40, 16, True, "float32", 2),
    (2, 40, 40, 16, True, "float32", -3),  # the model's layout: heads a transposed view
    (1, 33, 50, 32, False, "float16", -2),
]
# head dims that are not powers of two are padded to one inside the kernels (masked loads and
# stores): 8 (BLOCK_D 16), 24, 80 (the 2.7B preset), 136 (BLOCK_D 256, mostly padding) and 256,
# each causal and not, every length ragged for 16- and 32-row tiles; each runs with two of the
# configs above to keep the interpreter's time down (~25 s for the three variants on 2 cores)
HEAD_DIM_CASES = [
    (1, 45, 45, 8, True, "float32", None),
    (1, 29, 45, 8, False, "float32", None),
    (1, 70, 33, 24, False, "float32", None),
    (1, 29, 29, 24, True, "float16", None),
    (1, 50, 50, 80, True, "float32", None),
    (1, 33, 50, 80, False, "float16", None),
    (1, 40, 40, 136, True, "float32", None),
    (1, 24, 40, 136, False, "float32", None),
    (1, 37, 37, 256, True, "float32", None),
    (1, 20, 45, 256, False, "float16", None),
]


# The interpreter is the CPU's way to run the kernels (CI); where a GPU is present the kernels
# run for real in test_triton_cuda_*, and the GPU image's older Triton interpreter fails on
# 0-d values that Triton 3.9's handles.  One subprocess per backward variant.
@pytest.mark.skipif(torch.cuda.is_available(), reason="GPU present: the compiled kernels are tested")
@pytest.mark.parametrize("variant", ["split", "atomic", "fused", "split_tma", "atomic_tma"])
def test_triton_interpreter_matches_reference(variant):
    # split_tma: the descriptor kernels, forward ("tma") and backward, read the float16 cases;
    # the float32 ones take the pointer forward and, at d <= 128, the descriptor backward on TF32
    # parts split beforehand (test_float32_descriptor_backward_reads_tf32_parts_split_beforehand).
    # atomic_tma: the float16 cases add dQ through a descriptor (the interpreter is taught the
    # copy engine's add: flash_triton._interpreter_descriptor_add); float32 takes "atomic"
    env = dict(os.environ, TRITON_INTERPRET="1",
               PERFMODEL_FLASH_FWD="tma" if variant.endswith("_tma") else "pointer")
    script = _INTERPRETER_SCRIPT.format()
    groups = ([(INTERPRETER_CASES, cfg) for cfg in INTERPRETER_CONFIGS]
              + [(HEAD_DIM_CASES, cfg) for cfg in INTERPRETER_CONFIGS[1::2]])
    proc = subprocess.run([sys.executable, "-c", script, json.dumps(groups), variant], env=env,
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [x for x in proc.stdout.splitlines() if x.startswith("RESULTS")][-1]
    results = json.loads(line[len("RESULTS"):])
    assert len(results) == sum(len(cases) for cases, _ in groups)
    # every padded head dim ran causal and not (out, logsumexp, dq, dk, dv against float64)
    assert {(r["case"][3], r["case"][4]) for r in results} >= {(d, c) for d in (8, 24, 80, 136, 256)
                                                               for c in (True, False)}
    assert all(set(r["errs"]) == {"out", "lse", "dq", "dk", "dv"} for r in results if not r["case"][6])
    failures = []
    for r in results:
        tol = TOL[("triton", getattr(torch, r["case"][5]))]
        if not all(e < tol for e in r["errs"].values()):
            failures.append(r)
    assert not failures, f"{variant}: over tolerance: {failures}"


def test_interpreter_refuses_bfloat16():
    """Triton's interpreter multiplies bfloat16 tiles as raw bits (a 16x16 tl.dot off by ~1e10:
    the control below; when it passes, Triton has fixed it and the refusal can go), so flash
    refuses bfloat16 there with one line, before any kernel runs, and flash_check's CPU driver
    refuses it as a usage error (its CPU default is float32,float16)."""
    script = textwrap.dedent("""
        import torch, triton, triton.language as tl
        from perfmodel import flash_triton as ft

        @triton.jit
        def dot(A, B, C, N: tl.constexpr):
            r = tl.arange(0, N)
            idx = r[:, None] * N + r[None, :]
            tl.store(C + idx, tl.dot(tl.load(A + idx), tl.load(B + idx)))

        g = torch.Generator().manual_seed(0)
        a, b = (torch.randn(16, 16, generator=g).to(torch.bfloat16) for _ in range(2))
        c = torch.empty(16, 16)
        dot[(1,)](a, b, c, 16)
        print("DOT", (c - a.float() @ b.float()).abs().max().item())
        q = torch.randn(1, 2, 40, 16, dtype=torch.bfloat16, requires_grad=True)
        try:
            ft.flash_attention(q, q, q)
        except ValueError as e:
            print("REFUSED", e)
    """)
    env = dict(os.environ, TRITON_INTERPRET="1")
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                          timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = dict(line.split(" ", 1) for line in proc.stdout.splitlines() if line[:3] in ("DOT", "REF"))
    assert float(out["DOT"]) > 1e3, "the interpreter's bfloat16 tl.dot is right now: lift the refusal"
    from perfmodel.flash_triton import INTERPRETER_BF16

    assert out["REFUSED"] == INTERPRETER_BF16 and "float16" in INTERPRETER_BF16
    for argv, says in ((["--device", "cpu", "--dtypes", "bfloat16"], "bfloat16"),
                       (["--dtypes", "bf16"], "valid choices: float32, bfloat16, float16"),
                       (["--kernels", "dkdv,nope"], "valid choices: fwd, dkdv"),
                       (["--ds", "64,12"], "multiples of 8"), (["--device", "tpu"], "cuda, cpu")):
        proc = subprocess.run([sys.executable, "-m", "perfmodel.flash_check", *argv, "--budget", "0"],
                              capture_output=True, text=True, timeout=120, cwd=ROOT)
        assert proc.returncode == 2 and says in proc.stderr.splitlines()[-1], (argv, proc.stderr[-500:])
        assert "Traceback" not in proc.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="GPU present: the compiled kernels are tested")
def test_the_benchs_reference_check_runs_through_the_interpreter():
    """tools/bench_flash.py checks its chosen configs against float64 before it times them (the
    issue table's last criterion): the same check, on small shapes of batch 2, through Triton's
    interpreter, reads every quantity within tolerance."""
    script = textwrap.dedent("""
        import json, torch
        from perfmodel import flash_triton as ft
        from tools import bench_flash as bf
        ft.INTERPRET_CONFIG = (32, 32, 4, 1)
        bf.CHECK_SHAPES = [(2, 40, 40, True), (1, 24, 45, False)]
        worst = bf.check_against_reference({}, "split", 16, torch.float32,
                                           torch.Generator().manual_seed(0), torch.device("cpu"))
        print("WORST" + json.dumps(worst))
    """)
    env = dict(os.environ, TRITON_INTERPRET="1")
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                          timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    worst = json.loads([x for x in proc.stdout.splitlines() if x.startswith("WORST")][-1][5:])
    assert set(worst) == {"out", "lse", "dq", "dk", "dv"}
    assert max(worst.values()) < TOL[("triton", torch.float32)], worst


def test_which_layouts_the_kernels_read_in_place():
    """The kernels read a tensor in place when it covers its storage without gaps and d is
    contiguous (gradients then get its strides from empty_like); anything else is copied once."""
    from perfmodel.flash_triton import _dense, _operand

    b, s, h, d = 2, 8, 3, 4
    heads = torch.randn(b, s, h, d).transpose(1, 2)           # the model's q, k, v
    assert _dense(torch.randn(b, h, s, d)) and _dense(heads)
    assert torch.empty_like(heads).stride() == heads.stride()
    assert _operand(heads) is heads
    qkv = torch.randn(b, s, 3 * h * d)[..., : h * d]           # one of three fused projections
    gappy = qkv.view(b, s, h, d).transpose(1, 2)
    assert not _dense(gappy) and _operand(gappy).is_contiguous()
    assert torch.equal(_operand(gappy), gappy)
    assert not _dense(torch.randn(b, h, d, s).transpose(2, 3))  # d not contiguous
    assert _dense(torch.randn(b, 1, s, d)) and _dense(torch.randn(1, h, 1, d).transpose(1, 2))


def test_tuning_spaces_default_to_the_ones_checked_on_the_h200(monkeypatch):
    """The candidate spaces passed the H200's per-config check (bf16 and tf32x3), so the
    autotuner takes them by default; PERFMODEL_FLASH_CANDIDATES=0 keeps bf16 to the v2 spaces;
    "ieee" float32, never checked there, keeps to its v2 space unless the variable is 1."""
    from perfmodel import flash_triton as ft

    def fitting(name, configs, dtype, d):
        return [c for c in configs if ft.fits_smem(name, c, dtype, d)]

    def ieee(name, d):
        return fitting(name, [c for c in ft.TUNING_SPACE_IEEE if ft._ieee_fits(c, d)],
                       torch.float32, d)

    for setting in (None, "0", "1"):
        if setting is None:
            monkeypatch.delenv("PERFMODEL_FLASH_CANDIDATES", raising=False)
        else:
            monkeypatch.setenv("PERFMODEL_FLASH_CANDIDATES", setting)
        for name, space in ft.VERIFIED_SPACE.items():
            for d in (16, 64, 80, 128):
                want = space if setting == "0" else fitting(name, ft.TUNING_SPACE[name],
                                                            torch.bfloat16, d)
                assert ft.tuning_configs(name, torch.bfloat16, d) == want, (setting, name, d)
            assert set(space) <= set(ft.TUNING_SPACE[name])  # the candidates extend them
            monkeypatch.setattr(ft, "FP32_PRECISION", "ieee")
            for d in (16, 64, 128):
                want = ieee(name, d) if setting == "1" else ft.VERIFIED_SPACE_FP32
                assert ft.tuning_configs(name, torch.float32, d) == want, (setting, name, d)
            monkeypatch.setattr(ft, "FP32_PRECISION", "tf32x3")
            assert ft.tuning_configs(name, torch.float32, 128) == fitting(
                name, ft.TUNING_SPACE_TF32X3[128][name], torch.float32, 128)
            assert ft.tuning_configs(name, torch.bfloat16, 256) == fitting(
                name, ft.TUNING_SPACE_D256[name], torch.bfloat16, 256)
    assert set(ft.VERIFIED_SPACE_FP32) <= set(ft.TUNING_SPACE_IEEE)
    for name in set(ft.KERNELS) - set(ft.VERIFIED_SPACE):  # opt-in variants: their own space
        assert ft.tuning_configs(name, torch.bfloat16, 64) == ft.TUNING_SPACE[name]


def test_tuning_spaces(monkeypatch):
    """Config bookkeeping only (no kernel runs): dtype, d and precision pruning, FORCE_CONFIG."""
    from perfmodel import flash_triton as ft

    monkeypatch.setenv("PERFMODEL_FLASH_CANDIDATES", "1")
    assert set(ft.TUNING_SPACE) == set(ft.KERNELS) == set(ft.TUNING_SPACE_D256)
    assert [ft.block_d(d) for d in (8, 16, 24, 64, 80, 128, 136, 256)] == [16, 16, 32, 64, 128, 128, 256, 256]
    for name in ft.KERNELS:
        for dtype in (torch.bfloat16, torch.float16):
            for d in (8, 64, 80, 128):  # d <= 64: every candidate fits
                want = [c for c in ft.TUNING_SPACE[name] if ft.fits_smem(name, c, dtype, d)]
                assert ft.tuning_configs(name, dtype, d) == want
                assert d > 64 or want == ft.TUNING_SPACE[name]
            for d in (136, 200, 256):
                want = [c for c in ft.TUNING_SPACE_D256[name] if ft.fits_smem(name, c, dtype, d)]
                assert ft.tuning_configs(name, dtype, d) == want
        # tf32x3 (default): per BLOCK_D; the atomic / fused kernels use the dK/dV tiles
        for d, bd in ((8, 64), (64, 64), (72, 128), (128, 128), (136, 256), (256, 256)):
            want = ft.TUNING_SPACE_TF32X3[bd].get(name, ft.TUNING_SPACE_TF32X3[bd]["dkdv"])
            want = [c for c in want if ft.fits_smem(name, c, torch.float32, d)]
            assert ft.tuning_configs(name, torch.float32, d) == want
        monkeypatch.setattr(ft, "FP32_PRECISION", "ieee")
        assert ft.tuning_configs(name, torch.float32, 32) == ft.TUNING_SPACE_IEEE
        d64 = ft.tuning_configs(name, torch.float32, 64)
        assert (64, 64, 8, 2) in d64 and (64, 64, 4, 2) not in d64
        small = ft.tuning_configs(name, torch.float32, 128)
        assert small and all(bm * bn <= 32 * 64 for bm, bn, _, _ in small)
        assert ft.tuning_configs(name, torch.float32, 256)
        monkeypatch.setattr(ft, "FP32_PRECISION", "tf32")  # plain TF32 is refused
        with pytest.raises(ValueError, match="precision"):
            ft.tuning_configs(name, torch.float32, 64)
        monkeypatch.setattr(ft, "FP32_PRECISION", "tf32x3")
        everything = set(ft.TUNING_SPACE[name] + ft.TUNING_SPACE_D256[name] + ft.TUNING_SPACE_IEEE)
        for by_kernel in ft.TUNING_SPACE_TF32X3.values():
            everything |= set(by_kernel.get(name, by_kernel["dkdv"]))
        for bm, bn, w, s in everything:
            assert bm in (16, 32, 64, 128) and bn in (16, 32, 64, 128) and w in (4, 8) and s >= 1
        if ft.triton is not None:
            got = {(c.kwargs["BLOCK_M"], c.kwargs["BLOCK_N"], c.num_warps, c.num_stages)
                   for c in ft._triton_configs(name)}
            assert got == everything
    assert {(32, 128, w, s) for w in (4, 8) for s in (2, 3)} <= set(ft.TUNING_SPACE["dkdv"])
    assert {(128, 32, 4, 3), (64, 32, 4, 3)} <= set(ft.TUNING_SPACE["dq"])
    assert {(128, 128, 8, 3), (128, 128, 8, 4)} <= set(ft.TUNING_SPACE["fwd"])
    with pytest.raises(ValueError, match="unknown kernel"):
        ft.tuning_configs("nope", torch.float32)
    if ft.triton is not None:  # the autotuner's pruning: by Q's dtype and HEAD_DIM (or Q's d)
        prune = ft._pruner("dkdv")
        for dtype, d in ((torch.bfloat16, 64), (torch.bfloat16, 256), (torch.float32, 64),
                         (torch.float32, 80), (torch.float32, 128)):
            q = torch.empty(1, 1, d, dtype=dtype)
            for kwargs in ({"HEAD_DIM": d}, {}):
                kept = prune(ft._triton_configs("dkdv"), {"Q": q}, **kwargs)
                got = {(c.kwargs["BLOCK_M"], c.kwargs["BLOCK_N"], c.num_warps, c.num_stages) for c in kept}
                assert got == set(ft.tuning_configs("dkdv", dtype, d))
    before = (dict(ft.FORCE_CONFIG), ft.BWD_VARIANT)
    with ft.forced({"dq": (16, 16, 4, 1)}, variant="fused"):
        assert ft.FORCE_CONFIG["dq"] == (16, 16, 4, 1) and ft.BWD_VARIANT == "fused"
    assert (dict(ft.FORCE_CONFIG), ft.BWD_VARIANT) == before


# What the H200 refused or faulted on (issue 17; Triton 3.6, forced one config at a time, b2 x
# s1024 causal): (kernel, dtype, d, config, what happened)
KNOWN_BAD = [
    ("dkdv", torch.float32, 128, (16, 64, 8, 1), "illegal memory access (tf32x3)"),
    ("dkdv", torch.float32, 128, (16, 64, 8, 2), "illegal memory access (tf32x3)"),
    ("dq", torch.float32, 128, (64, 16, 8, 2), "illegal memory access (tf32x3)"),
    ("fwd", torch.bfloat16, 80, (128, 128, 8, 4), "out of shared memory: 294912 > 232448 bytes"),
]
# every head-dim class a space distinguishes lies in 8..256 (BLOCK_D 16..256, the ieee limits)
ALL_HEAD_DIMS = range(8, 257, 8)


def _every_space(ft):
    """(kernel, dtype, precision, d, configs) for every tuning space the autotuner can be given:
    every kernel, bf16 / fp16 / float32 (tf32x3 and ieee), every head dim, candidates or not."""
    for candidates in ("0", "1"):
        os.environ["PERFMODEL_FLASH_CANDIDATES"] = candidates
        for precision in ft.FP32_PRECISIONS:
            ft.FP32_PRECISION = precision
            for dtype in (torch.bfloat16, torch.float16, torch.float32):
                if dtype != torch.float32 and precision != "tf32x3":
                    continue  # the precision only matters for float32
                for d in ALL_HEAD_DIMS:
                    for name in ft.KERNELS:
                        yield name, dtype, precision, d, ft.tuning_configs(name, dtype, d)


def test_tuning_spaces_hold_no_config_that_faults_or_overflows(monkeypatch):
    """No space, for any dtype, precision or head dim, holds a config that faulted on the H200,
    one of the faulting class (a 16-wide tile with 8 warps under tf32x3), or one whose shared
    memory is over the H200's limit less the margin; and none is empty."""
    from perfmodel import flash_triton as ft

    monkeypatch.setattr(ft, "FP32_PRECISION", ft.FP32_PRECISION)
    monkeypatch.setenv("PERFMODEL_FLASH_CANDIDATES", "1")
    cap = ft.SMEM_LIMIT - ft.SMEM_MARGIN
    assert ft.SMEM_LIMIT == 232448 and 0 < ft.SMEM_MARGIN <= 8192
    seen = 0
    for name, dtype, precision, d, configs in _every_space(ft):
        what = f"{name} {dtype} {precision} d={d}"
        assert configs, f"{what}: empty space"
        for cfg in configs:
            seen += 1
            assert ft.smem_bytes(name, cfg, dtype, d) <= cap, f"{what} {cfg}: over the shared memory"
            if dtype == torch.float32 and precision == "tf32x3":
                assert not (cfg[2] == 8 and 16 in cfg[:2]), f"{what} {cfg}: 16-wide tile, 8 warps, tf32x3"
            for bad_name, bad_dtype, bad_d, bad_cfg, why in KNOWN_BAD:
                same_class = ft.block_d(d) == ft.block_d(bad_d) and dtype == bad_dtype
                assert not (name == bad_name and same_class and cfg == bad_cfg), f"{what} {cfg}: {why}"
    assert seen > 1000
    # the filter is live: the overflowing forward tile is a candidate at d <= 64, where it fits
    assert (128, 128, 8, 4) in ft.tuning_configs("fwd", torch.bfloat16, 64)
    assert (128, 128, 8, 4) in ft.TUNING_SPACE["fwd"]


def test_float32_explore_candidates_avoid_the_faulting_class_and_fit():
    """The candidates beyond the tf32x3 spaces (timed by tools/bench_flash.py --explore-fp32 in
    one process for every config of a kernel, so a fault would end that run): no 16-wide tile
    with 8 warps, nothing of KNOWN_BAD, each a real candidate (not already in its space);
    explore_configs keeps exactly those that fit shared memory (all of them for the offline
    compile), and the per-config check takes them with explore=True, each in its own case."""
    from perfmodel import flash_check
    from perfmodel import flash_triton as ft

    assert ft.dot_precision(torch.float32) == "tf32x3"
    kept = 0
    for bd, by_kernel in ft.EXPLORE_FP32.items():
        for name, cfgs in by_kernel.items():
            for d in (bd // 2 + 8, bd):  # both ends of the BLOCK_D class
                space = ft.tuning_configs(name, torch.float32, d)
                fit = ft.explore_configs(name, torch.float32, d)
                assert ft.explore_configs(name, torch.float32, d, fitting=False) == cfgs
                assert fit == [c for c in cfgs if ft.fits_smem(name, c, torch.float32, d)]
                kept += len(fit)
                for cfg in cfgs:
                    assert not (cfg[2] == 8 and 16 in cfg[:2]), (name, bd, cfg)
                    assert cfg not in space, (name, d, cfg, "already in the space")
                    assert all(not (n == name and ft.block_d(bad_d) == bd and c == cfg)
                               for n, _, bad_d, c, _ in KNOWN_BAD), (name, bd, cfg)
    assert kept > 10
    assert ft.explore_configs("dkdv", torch.bfloat16, 128) and not ft.explore_configs("fwd", torch.float32, 256)
    # the GPU's precompile takes the candidates a launch can take; the offline compile all of them
    from tools import bench_flash as bf
    cells = [(d, dt, True) for d in (64, 128) for dt in (torch.float32, torch.bfloat16)]
    gpu = bf.kernel_tasks(cells, ft.KERNELS, explore=True)
    offline = bf.kernel_tasks(cells, ft.KERNELS, explore=True, fitting=False)
    dropped = [t for t in offline if t not in gpu]
    assert dropped and set(gpu) < set(offline)
    for name, dt, d, _, cfg in offline:
        if cfg is not None:
            dtype = getattr(torch, dt)
            launched = ft.tuning_configs(name, dtype, d) + ft.explore_configs(name, dtype, d)
            assert ((name, dt, d, True, cfg) in gpu) == (cfg in launched)
    plain = flash_check.cases(dtypes=("float32",), head_dims=(128,), kernels=["dkdv_atomic"])
    more = flash_check.cases(dtypes=("float32",), head_dims=(128,), kernels=["dkdv_atomic"], explore=True)
    assert [c["cfg"] for c in more] == [c["cfg"] for c in plain] + [
        list(c) for c in ft.explore_configs("dkdv_atomic", torch.float32, 128)]
    assert all(c["variant"] == "atomic" for c in more) and len(more) > len(plain)


def test_smem_estimate_against_triton():
    """smem_bytes against the one figure the H200 reported (fwd bf16 d=80 128x128 w8 s4: 294912
    bytes), and against Triton 3.6's own figures from an offline sm_90 compile of every config of
    every space (tests/fixtures/flash_smem_sm90.json): never below; exact (within 1 KiB) on most,
    at most twice Triton's figure elsewhere (one stage, the atomic kernel and the ieee products,
    where Triton reuses buffers)."""
    from perfmodel import flash_triton as ft

    assert ft.smem_bytes("fwd", (128, 128, 8, 4), torch.bfloat16, 80) == 294912
    assert not ft.fits_smem("fwd", (128, 128, 8, 4), torch.bfloat16, 80)
    with open(os.path.join(ROOT, "tests", "fixtures", "flash_smem_sm90.json")) as f:
        fixture = json.load(f)
    assert fixture["triton"].startswith("3.6") and len(fixture["rows"]) > 150
    old = ft.FP32_PRECISION
    exact = 0
    try:
        for kernel, dt, d, cfg, shared in fixture["rows"]:
            ft.FP32_PRECISION = "ieee" if dt.endswith("-ieee") else "tf32x3"
            est = ft.smem_bytes(kernel, tuple(cfg), getattr(torch, dt.split("-")[0]), d)
            what = f"{kernel} {dt} d={d} {cfg}: estimate {est}, Triton {shared}"
            assert shared <= est <= 2 * shared, what
            exact += est - shared < 1024
            # a config Triton would refuse is never in a space
            if shared > ft.SMEM_LIMIT:
                assert tuple(cfg) not in ft.tuning_configs(kernel, getattr(torch, dt.split("-")[0]), d), what
    finally:
        ft.FP32_PRECISION = old
    assert exact > len(fixture["rows"]) // 2


def test_smem_estimate_of_descriptor_kernels():
    """The descriptor kernels' estimate (their twin's tiles, plus the copy engine's barriers and,
    for atomic_tma, its staged dQ and dS tiles) against Triton 3.6's figures from an offline
    sm_90 compile of each one's space and candidates at d 64, 128 and 256
    (tests/fixtures/flash_smem_sm90_twins.json): never below, so no config the estimate admits
    can ask for more than the H200's 227 KiB, and the fixture holds every config each space
    takes at those head dims today."""
    from perfmodel import flash_triton as ft

    with open(os.path.join(ROOT, "tests", "fixtures", "flash_smem_sm90_twins.json")) as f:
        fixture = json.load(f)
    assert fixture["triton"].startswith("3.6")
    seen, exact = set(), 0
    for kernel, dt, d, cfg, shared in fixture["rows"]:
        dtype = getattr(torch, dt)
        both = ft.launched_pre_split(kernel, dtype, d)
        est = ft.smem_bytes(kernel, tuple(cfg), dtype, d, both)
        what = f"{kernel} {dt} d={d} {cfg}: estimate {est}, Triton {shared}"
        assert kernel in ft.DESC_TWINS and ft.twin_launched(kernel, dtype, d), what
        assert shared <= est, what
        if ft.fits_smem(kernel, tuple(cfg), dtype, d, both):
            assert shared <= ft.SMEM_LIMIT, what
        exact += est - shared <= 1024
        seen.add((kernel, dt, d, tuple(cfg)))
    assert exact > len(fixture["rows"]) // 2
    dims = {(dt, d) for _, dt, d, _, _ in fixture["rows"]}
    missing = [(k, dt, d, c) for dt, d in sorted(dims) for k in ft.DESC_TWINS
               if ft.twin_launched(k, getattr(torch, dt), d)
               for c in ft.tuning_configs(k, getattr(torch, dt), d) + ft.explore_configs(k, getattr(torch, dt), d)
               if (k, dt, d, c) not in seen]
    assert not missing, f"configs with no offline compile (regenerate the fixture): {missing}"


def test_config_check_cases_cover_every_space(monkeypatch):
    """flash_check's cases: every config of every space, per dtype and head-dim class, each
    with the right backward variant and the other kernels at the first config of theirs."""
    from perfmodel import flash_check
    from perfmodel import flash_triton as ft

    monkeypatch.setenv("PERFMODEL_FLASH_CANDIDATES", "1")
    cases = flash_check.cases()
    assert {c["d"] for c in cases} == set(flash_check.HEAD_DIMS) >= {16, 32, 64, 80, 128, 256}
    assert {ft.block_d(d) for d in flash_check.HEAD_DIMS} == {16, 32, 64, 128, 256}
    for dt in ("float32", "bfloat16"):
        dtype = getattr(torch, dt)
        for d in flash_check.HEAD_DIMS:
            for name in ft.KERNELS:
                got = [tuple(c["cfg"]) for c in cases if (c["dtype"], c["d"], c["kernel"]) == (dt, d, name)]
                assert got == ft.tuning_configs(name, dtype, d)
    for c in cases:
        assert c["variant"] == {"dkdv_atomic": "atomic", "bwd_fused": "fused"}.get(c["kernel"], "split")
        dtype = getattr(torch, c["dtype"])
        assert c["base"] == {n: list(ft.tuning_configs(n, dtype, c["d"])[0]) for n in ft.KERNELS}
        assert (c["batch"], c["seq"], c["device"]) == (2, 1024, "cuda")
    assert cases[0]["dtype"] == "float32" and cases[0]["d"] == 256  # the tf32x3 ones first
    assert len(set(map(flash_check.case_id, cases))) == len(cases)
    # waves: one all-base child per (dtype, d) first (it compiles the base kernels once), then
    # the atomic and fused base cases, then the rest; every case exactly once
    first, second, rest = flash_check.waves(cases)
    groups = {(c["dtype"], c["d"]) for c in cases}
    assert sorted((cases[i]["dtype"], cases[i]["d"]) for i in first) == sorted(groups)
    assert all(cases[i]["kernel"] == "fwd" and cases[i]["cfg"] == cases[i]["base"]["fwd"] for i in first)
    assert sorted(cases[i]["kernel"] for i in second) == sorted(["dkdv_atomic", "bwd_fused"] * len(groups))
    assert sorted(first + second + rest) == list(range(len(cases)))


def _fake_child(code):
    return lambda case: [sys.executable, "-c", code]


def test_config_check_names_the_config_that_faults():
    """The driver on the CPU: one real child through Triton's interpreter (forward + backward,
    against float64), and fake children that fault, refuse shared memory, return wrong
    numbers or hang: each gets its own status, named in the table, and the others still run."""
    from perfmodel import flash_check

    real = [c for c in flash_check.cases(("float32",), (24,), ("dq",), seq=40, batch=2, device="cpu")
            if c["cfg"][0] * c["cfg"][1] <= 64 * 32][:1]
    assert real
    rows = flash_check.check_all(real, workers=1, timeout=240, log=None)
    assert rows[0]["status"] == "ok", rows[0]
    assert set(rows[0]["errs"]) == {"out", "lse", "dq", "dk", "dv"}
    assert max(rows[0]["errs"].values()) < 1e-4

    fakes = {
        "fault": "import sys; print('RuntimeError: CUDA error: an illegal memory access was encountered',"
                 " file=sys.stderr); sys.exit(1)",
        "smem": "raise SystemExit('triton.runtime.errors.OutOfResources: out of resource: shared memory')",
        "wrong": "print('RESULT {\"errs\": {\"out\": 0.5, \"lse\": 0.0, \"dq\": NaN}, \"ran_s\": 0, \"seconds\": 0}')",
        "error": "raise ValueError('something else')",
        "timeout": "import time; time.sleep(30)",
    }
    cases = [dict(real[0], cfg=[16, 16, 4, i]) for i in range(len(fakes))]
    rows = []
    for case, (want, code) in zip(cases, fakes.items()):
        row = flash_check.check(case, timeout=5, command=_fake_child(code))
        assert row["status"] == want, (want, row)
        rows.append(row)
    text = flash_check.table(rows)
    for row, want in zip(rows, fakes):
        assert f"16x16 w4 s{row['cfg'][3]} {want}" in text
    assert "ok 0" not in text and "fault 1" in text and f"(of {len(fakes)})" in text
    late = flash_check.check_all(cases[:1], deadline=0, log=None)  # past the deadline: not started
    assert late[0]["status"] == "not run"


def test_config_check_covers_the_descriptor_kernels():
    """With the descriptor (TMA) kernels asked for, flash_check makes 16-bit cases for all three,
    each run with the descriptor forward and its backward variant, and float32 cases for the
    backward's two (PRE_SPLIT) with the pointer forward; a child fails when the kernel its case
    names was not the one launched (the descriptor forward on float32 inputs, which take the
    pointer one). Real children through the interpreter."""
    from perfmodel import flash_check
    from perfmodel import flash_triton as ft

    twins = tuple(ft.DESC_TWINS)
    names = ("dq",) + twins
    cases = flash_check.cases(("float32", "float16"), (24,), names, seq=40, batch=2, device="cpu")
    assert {(c["dtype"], c["kernel"], c["variant"], c["fwd"]) for c in cases} == {
        ("float32", "dq", "split", "pointer"), ("float16", "dq", "split", "pointer"),
        ("float16", "fwd_tma", "split", "tma"), ("float16", "dkdv_tma", "split_tma", "tma"),
        ("float16", "dq_tma", "split_tma", "tma"), ("float32", "dkdv_tma", "split_tma", "pointer"),
        ("float32", "dq_tma", "split_tma", "pointer"),
        ("float16", "dkdv_atomic_tma", "atomic_tma", "tma")}
    for twin in twins:
        got = [tuple(c["cfg"]) for c in cases if c["kernel"] == twin and c["dtype"] == "float16"]
        assert got == ft.tuning_configs(twin, torch.float16, 24)
    assert sorted(i for w in flash_check.waves(cases) for i in w) == list(range(len(cases)))
    small = [c for c in cases if c["kernel"] in twins and c["cfg"][0] * c["cfg"][1] <= 64 * 64]
    pick = [next(c for c in small if c["kernel"] == k and c["dtype"] == "float16") for k in twins]
    pick.append(next(c for c in small if c["kernel"] == "dkdv_tma" and c["dtype"] == "float32"))
    rows = flash_check.check_all(pick, workers=2, timeout=240, log=None)
    assert [r["status"] for r in rows] == ["ok"] * len(pick), rows
    wrong = flash_check.check(dict(pick[0], dtype="float32"), timeout=240)
    assert wrong["status"] == "error" and "fwd_tma was not launched" in wrong["note"]


def test_float32_bound_rejects_tf32_and_tensor_core_sums():
    """The one float32 bound of every Triton check (perfmodel.flash_check.TOL): below what plain
    TF32 products (~1e-3) and a running sum in the tensor cores' accumulation (1.1e-5 at s1024,
    H100) erred, above tf32x3's worst on the GPU (1.3e-6)."""
    from tools import bench_flash

    assert TOL[("triton", torch.float32)] == FLASH_TOL["float32"] == 5e-6
    assert bench_flash.CHECK_TOL[torch.float32] == FLASH_TOL["float32"]


def test_tf32_split_is_exact_and_rounds_to_nearest():
    """tf32_split (the host's half of PRE_SPLIT; the kernels' _tf32_split does the same): x = hi +
    lo exactly, hi has TF32's 10 mantissa bits (its 13 low bits clear), |lo| at most half of
    hi's last unit, ties rounded away from zero as cvt.rna.tf32 does."""
    from perfmodel.flash_triton import tf32_split

    g = torch.Generator().manual_seed(new_seed())
    x = torch.randn(4096, generator=g) * torch.exp2(torch.randint(-60, 60, (4096,), generator=g).float())
    view = x.view(64, 64).t()  # a strided view: the parts come back contiguous (the kernels'
    hi, lo = tf32_split(view)  # descriptors need aligned strides; both parts share them)
    assert hi.is_contiguous() and lo.is_contiguous()
    assert torch.equal(hi.double() + lo.double(), view.double())
    assert not (hi.view(torch.int32) & 0x1FFF).any()
    unit = torch.exp2(torch.floor(torch.log2(hi.abs().double())) - 10)
    assert (lo.double().abs() <= unit / 2).all()
    ties = torch.tensor([1 + 2.0 ** -11, -(1 + 2.0 ** -11), 1 + 3 * 2.0 ** -11, 1 + 2.0 ** -12])
    assert tf32_split(ties)[0].tolist() == [1 + 2.0 ** -10, -(1 + 2.0 ** -10), 1 + 2 * 2.0 ** -10, 1.0]


# A child that runs flash's forward and backward through the interpreter on each case (b, sq,
# sk, d, causal, heads: None for (b, s, d) inputs, -h for the model's transposed heads), and
# prints the kernels each launched, as (name, PRE_SPLIT), and its errors against float64
_SPIED_SCRIPT = textwrap.dedent("""
    import json, sys, torch
    from perfmodel import flash_triton as ft
    from perfmodel.attention import reference_attention
    seen = []
    launch = ft.launch
    def spy(name, *a, **kw):
        seen[-1].append((name, bool(a[-1].get("PRE_SPLIT", False)) if len(a) >= 5 else None))
        return launch(name, *a, **kw)
    ft.launch = spy
    g = torch.Generator().manual_seed(int(sys.argv[1]))
    out = []
    for b, sq, sk, d, causal, heads in json.loads(sys.argv[2]):
        seen.append([])
        shape = (lambda n: (b, n, d)) if heads is None else (lambda n: (b, n, -heads, d))
        q = torch.randn(*shape(sq), generator=g)
        k, v = (torch.randn(*shape(sk), generator=g) for _ in range(2))
        if heads is not None:
            q, k, v = (x.transpose(1, 2) for x in (q, k, v))
        leaves = [x.clone().requires_grad_() for x in (q, k, v)]
        o = ft.FlashAttentionTriton.apply(*leaves, causal)
        do = torch.randn(o.shape, generator=g)
        o.backward(do)
        ref_leaves = [x.double().requires_grad_() for x in (q, k, v)]
        ref = reference_attention(*ref_leaves, causal)
        ref.backward(do.double())
        rel = lambda x, r: ((x.double() - r).norm() / r.norm()).item()
        errs = dict(out=rel(o, ref.detach()), **{n: rel(a.grad, r.grad) for n, a, r in
                    zip(("dq", "dk", "dv"), leaves, ref_leaves)})
        out.append(dict(d=d, errs=errs, launched=seen[-1]))
    print("RESULTS" + json.dumps(out))
""")


def _run_spied(cases, **env_vars):
    """_SPIED_SCRIPT on ``cases`` under the interpreter, with these environment variables (None
    removes one); returns (seed, results)."""
    env = dict(os.environ, TRITON_INTERPRET="1")
    for name, value in env_vars.items():
        env.pop(name, None)
        if value is not None:
            env[name] = value
    seed = new_seed()
    proc = subprocess.run([sys.executable, "-c", _SPIED_SCRIPT, str(seed), json.dumps(cases)], env=env,
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return seed, json.loads([x for x in proc.stdout.splitlines() if x.startswith("RESULTS")][-1][7:])


@pytest.mark.skipif(torch.cuda.is_available(), reason="GPU present: the compiled kernels are tested")
def test_float32_descriptor_backward_reads_tf32_parts_split_beforehand():
    """PERFMODEL_FLASH_BWD=split_tma on float32 (d <= 128): the descriptor dK/dV and dQ kernels
    run with PRE_SPLIT (q, k, v and dO as TF32 high parts and remainders, three products each)
    and match float64 (out, dq, dk, dv; causal and not; ragged; the model's transposed heads);
    at d=256, where no tile fits both parts, the pointer kernels run. Through the interpreter."""
    seed, results = _run_spied([(1, 45, 45, 64, True, None), (2, 33, 50, 80, False, None),
                                (1, 40, 40, 128, True, None), (2, 40, 40, 16, True, -3),
                                (1, 24, 24, 256, True, None)], PERFMODEL_FLASH_BWD="split_tma")
    for r in results:
        names = dict(r["launched"])
        if r["d"] <= 128:
            assert names.get("dkdv_tma") is True and names.get("dq_tma") is True, r
        else:
            assert "dkdv" in names and "dq" in names and "dkdv_tma" not in names, r
        assert all(e < TOL[("triton", torch.float32)] for e in r["errs"].values()), (seed, r)


# Shared memory of the float32 descriptor backward (PRE_SPLIT), bytes, as Triton 3.6 compiled each
# config for sm_90 offline (2026-12-07; the H200's limit is 232448): the space keeps only configs
# that fit, and drops those that did not
PRE_SPLIT_SMEM = {
    ("dkdv_tma", 128, (16, 64, 4, 2)): 196792, ("dkdv_tma", 128, (32, 64, 8, 1)): 262144,
    ("dkdv_tma", 128, (16, 64, 4, 1)): 196608, ("dkdv_tma", 128, (32, 64, 4, 1)): 262144,
    ("dkdv_tma", 128, (64, 64, 8, 1)): 393216,
    ("dq_tma", 128, (64, 16, 4, 2)): 196664, ("dq_tma", 128, (64, 32, 4, 1)): 229384,
    ("dq_tma", 128, (64, 32, 4, 2)): 262200,
    ("dkdv_tma", 64, (32, 128, 8, 2)): 196920, ("dkdv_tma", 64, (16, 64, 4, 2)): 98488,
    ("dkdv_tma", 64, (32, 64, 8, 2)): 135480,
    ("dq_tma", 64, (64, 32, 4, 2)): 131128, ("dq_tma", 64, (128, 32, 8, 2)): 196664,
    ("dq_tma", 64, (64, 16, 4, 2)): 98360,
}


def test_float32_descriptor_spaces_keep_only_what_fits():
    from perfmodel import flash_triton as ft

    for (name, d, cfg), used in PRE_SPLIT_SMEM.items():
        kept = cfg in ft.tuning_configs(name, torch.float32, d)
        if used > ft.SMEM_LIMIT:
            assert not kept, (name, d, cfg, used)
        if kept:
            assert used <= ft.SMEM_LIMIT
    assert ft.tuning_configs("dkdv_tma", torch.float32, 128) == [(16, 64, 4, 2)]
    assert ft.tuning_configs("dkdv_tma", torch.float32, 256) == []  # the pointer kernels there
    # bf16 keeps its kernel's space (the parts are float32's)
    assert ft.tuning_configs("dkdv_tma", torch.bfloat16, 128) == ft.tuning_configs("dkdv", torch.bfloat16, 128)
    # the backward splits beforehand exactly where both descriptor kernels have a config
    for d in range(8, 257, 8):
        spaces = [ft.tuning_configs(n, torch.float32, d) for n in ft.BWD_VARIANTS["split_tma"]]
        assert ft.pre_split(torch.float32, d) == all(spaces), d
        assert not ft.pre_split(torch.bfloat16, d)


def test_host_probe_tells_a_lasting_thread_state_from_a_fresh_one():
    """tools/bench_flash.py --host's probe of the engine's Python backward: on the CPU the engine
    runs it on the calling thread, whose thread-local state lasts (fresh once); made from a new
    thread each call, every call finds it fresh, which is what the probe is there to reveal on
    the GPU box."""
    import threading

    from tools.bench_flash import probe_line, thread_state_probe

    x, grad = torch.randn(3, requires_grad=True), torch.ones(3)
    same = thread_state_probe(x, grad, 5, lambda: None)
    assert (same["calls"], same["threads"], same["on_calling_thread"]) == (5, 1, True)
    assert (same["fresh_local"], same["fresh_context"]) == (1, 1)

    def new_thread(f):
        t = threading.Thread(target=f)
        t.start()
        t.join()

    fresh = thread_state_probe(x, grad, 4, lambda: None, run=new_thread)
    assert fresh["calls"] == 4 and not fresh["on_calling_thread"]
    assert fresh["fresh_local"] == fresh["fresh_context"] == 4
    assert "a fresh threading.local in 4" in probe_line(fresh)


def test_host_profile_splits_a_call_per_function():
    """--host's last table: the functions with the most own time per call of what it profiles,
    here a Python backward whose one helper does all the work."""
    from tools.bench_flash import host_profile

    def heavy_helper(n):  # the work in its own frame: its own time
        total = 0
        for i in range(n):
            total += i * i
        return total

    class Slow(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2

        @staticmethod
        def backward(ctx, g):
            heavy_helper(20000)
            return g * 2

    x = torch.randn(4, requires_grad=True)
    prof = host_profile(lambda: Slow.apply(x).sum().backward(), 5, lambda: None)
    assert prof["calls"] == 5
    helper = prof["top"][0]  # the most own time
    assert helper["function"].endswith(" heavy_helper") and helper["calls"] == 1.0
    assert helper["own_us"] > 0.5 * prof["total_us"]


def test_autotuner_trials_are_short():
    """Every autotuned kernel times its candidates with the short trial, not Triton's 125 ms."""
    from perfmodel import flash_triton as ft

    if ft.triton is None:
        pytest.skip("triton is not importable")
    for name, (_, tuned) in ft.KERNEL_FUNCS.items():
        assert tuned.do_bench is ft._trial, name
    assert ft.TRIAL_WARMUP_MS + ft.TRIAL_REP_MS < 25 + 100


def test_a_tuned_choice_is_launched_directly_after_the_first_call(monkeypatch):
    """The first launch of a tuning key goes through the autotuner; later ones of the same key
    launch the plain kernel with the autotuner's choice (grid from its tile); another key tunes
    again."""
    from perfmodel import flash_triton as ft

    if ft.triton is None:
        pytest.skip("triton is not importable")
    calls = []

    class Config:
        def all_kwargs(self):
            return {"BLOCK_M": 64, "BLOCK_N": 32, "num_warps": 4, "num_stages": 2}

    class Kernel:
        def __init__(self, kind):
            self.kind, self.best_config = kind, None

        def __getitem__(self, grid):
            def run(*args, **kw):
                g = grid(dict(Config().all_kwargs(), **kw)) if callable(grid) else grid
                calls.append((self.kind, g, kw.get("BLOCK_M")))
                if self.kind == "tuned":
                    self.best_config = Config()
            return run

    monkeypatch.setitem(ft.KERNEL_FUNCS, "fwd", (Kernel("plain"), Kernel("tuned")))
    monkeypatch.setattr(ft, "_CHOSEN", {})
    monkeypatch.setattr(ft, "_use_fixed_config", lambda: False)
    monkeypatch.setattr(ft, "FORCE_CONFIG", {})
    q = torch.zeros(2, 3)
    const = dict(HEAD_DIM=64, IS_CAUSAL=True, DOT_PREC="ieee")
    for seq in (1000, 1000, 1000, 2000):
        ft.launch("fwd", (q, seq, seq), seq, "BLOCK_M", 6, const)
    assert calls == [("tuned", (16, 6), None), ("plain", (16, 6), 64), ("plain", (16, 6), 64),
                     ("tuned", (32, 6), None)]


def test_descriptor_kernels_only_where_they_can_read():
    """The descriptor (TMA) kernels take 16-bit inputs whose starts and batch, head and row
    strides are 16-byte aligned; anything else goes to the pointer kernels (float32 among them:
    its tf32x3 products spill more from descriptor tiles)."""
    from perfmodel import flash_triton as ft

    def name(x):
        with ft.forced(fwd="tma"):
            return ft._fwd_name(x, x, x)

    half = torch.zeros(2, 3, 40, 32, dtype=torch.float16)
    assert name(half) == "fwd_tma"
    assert name(torch.zeros(2, 3, 40, 32)) == "fwd"  # float32
    assert name(torch.zeros(1 + 2 * 40 * 32, dtype=torch.float16)[1:].view(1, 2, 40, 32)) == "fwd"  # 2-byte offset
    # heads as a transposed view (the model's layout): head stride 64 and row stride 192
    # elements are 128 and 384 bytes; with heads 36 elements apart (72 bytes) they are not
    assert name(torch.zeros(1, 40, 3, 64, dtype=torch.float16)[..., :32].transpose(1, 2)) == "fwd_tma"
    assert name(torch.zeros(1, 40, 3, 36, dtype=torch.float16)[..., :32].transpose(1, 2)) == "fwd"
    with ft.forced(fwd="pointer"):
        assert ft._fwd_name(half, half, half) == "fwd"
    with ft.forced(fwd="nope"), pytest.raises(ValueError, match="pointer"):
        ft._fwd_name(half, half, half)
    # the descriptor twins tune over their kernel's space, cut by their own shared memory: the
    # same configs at d128 but for the atomic twin, which stages dQ and dS yet loads K once, so
    # a 64x128 tile its pointer kernel cannot fit joins it
    for twin, base in ft.DESC_TWINS.items():
        mine, theirs = (ft.tuning_configs(n, torch.bfloat16, 128) for n in (twin, base))
        extra = [c for c in mine if c not in theirs]
        assert set(theirs) <= set(mine) and set(extra) <= set(ft.TUNING_SPACE[base]), twin
        assert extra == ([(64, 128, 8, 3)] if twin == "dkdv_atomic_tma" else []), (twin, extra)


def test_unknown_backward_variant_raises():
    from perfmodel import flash_triton as ft

    with ft.forced(variant="nope"), pytest.raises(ValueError, match="backward variant.*'auto'"):
        ft.bwd_variant(torch.float32, 64)


def test_default_backward_variant_per_dtype_and_head_dim(monkeypatch):
    """"auto" (the default) takes the atomic backward for tf32x3 float32 above d=64 (BLOCK_D
    128 and 256) and the split one elsewhere; a named variant wins everywhere."""
    from perfmodel import flash_triton as ft

    with ft.forced(variant="auto"):
        assert [ft.bwd_variant(torch.float32, d) for d in (8, 64, 72, 80, 128, 136, 256)] == (
            ["split"] * 2 + ["atomic"] * 5)
        assert {ft.bwd_variant(dt, d) for dt in (torch.bfloat16, torch.float16)
                for d in (16, 64, 80, 128, 256)} == {"split"}
        monkeypatch.setattr(ft, "FP32_PRECISION", "ieee")
        assert ft.bwd_variant(torch.float32, 128) == "split"
    with ft.forced(variant="fused"):
        assert ft.bwd_variant(torch.float32, 128) == ft.bwd_variant(torch.bfloat16, 64) == "fused"


@pytest.mark.skipif(torch.cuda.is_available(), reason="GPU present: the compiled kernels are tested")
def test_default_backward_launches_the_variant_of_its_inputs():
    """Without PERFMODEL_FLASH_BWD, a float32 call at d=80 runs the atomic dK/dV kernel, at
    d=64 the split pair, each matching float64 (causal, ragged). Through the interpreter."""
    seed, results = _run_spied([(1, 37, 37, 80, True, None), (1, 37, 37, 64, True, None)],
                               PERFMODEL_FLASH_BWD=None)
    assert [[n for n, _ in r["launched"][1:]] for r in results] == [["dkdv_atomic"], ["dkdv", "dq"]], results
    for r in results:
        assert all(e < TOL[("triton", torch.float32)] for e in r["errs"].values()), (seed, r)


def test_triton_not_available_on_plain_cpu():
    from perfmodel.flash_triton import is_available

    if os.environ.get("TRITON_INTERPRET") == "1":
        pytest.skip("interpreter mode makes the CPU available")
    ok, why = is_available("cpu")
    assert not ok and why


# ---------------------------------------------------------------------------------------------
# Triton kernels on CUDA

GPU_SHAPES = [(2, 1, 1, True), (2, 257, 257, True), (1, 100, 100, True), (2, 200, 77, False),
              (1, 77, 300, False), (1, 1000, 1000, True)]


@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("d", [16, 32, 64, 128])
@pytest.mark.parametrize("b,sq,sk,causal", GPU_SHAPES)
def test_triton_cuda_matches_reference(b, sq, sk, causal, d, dtype):
    from perfmodel.flash_triton import FlashAttentionTriton

    seed = new_seed()
    errs = run_case(FlashAttentionTriton.apply, b, sq, sk, d, causal, dtype, "cuda", seed)
    assert_close(errs, TOL[("triton", dtype)], f"triton b{b} sq{sq} sk{sk} d{d} {dtype} seed {seed}")


@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")
def test_triton_cuda_4d_and_saved_tensors():
    from perfmodel.flash_triton import FlashAttentionTriton, flash_attention

    seed = new_seed()
    errs = run_case(flash_attention, 2, 300, 300, 64, True, torch.bfloat16, "cuda", seed, heads=4)
    assert_close(errs, 1e-2, f"4D seed {seed}")
    q, k, v = (torch.randn(2, n, 64, device="cuda", requires_grad=True) for n in (50, 90, 90))
    out = FlashAttentionTriton.apply(q, k, v, False)
    saved = out.grad_fn.saved_tensors
    assert len(saved) == 5 and saved[4].shape == (2, 1, 50) and saved[4].dtype == torch.float32
    for got, want in zip(saved[:4], (q, k, v, out)):  # (b, seq, d) inputs are one head
        assert torch.equal(got.squeeze(1), want)
    errs = run_case(flash_attention, 2, 300, 200, 64, False, torch.bfloat16, "cuda", seed, heads=-4)
    assert_close(errs, 1e-2, f"4D, the model's layout, seed {seed}")


@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")
def test_flash_torch_cuda():
    seed = new_seed()
    errs = run_case(flash_torch_attention, 2, 257, 257, 64, True, torch.float32, "cuda", seed)
    assert_close(errs, 1e-5, f"flash_torch cuda seed {seed}")


# Every config of every kernel's tuning space, per dtype and head-dim class, forward + backward
# once in a process of its own (perfmodel.flash_check): a config that faults kills only its own
# process and is named in the table.  ~310 children, 12 at a time: a few minutes on an H200, so
# opt-in (a plain GPU test run, tools/gpu_check.py, would spend them on every call).
CONFIG_TESTS = os.environ.get("PERFMODEL_FLASH_CONFIG_TESTS") == "1"
needs_config_tests = pytest.mark.skipif(
    not (HAS_CUDA and CONFIG_TESTS),
    reason="needs a CUDA GPU and PERFMODEL_FLASH_CONFIG_TESTS=1 (or tools/bench_flash.py --check-configs)")


@needs_config_tests
def test_triton_cuda_every_config_in_its_own_process(monkeypatch, capsys):
    from perfmodel import flash_check

    monkeypatch.setenv("PERFMODEL_FLASH_CANDIDATES", "1")  # the candidate spaces, not only the verified
    workers = int(os.environ.get("PERFMODEL_FLASH_CHECK_WORKERS", max(1, min(12, (os.cpu_count() or 2) - 2))))
    # no child starts after this (s): a device call stays bounded, and what did not run fails
    budget = float(os.environ.get("PERFMODEL_FLASH_CHECK_BUDGET", 380))
    cases = flash_check.cases()
    with capsys.disabled():
        print(f"\n{len(cases)} configs, {workers} at a time", flush=True)
        rows = flash_check.check_all(cases, workers=workers, deadline=time.time() + budget)
        print(flash_check.table(rows), flush=True)
    bad = [f"{r['id']}: {r['status']} {r['note']}" for r in rows if r["status"] != "ok"]
    assert len(rows) == len(cases) and not bad, "\n".join(bad)


@needs_config_tests
@pytest.mark.parametrize("variant", ["atomic", "fused", "atomic_tma"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_triton_cuda_variants_autotuned(variant, dtype):
    """The autotuned variants (the atomic ones re-zero their dQ buffer after a tuning run;
    atomic_tma on float32 is the atomic one).
    Lengths are multiples of 16 (the integer specialization of the bench's precompiled kernels)."""
    from perfmodel import flash_triton as ft

    seed = new_seed()
    with ft.forced(variant=variant):
        for b, sq, sk, causal in [(2, 1008, 1008, True), (1, 496, 1008, False)]:
            errs = run_case(ft.FlashAttentionTriton.apply, b, sq, sk, 64, causal, dtype, "cuda", seed)
            assert_close(errs, TOL[("triton", dtype)], f"{variant} autotuned sq{sq} sk{sk} {dtype} seed {seed}")


def test_bench_issue_criteria(monkeypatch):
    """tools/bench_flash.py --issue judges issue 17's criteria from its rows: only flash
    results whose configs passed the float64 check count; missing rows are 'not measured'."""
    monkeypatch.delenv("PERFMODEL_FLASH_CANDIDATES", raising=False)  # the tool sets it: undone after
    from tools import bench_flash as bench  # noqa: PLC0415 (a development tool, as a module)

    def row(label, impl, fwd, fwdbwd, ok=True):
        r = dict(label=label, impl=impl, fwd_ms=fwd, fwdbwd_ms=fwdbwd)
        if impl != "sdpa":
            r.update(check={"out": 1e-6}, check_ok=ok)
        return r

    rows = [row("fp32 d64", "sdpa", 10.0, 30.0), row("fp32 d64", "flash[split]", 14.0, 44.0),  # 0.71x, 0.68x
            row("fp32 d128", "sdpa", 10.0, 30.0), row("fp32 d128", "flash[split]", 16.0, 40.0),  # fwd 0.62x
            row("bf16 h16 d64", "sdpa", 1.2, 4.4), row("bf16 h16 d64", "flash[split]", 1.3, 4.5),
            row("bf16 h16 d64", "flash[atomic]", 1.3, 4.3),
            row("bf16 d128", "sdpa", 1.0, 3.5), row("bf16 d128", "flash[split]", 1.0, 3.9, ok=False),
            dict(label="bf16 long", impl="sdpa", error="OOM: x"), row("bf16 long", "flash[split]", 2.0, 8.0),
            dict(label="fp32 long", impl="flash[split]", error="OOM: y")]
    models = [dict(preset="small", attention="sdpa", ms=10.0), dict(preset="small", attention="flash", ms=9.0),
              dict(preset="2.7B", attention="sdpa", ms=50.0), dict(preset="2.7B", attention="flash", ms=None,
                                                                    status="failed")]
    lines = bench.issue_verdicts(rows, models).splitlines()

    def verdict(start):
        return next(x for x in lines if x.startswith("- " + start))

    assert ": MET" in verdict("fp32 b8 s16384 d64")
    assert "NOT MET" in verdict("fp32 b8 s16384 d128") and "fwd x SDPA 0.62" in verdict("fp32 b8 s16384 d128")
    assert ": MET" in verdict("bf16 b1 h16") and "flash[atomic] 4.300" in verdict("bf16 b1 h16")
    assert "NOT MET" in verdict("bf16 b8 s16384 d128")  # its only flash row failed the check
    assert ": MET" in verdict("bf16 b1 s65536") and "NOT MET" in verdict("fp32 b1 s65536")
    assert "NOT MET" in verdict("model presets") and "2.7B failed/50.0" in verdict("model presets")
    assert "FAILED: bf16 d128 flash[split]" in verdict("chosen configs")
    assert "not measured" in bench.issue_verdicts([], []).splitlines()[2]
