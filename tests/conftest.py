import random

import pytest
import torch


@pytest.fixture
def gen():
    """A generator with a fresh random seed per test: implementations must be right on any input."""
    seed = random.SystemRandom().randrange(2**31)
    print(f"seed={seed}")
    return torch.Generator().manual_seed(seed)


def rel_err(x: torch.Tensor, ref: torch.Tensor) -> float:
    x, ref = x.detach().double().cpu(), ref.detach().double().cpu()
    assert torch.isfinite(x).all(), "non-finite values"
    return ((x - ref).norm() / ref.norm()).item()
