"""Every attention implementation against a float64 reference: outputs and gradients."""
import pytest
import torch

from perfmodel.attention import IMPLEMENTATIONS, attention, availability, reference_attention
from perfmodel.errors import UserError

from .conftest import rel_err

TOL = {torch.float32: 1e-5, torch.bfloat16: 2e-2}
CPU_IMPLS = [name for name in IMPLEMENTATIONS if availability(name, "cpu")[0]]


def check(impl, shape, dtype, causal, gen, device="cpu", tol=None, sk=None):
    tol = tol or TOL[dtype]
    kshape = shape[:-2] + (sk or shape[-2], shape[-1])
    q = torch.randn(shape, generator=gen).to(device, dtype).requires_grad_()
    k = torch.randn(kshape, generator=gen).to(device, dtype).requires_grad_()
    v = torch.randn(kshape, generator=gen).to(device, dtype).requires_grad_()
    grad = torch.randn(shape, generator=gen).to(device, dtype)
    out = attention(q, k, v, is_causal=causal, impl=impl)
    assert out.dtype == dtype and out.shape == shape
    out.backward(grad)
    q64, k64, v64 = (t.detach().double().cpu().requires_grad_() for t in (q, k, v))
    ref = reference_attention(q64, k64, v64, causal)
    ref.backward(grad.double().cpu())
    assert rel_err(out, ref) < tol
    for got, want in ((q.grad, q64.grad), (k.grad, k64.grad), (v.grad, v64.grad)):
        assert rel_err(got, want) < tol


@pytest.mark.parametrize("impl", ["eager", "sdpa"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("causal", [True, False])
@pytest.mark.parametrize("shape", [(3, 77, 32), (2, 3, 64, 16)])
def test_matches_float64_reference(impl, dtype, causal, shape, gen):
    check(impl, shape, dtype, causal, gen)


@pytest.mark.parametrize("causal", [True, False])
def test_compiled_matches_float64_reference(causal, gen):
    check("compiled", (2, 3, 40, 16), torch.float32, causal, gen)


def test_compiled_bf16(gen):
    check("compiled", (2, 48, 32), torch.bfloat16, True, gen)


@pytest.mark.parametrize("impl", ["eager", "sdpa"])
def test_non_causal_with_different_key_length(impl, gen):
    check(impl, (2, 20, 16), torch.float32, False, gen, sk=33)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
@pytest.mark.parametrize("impl", [n for n in IMPLEMENTATIONS if n != "flash_torch"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("causal", [True, False])
def test_matches_reference_on_gpu(impl, dtype, causal, gen):
    if not availability(impl, "cuda")[0]:
        pytest.skip(availability(impl, "cuda")[1])
    # On a GPU, fp32 matmuls may use TF32 inside SDPA/cuDNN: 1e-3 is TF32's level.
    check(impl, (4, 2, 300, 64), dtype, causal, gen, device="cuda",
          tol=1e-3 if dtype == torch.float32 else 2e-2)


def test_reference_is_exact_softmax(gen):
    q, k, v = (torch.randn(1, 3, 4, generator=gen, dtype=torch.float64) for _ in range(3))
    ref = reference_attention(q, k, v, True)
    assert torch.allclose(ref[0, 0], v[0, 0])  # the first query sees only the first key
    w = torch.softmax(q[0] @ k[0].T / 2.0, -1)
    assert torch.allclose(reference_attention(q, k, v, False)[0], w @ v[0])


def test_bad_shapes_and_names_are_user_errors():
    x = torch.zeros(2, 8, 16)
    with pytest.raises(UserError, match="valid choices: eager, compiled, sdpa"):
        attention(x, x, x, impl="fast")
    with pytest.raises(UserError, match=r"\(batch, seq, d\)"):
        attention(torch.zeros(8, 16), torch.zeros(8, 16), torch.zeros(8, 16))
    with pytest.raises(UserError, match="causal"):
        attention(x, torch.zeros(2, 9, 16), torch.zeros(2, 9, 16), is_causal=True)
    with pytest.raises(UserError, match="mismatched"):
        attention(x, torch.zeros(2, 8, 8), torch.zeros(2, 8, 8), is_causal=False)


def test_compiled_stays_compiled_past_dynamos_default_limit(gen):
    import torch._dynamo  # noqa: PLC0415
    from torch._dynamo.utils import counters  # noqa: PLC0415

    torch._dynamo.reset()
    counters.clear()
    for seq in range(3, 12):  # 9 shapes > dynamo's default of 8 specializations
        q = torch.randn(1, seq, 8, generator=gen)
        out = attention(q, q, q, is_causal=True, impl="compiled")
        assert torch.allclose(out, reference_attention(q, q, q, True).float(), atol=1e-5)
    assert counters["stats"]["unique_graphs"] == 9
    assert not any("cache_size_limit" in k or "recompile_limit" in k for k in counters["frames"])


def test_sdpa_on_3d_inputs_reaches_the_fused_kernels_with_a_heads_dimension(monkeypatch):
    # Given (batch, seq, d), SDPA's fused kernels need a heads dimension; without one it falls
    # back to the math path and holds batch x seq x seq scores like eager does.
    import torch.nn.functional as F  # noqa: PLC0415

    from perfmodel.attention import sdpa_attention  # noqa: PLC0415

    seen, real = [], F.scaled_dot_product_attention

    def spy(q, k, v, **kw):
        seen.append(q.dim())
        return real(q, k, v, **kw)

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    q, k, v = (torch.randn(2, 64, 16) for _ in range(3))
    out = sdpa_attention(q, k, v, True)
    assert seen == [4] and out.shape == q.shape
    torch.testing.assert_close(out, real(q, k, v, is_causal=True))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_sdpa_on_3d_inputs_does_not_materialize_scores():
    # the same on a GPU, by the allocator's counts (a CPU's resident set is not a cell's memory)
    from perfmodel.measure import run_cell  # noqa: PLC0415
    from perfmodel.workloads import AttentionCell  # noqa: PLC0415

    seq, dev = 4096, torch.device("cuda")
    scores = 8 * seq * seq * 4
    eager = run_cell(AttentionCell("eager", 32, seq, pass_="bwd"), dev, 0, 1)
    sdpa = run_cell(AttentionCell("sdpa", 32, seq, pass_="bwd"), dev, 0, 1)
    assert eager.before_backward_bytes - sdpa.before_backward_bytes > scores / 2
