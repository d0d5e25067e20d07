"""Which machine a number was taken on: the device, and what besides the code a number depends
on (driver, CUDA, torch, triton, TF32, the CPU thread policy). The name asv files it under is
perfmodel/identity.py's, which needs no torch."""
from __future__ import annotations

import torch

from .cpu import cpu_threads
from .errors import UserError
from .identity import cpu_name, nvidia_driver


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise UserError(f"unknown device {name!r}; valid choices: auto, cpu, cuda, cuda:N")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device {name!r} asked for, but torch sees no GPU; valid choices: auto, cpu")
    return torch.device(name)


_ENV_CACHE: dict = {}


def environment(device: torch.device) -> dict:
    """What a number depends on besides the code: device, driver, CUDA, torch, triton, TF32."""
    key = str(device)
    if key not in _ENV_CACHE:
        env = {"device": device.type, "torch": torch.__version__}
        try:
            import triton  # noqa: PLC0415

            env["triton"] = triton.__version__
        except ImportError:
            env["triton"] = None
        if device.type == "cuda":
            env["name"] = torch.cuda.get_device_name(device)
            env["cuda"] = torch.version.cuda
            env["driver"] = nvidia_driver()
        else:
            env["name"] = cpu_name()
            env["cuda"] = None
            env["driver"] = None
        _ENV_CACHE[key] = env
    env = dict(_ENV_CACHE[key])
    env["tf32"] = bool(torch.backends.cuda.matmul.allow_tf32)
    if device.type == "cpu":
        env["threads"] = cpu_threads()
    return env
