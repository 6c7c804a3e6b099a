"""torch.profiler for `bmw bench model --profile`: where a training step's or a decoding call's device time goes."""

from __future__ import annotations

import torch
from torch.autograd import DeviceType


def profiler(**kwargs) -> torch.profiler.profile:
    """A profiler of the CPU and, where there is one, the GPU."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    if torch.cuda.is_available():
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    return torch.profiler.profile(activities=activities, **kwargs)


def _kernels(prof: torch.profiler.profile) -> tuple[list, str]:
    """The profile's kernels and the key of their own time, counted as torch's own device-time total counts them:
    kernels only (with CUDA graphs, the kernels they replay), not the ranges that user annotations (the profiler's
    steps, the optimizer's step) draw on the GPU's timeline over them, nor the operators that launch them. Where there
    is no GPU, the CPU's operators, the profiler's step ranges left out likewise."""
    gpu = torch.cuda.is_available()
    key = "self_device_time_total" if gpu else "self_cpu_time_total"

    def counted(e) -> bool:
        if gpu:
            return e.device_type == DeviceType.CUDA and not getattr(e, "is_user_annotation", False)
        return e.device_type == DeviceType.CPU and not e.key.startswith("ProfilerStep")

    return [e for e in prof.key_averages() if counted(e)], key


def kernel_ms(prof: torch.profiler.profile) -> float:
    """All kernels' time in the profile (ms): set against the wall time of the same work, the share the GPU was
    busy; the rest is host work or waiting that no kernel's speed-up recovers."""
    events, key = _kernels(prof)
    return sum(getattr(e, key) for e in events) / 1e3


def top_kernels(prof: torch.profiler.profile, rows: int = 15) -> list[dict]:
    """The kernels (`_kernels`) with the most time, each with its share of all kernels' time."""
    events, key = _kernels(prof)
    events.sort(key=lambda e: getattr(e, key), reverse=True)
    total = sum(getattr(e, key) for e in events) or 1
    return [{"name": e.key[:120], "self_ms": round(getattr(e, key) / 1e3, 2),
             "self_share": round(getattr(e, key) / total, 4), "calls": e.count} for e in events[:rows]]
