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


def kernel_time(prof: torch.profiler.profile, rows: int = 15) -> tuple[float, list[dict]]:
    """All kernels' time in the profile (ms), and the `rows` kernels with the most, each with its share of it.

    Kernels are counted as torch's own device-time total counts them: kernels only (with CUDA graphs, the kernels
    they replay), not the ranges that user annotations (the profiler's steps, the optimizer's step) draw on the GPU's
    timeline over them, nor the operators that launch them. Where there is no GPU, the CPU's operators, the
    profiler's step ranges left out likewise. Set against the wall time of the same work, the total is the share the
    GPU was busy; the rest is host work or waiting that no kernel's speed-up recovers."""
    gpu = torch.cuda.is_available()
    key = "self_device_time_total" if gpu else "self_cpu_time_total"

    def counted(e) -> bool:
        if gpu:
            return e.device_type == DeviceType.CUDA and not getattr(e, "is_user_annotation", False)
        return e.device_type == DeviceType.CPU and not e.key.startswith("ProfilerStep")

    events = sorted((e for e in prof.key_averages() if counted(e)), key=lambda e: getattr(e, key), reverse=True)
    total = sum(getattr(e, key) for e in events)
    top = [{"name": e.key[:120], "self_ms": round(getattr(e, key) / 1e3, 2),
            "self_share": round(getattr(e, key) / (total or 1), 4), "calls": e.count} for e in events[:rows]]
    return total / 1e3, top
