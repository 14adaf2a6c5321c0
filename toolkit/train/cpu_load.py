"""How busy other processes keep this process's CPUs: what the trainer measures before each epoch to size its threads."""

import os
import time
from pathlib import Path

PROC_STAT = Path("/proc/stat")  # per-CPU time counters (Linux)


def _cpu_times(cpus: set[int]) -> dict[int, tuple[int, int]]:
    """``{cpu: (busy, total)}`` jiffies since boot for ``cpus``, from PROC_STAT (empty when unreadable)."""
    times = {}
    try:
        lines = PROC_STAT.read_text().splitlines()
    except OSError:
        return times
    for line in lines:
        name, *fields = line.split()
        if not name.startswith("cpu") or not name[3:].isdigit() or int(name[3:]) not in cpus or len(fields) < 8:
            continue
        user, nice, system, idle, iowait, irq, softirq, steal = map(int, fields[:8])
        total = user + nice + system + idle + iowait + irq + softirq + steal
        times[int(name[3:])] = (total - idle - iowait, total)
    return times


def busy_cpus(interval: float = 0.05) -> float:
    """How many of this process's CPUs something keeps busy, measured over ``interval`` seconds.

    Sums, over the CPUs of the affinity mask, the fraction of ``interval`` each spent busy
    (Linux ``/proc/stat``). Called while this process is idle, it measures what other processes
    take: 1.0 next to one CPU-bound process. 0.0 where it cannot be measured.
    """
    try:
        cpus = set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return 0.0
    before = _cpu_times(cpus)
    time.sleep(interval)
    after = _cpu_times(cpus)
    busy = 0.0
    for cpu, (busy_after, total_after) in after.items():
        busy_before, total_before = before.get(cpu, (busy_after, total_after))
        if total_after > total_before:
            busy += (busy_after - busy_before) / (total_after - total_before)
    return busy
