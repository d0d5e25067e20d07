"""Attention kernels: perfmodel.workloads.AttentionCell (batch 8, (batch, seq, d), causal)."""
from .common import SuiteBase, check_attention, device_type, facts, handle, timing_attrs


class Attention(SuiteBase):
    """impl x dtype x head size d x sequence length; forward and backward timed separately."""

    params = (["eager", "compiled", "sdpa", "flash", "flash_torch"],
              ["float32", "bfloat16"],
              [16, 32, 64, 128],
              [256, 1024, 4096, 8192, 16384])
    param_names = ["impl", "dtype", "d", "seq"]

    def setup(self, impl, dtype, d, seq):
        device = device_type()
        check_attention(impl, dtype, d, seq, device)  # n/a here: skipped before anything is built
        cell = dict(impl=impl, dtype=dtype, d=d, seq=seq)
        self.fwd = handle("AttentionCell", dict(cell, pass_="fwd"), device)
        self.bwd = handle("AttentionCell", dict(cell, pass_="bwd"), device)
        timing_attrs(self, device)

    def time_forward(self, *_):
        self.fwd.sample()

    def time_backward(self, *_):
        self.bwd.sample()

    def track_status_forward(self, *_):
        return self.fwd.status()

    def track_status_backward(self, *_):
        return self.bwd.status()

    def track_gpu_peak_bytes_forward(self, *_):
        return self.fwd.bytes("peak_bytes", gpu_only=True)

    def track_gpu_peak_bytes_backward(self, *_):
        return self.bwd.bytes("peak_bytes", gpu_only=True)

    def track_before_backward_bytes(self, *_):
        return self.bwd.bytes("before_backward_bytes", gpu_only=True)

    track_status_forward.unit = track_status_backward.unit = "status"
    track_gpu_peak_bytes_forward.unit = track_gpu_peak_bytes_backward.unit = "bytes"
    track_before_backward_bytes.unit = "bytes"
    facts(track_status_forward, track_status_backward, track_gpu_peak_bytes_forward,
          track_gpu_peak_bytes_backward, track_before_backward_bytes)
