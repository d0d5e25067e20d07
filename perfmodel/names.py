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

# A step is host-bound when the device waits on the host: the number then measures the host
# (Python, kernel launches), not the model. Two signs, both needed: the host took at least
# HOST_BOUND_SHARE of the step's device time to issue it, and once it had, the device had less than
# BACKLOG_SHARE of a step left to run (the backlog: measure.Runnable.backlog). The issue time alone
# over-marks: a long step with a backward fills the launch queue, so the host blocks until the
# device has room and its issue lasts about as long as the step, while the device never waits
# (412 of 608 H200 model steps at 337beebc, 2.7B fp32 fwd_bwd among them: issue 1523 of 1923 ms);
# the device then still has the queue's work, a fifth of the step there, when the host is done. A
# step without a backlog figure (commits before it was recorded) is unknown when the issue rule
# alone would mark it. Here, not in perfmodel.measure, so the report can mark cells without
# importing torch; measure re-exports the names.
HOST_BOUND_SHARE = 0.8
BACKLOG_SHARE = 0.1


def _known(x) -> bool:
    return x is not None and x == x


def host_bound(step_s: float | None, issue_s: float | None,
               backlog_s: float | None = None) -> bool | None:
    """Whether a step is host-bound (None when it cannot be told from what was recorded)."""
    if not step_s or not _known(step_s) or not _known(issue_s):
        return None
    if issue_s < HOST_BOUND_SHARE * step_s:
        return False
    if not _known(backlog_s):
        return None
    return backlog_s < BACKLOG_SHARE * step_s


MiB = 2**20  # the unit memory is shown in, in every table

MODES = {"forward": "fwd", "backward": "bwd", "forward_backward": "fwd_bwd", "train_step": "train"}

# Exit statuses of the perfmodel commands (README "Exit status"): perfmodel gate's 1 is a confirmed
# slowdown (asv continuous's own status), perfmodel report's 1 is results left out.
EXIT_CLEAN = 0
EXIT_LEFT_OUT = 1
EXIT_USAGE = 2      # a UserError: one line naming what to do
EXIT_INTERNAL = 3   # an exception the code did not foresee: a bug
