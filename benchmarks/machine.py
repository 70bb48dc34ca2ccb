"""What the benchmarks ran on: CPU, cores, library versions, accelerator; and the accelerator's peak FLOPs."""

from __future__ import annotations

import os
import platform
import re
from pathlib import Path
from typing import Any, Mapping

import torch

CPUINFO = Path("/proc/cpuinfo")


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (the platform's processor string elsewhere)."""
    if CPUINFO.is_file():
        for line in CPUINFO.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def usable_cores() -> int:
    """Cores this process may run on (the affinity mask, which containers and taskset narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def pick_device(requested: str) -> torch.device:
    """cuda when asked or when `auto` finds a GPU, else cpu."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: device=cuda but no CUDA device is visible; use device=auto or device=cpu")
    return torch.device(requested)


def accelerator_name(device: torch.device) -> str | None:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else None


def device_slug(device: torch.device) -> str:
    """File-name form of the device: "cpu", or the GPU's name like "nvidia-h100-80gb-hbm3"."""
    name = accelerator_name(device)
    if name is None:
        return "cpu"
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def describe(device: torch.device) -> dict[str, Any]:
    """The machine description written at the top of the output and into the JSON."""
    import pytorch_lightning

    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "cores": usable_cores(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "lightning": pytorch_lightning.__version__,
        "device": device.type,
        "cuda_device": accelerator_name(device),
        "cuda_devices": torch.cuda.device_count() if device.type == "cuda" else 0,
        "cuda_version": torch.version.cuda if device.type == "cuda" else None,
    }
    return info


def header(info: Mapping[str, Any]) -> str:
    """One line per fact, for the terminal and the Markdown file."""
    gpu = (
        f"{info['cuda_device']} ×{info['cuda_devices']} (CUDA {info['cuda_version']})"
        if info["cuda_device"]
        else "none (CPU run)"
    )
    return "\n".join(
        [
            f"CPU:    {info['cpu']} ({info['cores']} usable cores, torch threads {info['torch_threads']})",
            f"GPU:    {gpu}",
            f"Python: {info['python']}, torch {info['torch']}, Lightning {info['lightning']}",
        ]
    )


def peak_tflops(
    device_name: str | None, table: Mapping[str, Mapping[str, float]], override: Mapping[str, float] | None = None
) -> dict[str, float] | None:
    """Peak dense TFLOP/s per precision ({"bf16": .., "fp32": ..}) of the first table key found in the device
    name (case-insensitive); `override` wins; None on CPU or for an unknown GPU (MFU is then n/a)."""
    if override:
        return {str(k): float(v) for k, v in override.items()}
    if not device_name:
        return None
    for key, peaks in table.items():
        if str(key).lower() in device_name.lower():
            return {str(k): float(v) for k, v in peaks.items()}
    return None
