"""Attention kernels: perfmodel.workloads.AttentionCell (batch 8, (batch, seq, d), causal)."""
from . import tiers
from .common import SuiteBase, facts, handle, timing_attrs


def _passes(cell: dict, device: str) -> list:
    """A grid point's cells: its forward and its backward."""
    return [handle("AttentionCell", dict(cell, pass_=p), device) for p in ("fwd", "bwd")]


class Attention(SuiteBase):
    """impl x dtype x head size d x sequence length; forward and backward timed separately."""

    params = tiers.params("Attention")
    param_names = tiers.param_names("Attention")

    def setup(self, impl, dtype, d, seq):
        cell = dict(impl=impl, dtype=dtype, d=d, seq=seq)
        device = self.enter("Attention", cell)  # n/a here: skipped before anything is built
        self.fwd, self.bwd = _passes(cell, device)
        timing_attrs(self, device, "Attention", cell, handles=[self.fwd, self.bwd],
                     handles_of=lambda point: _passes(point, device))

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

    def track_issue_seconds_forward(self, *_):
        return self.fwd.issue_seconds()

    def track_issue_seconds_backward(self, *_):
        return self.bwd.issue_seconds()

    def track_backlog_seconds_forward(self, *_):
        return self.fwd.backlog_seconds()

    def track_backlog_seconds_backward(self, *_):
        return self.bwd.backlog_seconds()

    def track_free_seconds_forward(self, *_):
        return self.fwd.free_seconds()

    def track_free_seconds_backward(self, *_):
        return self.bwd.free_seconds()

    track_status_forward.unit = track_status_backward.unit = "status"
    track_gpu_peak_bytes_forward.unit = track_gpu_peak_bytes_backward.unit = "bytes"
    track_before_backward_bytes.unit = "bytes"
    track_issue_seconds_forward.unit = track_issue_seconds_backward.unit = "seconds"
    track_backlog_seconds_forward.unit = track_backlog_seconds_backward.unit = "seconds"
    track_free_seconds_forward.unit = track_free_seconds_backward.unit = "seconds"
    facts(track_status_forward, track_status_backward, track_gpu_peak_bytes_forward,
          track_gpu_peak_bytes_backward, track_before_backward_bytes, track_issue_seconds_forward,
          track_issue_seconds_backward, track_backlog_seconds_forward,
          track_backlog_seconds_backward, track_free_seconds_forward, track_free_seconds_backward)
