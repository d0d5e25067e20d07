"""Names the suite, the measurement core and the report share, said once here.

Statuses of a cell, and the numbers the suite's ``track_status*`` benchmarks record for them
(asv keeps numbers only; larger is worse; a cell that does not apply records NaN, which asv and
the report show as n/a). MODES: the suite's method suffixes (``time_<suffix>``,
``track_status_<suffix>``) -> the short mode names of perfmodel.workloads and the tables.
"""
OK, OOM, FAILED = "OK", "OOM", "failed"
NA = "n/a"  # not run on this machine: outside its tier, not selected, or not in that commit
SKIPPED = NA  # the name older callers use
# Not an outcome of the cell but of the machine: other processes took too much of the CPU for
# its samples to mean anything (perfmodel.measure.MachineBusy). Never an asv code.
BUSY = "busy"

CODES = {OK: 1.0, OOM: 2.0, FAILED: 3.0}
STATUS_OF_CODE = {code: name for name, code in CODES.items()}

# A step is host-bound when the host's time to issue it is at least this share of the step's
# device time: the device then waits on the host, so the number measures the host (Python, kernel
# launches), not the model. Here, not in perfmodel.measure, so the report can mark such cells
# without importing torch; measure re-exports both.
HOST_BOUND_SHARE = 0.8


def host_bound(step_s: float | None, issue_s: float | None) -> bool | None:
    """Whether a step is host-bound (None when either time is unknown)."""
    if not step_s or step_s != step_s or issue_s is None or issue_s != issue_s:
        return None
    return issue_s >= HOST_BOUND_SHARE * step_s


MiB = 2**20  # the unit memory is shown in, in every table

MODES = {"forward": "fwd", "backward": "bwd", "forward_backward": "fwd_bwd", "train_step": "train"}

# Exit statuses of the perfmodel commands (README "Exit status"): perfmodel gate's 1 is a confirmed
# slowdown (asv continuous's own status), perfmodel report's 1 is results left out.
EXIT_CLEAN = 0
EXIT_LEFT_OUT = 1
EXIT_USAGE = 2      # a UserError: one line naming what to do
EXIT_INTERNAL = 3   # an exception the code did not foresee: a bug
