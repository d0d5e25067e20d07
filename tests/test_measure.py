"""The measurement core: statistics, what is timed, memory, and OOM / failure as results."""
import gc
import time
import weakref

import pytest
import torch

from perfmodel import measure
from perfmodel.errors import UserError
from perfmodel.grid import run_grid
from perfmodel.measure import (DEVICE_CLOCK, FAILED, OK, OOM, SKIPPED, MemoryMeter, Runnable,
                               Stats, run_cell)
from perfmodel.workloads import AttentionCell, ModelCell

CPU = torch.device("cpu")


class FakeCell:
    """A cell whose build and step are given by the test."""

    def __init__(self, step=None, prepare=None, bytes_needed=0, build_error=None, available=True):
        self.step, self.prepare = step or (lambda _: None), prepare
        self.bytes_needed, self.build_error, self.available = bytes_needed, build_error, available
        self.built = 0
        self.tensor_ref = None

    def validate(self):
        pass

    def describe(self):
        return {"name": "fake"}

    def availability(self, device):
        return (True, "") if self.available else (False, "not here")

    def estimate_bytes(self):
        return self.bytes_needed

    def flops(self):
        return 1e9

    def math_kind(self):
        return "fp32"

    def build(self, device):
        self.built += 1
        if self.build_error:
            raise self.build_error
        big = torch.ones(1 << 20)
        self.tensor_ref = weakref.ref(big)
        step = self.step
        return Runnable(device, lambda s: step((s, big)), self.prepare)


def test_stats():
    s = Stats.of([1.0, 2.0, 3.0, 10.0])
    assert (s.n, s.mean, s.median, s.min, s.max) == (4, 4.0, 2.5, 1.0, 10.0)
    assert s.std == pytest.approx(4.0825, abs=1e-4)  # sample standard deviation
    assert Stats.of([2.0]).std == 0.0


def test_warmup_steps_run_untimed_and_count():
    calls = []
    cell = FakeCell(step=lambda s: calls.append(1))
    for warmup in (0, 1, 5):
        calls.clear()
        r = run_cell(cell, CPU, warmup=warmup, steps=4)
        assert r.status == OK and r.stats.n == 4 and len(calls) == warmup + 4
        assert r.warmup == warmup


def test_prepare_is_not_timed():
    # A backward step's forward runs in prepare(): it must not count in the step's time.
    cell = FakeCell(step=lambda s: time.sleep(0.002), prepare=lambda: time.sleep(0.03))
    r = run_cell(cell, CPU, warmup=0, steps=5)
    assert 0.002 <= r.stats.min and r.stats.median < 0.02
    assert r.total_s >= 5 * 0.03


def test_bad_warmup_or_steps_is_a_user_error():
    with pytest.raises(UserError, match="steps >= 1"):
        run_cell(FakeCell(), CPU, warmup=0, steps=0)


def test_gpu_out_of_memory_is_a_result_and_memory_is_released():
    # Simulated: the step raises the error a CUDA allocation raises.
    def boom(_):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 64.00 GiB")

    cell = FakeCell(step=boom)
    r = run_cell(cell, CPU, warmup=1, steps=3)
    assert r.status == OOM and "out of memory" in r.error and r.stats is None
    gc.collect()
    assert cell.tensor_ref() is None, "the cell's tensors outlived its OOM"


def test_oom_or_failure_never_loses_other_cells():
    good = FakeCell()
    cells = [good, FakeCell(build_error=torch.OutOfMemoryError("out of memory")),
             FakeCell(build_error=RuntimeError("kernel exploded\nsecond line")), good,
             FakeCell(available=False)]
    results = run_grid(cells, CPU, warmup=0, steps=2, progress=None)
    assert [r.status for r in results] == [OK, OOM, FAILED, OK, SKIPPED]
    assert results[2].error == "RuntimeError: kernel exploded"  # one line
    assert results[4].error == "not here"


def test_cpu_cell_that_would_not_fit_is_predicted_oom_and_never_built():
    cell = FakeCell(bytes_needed=10 * measure.available_host_bytes())
    r = run_cell(cell, CPU, warmup=1, steps=2)
    assert r.status == OOM and "predicted" in r.error and cell.built == 0


def test_seed_cells_that_cannot_fit_this_machine_are_predicted_oom():
    # eager attention at batch 8, seq 16384 holds 8 GiB per seq x seq fp32 tensor.
    big = AttentionCell("eager", d=64, seq=16384, pass_="bwd")
    assert big.estimate_bytes() > 5 * 8 * 16384**2 * 4 * 0.99
    assert AttentionCell("sdpa", d=64, seq=16384).estimate_bytes() < 2**30
    train = ModelCell("2.7B", 1024, mode="train")
    assert train.estimate_bytes() > 16 * 3_406_809_600  # weights, grads, two AdamW moments
    if train.estimate_bytes() > measure.HOST_MEMORY_FRACTION * measure.available_host_bytes():
        assert run_cell(train, CPU, 1, 1).status == OOM


def test_cpu_memory_meter_sees_a_large_allocation():
    meter = MemoryMeter(CPU)
    meter.reset()
    base = meter.current()
    x = torch.ones(64 * 2**20 // 4 * 4)  # 256 MiB, touched
    assert meter.peak() - base > 200 * 2**20
    del x
    meter.reset()
    assert meter.peak() < base + 200 * 2**20


def test_timed_step_advances_the_device_clock():
    r = Runnable(CPU, lambda s: time.sleep(0.003))
    before = DEVICE_CLOCK()
    seconds = r.timed_step()
    assert DEVICE_CLOCK() - before == pytest.approx(seconds) and seconds >= 0.003


@pytest.mark.parametrize("mode", ["fwd", "bwd", "fwd_bwd", "train"])
def test_model_cells_run_and_report_figures(mode):
    r = run_cell(ModelCell("nano", 32, batch=2, mode=mode), CPU, warmup=1, steps=2)
    assert r.status == OK, r.error
    assert r.stats.median > 0 and r.peak_bytes > 0 and r.flops > 0 and r.tflops > 0
    assert (r.before_backward_bytes is None) == (mode == "fwd")
    assert r.cell["params"] == 1_411_392 and r.env["tf32"] is False


def test_model_flops_are_6_params_tokens_plus_attention():
    cell = ModelCell("small", 1024, batch=4, mode="fwd_bwd")
    tokens = 4 * 1024
    attn = 12 * 4 * 4 * 12 * 1024 * 1024 * 64 / 2  # layers * 4*b*h*s^2*hd, causal
    assert cell.flops() == pytest.approx(6 * 128_625_408 * tokens + 3 * attn)


@pytest.mark.parametrize("pass_", ["fwd", "bwd", "fwd_bwd"])
def test_attention_cells_run(pass_):
    r = run_cell(AttentionCell("sdpa", 16, 64, pass_=pass_), CPU, warmup=1, steps=2)
    assert r.status == OK and r.stats.n == 2
    assert (r.before_backward_bytes is not None) == (pass_ != "fwd")
    fwd = 4 * 8 * 64 * 64 * 16 / 2
    assert r.flops == {"fwd": fwd, "bwd": 2.5 * fwd, "fwd_bwd": 3.5 * fwd}[pass_]


def test_unknown_choices_name_the_valid_ones():
    with pytest.raises(UserError, match="valid choices: nano, tiny"):
        run_cell(ModelCell("giant", 128), CPU)
    with pytest.raises(UserError, match="valid choices: fwd, bwd, fwd_bwd, train"):
        run_cell(ModelCell("nano", 128, mode="step"), CPU)
    with pytest.raises(UserError, match="seq must be a positive integer"):
        run_cell(AttentionCell("sdpa", 16, -4), CPU)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_real_gpu_oom_then_next_cell_runs():
    cuda = torch.device("cuda")
    small = AttentionCell("eager", 64, 1024)
    assert run_cell(small, cuda, 0, 2).status == OK  # library workspaces (cuBLAS) now allocated
    baseline = torch.cuda.memory_allocated()
    free, total = torch.cuda.mem_get_info()
    seq = int((2 * total / 4 / 8) ** 0.5)  # one fp32 score tensor twice the card
    results = run_grid([AttentionCell("eager", 64, seq), small], cuda, 0, 2, progress=None)
    assert [r.status for r in results] == [OOM, OK]
    assert "out of memory" in results[0].error.lower()
    assert torch.cuda.memory_allocated() <= baseline


def test_short_steps_are_timed_in_bursts_without_their_first_step():
    r = Runnable(CPU, lambda s: None)
    r.bursts = True  # as on a GPU
    seen = []

    def fake_timed_steps(n):
        seen.append(n)
        return [1.0] + [1e-4] * (n - 1)  # the first step of a burst starts on an idle device

    r.timed_steps = fake_timed_steps
    assert r.timed_step() == 1.0 and seen == [1]  # nothing known yet: one step
    r._last = 1e-4
    assert r.timed_step() == pytest.approx(1e-4)  # burst: first step left out
    assert seen[-1] == 1 + measure.BURST_MAX_STEPS or seen[-1] == 1 + 20
    r._last = 0.5
    r.timed_step()
    assert seen[-1] == 1  # long steps alone
    cpu = Runnable(CPU, lambda s: None)
    cpu._last = 1e-6
    assert cpu.burst_size() == 1
