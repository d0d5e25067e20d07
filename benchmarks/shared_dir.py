"""The suite's asv ``setup_cache``, in a module of its own.

asv records a setup_cache's module, line and source (results/benchmarks.json, which the
repository ships), so kept in benchmarks/common.py every edit above it changed the committed
suite description. Here it stays put: leave it, and the lines above it, as they are.
"""


def setup_cache(self):
    """Nothing to cache: it only gives this commit's benchmarks one shared working directory,
    where benchmarks/common.py's CellHandle leaves each cell's status and memory figures."""
    return None
