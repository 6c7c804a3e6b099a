"""torch.profiler for `bmw bench model --profile`: where a training step's or a decoding call's device time goes."""

from __future__ import annotations

import torch


def profiler(**kwargs) -> torch.profiler.profile:
    """A profiler of the CPU and, where there is one, the GPU."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    if torch.cuda.is_available():
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    return torch.profiler.profile(activities=activities, **kwargs)


def top_kernels(prof: torch.profiler.profile, rows: int = 15) -> list[dict]:
    """The kernels and operators with the most device time (CPU time where there is no GPU)."""
    key = "device_time_total" if torch.cuda.is_available() else "cpu_time_total"
    events = sorted(prof.key_averages(), key=lambda e: getattr(e, key), reverse=True)
    total = sum(getattr(e, "self_" + key) for e in events) or 1
    return [{"name": e.key[:120], "self_ms": round(getattr(e, "self_" + key) / 1e3, 2),
             "self_share": round(getattr(e, "self_" + key) / total, 4), "calls": e.count}
            for e in sorted(events, key=lambda e: getattr(e, "self_" + key), reverse=True)[:rows]]
