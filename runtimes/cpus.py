"""How many CPUs this process may use: the thread count every engine and the trainer start from.

``os.cpu_count()`` counts the machine's CPUs. A process pinned to fewer (``taskset``, a cpuset)
or limited by a CPU quota (a container's ``--cpus``, a cgroup ``cpu.max``) that starts that many
threads oversubscribes its share and, on a busy machine, spends its time waiting for its own
threads.
"""

import math
import os
import time
from pathlib import Path

CGROUP_V2_MAX = Path("/sys/fs/cgroup/cpu.max")  # "<quota> <period>" or "max <period>"
CGROUP_V1_QUOTA = Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us")  # -1 when unlimited
CGROUP_V1_PERIOD = Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us")
PROC_STAT = Path("/proc/stat")  # per-CPU time counters (Linux)


def _cgroup_quota() -> float | None:
    """CPUs allowed by this process's cgroup CPU quota (e.g. 1.5), or None when unlimited or unknown."""
    try:
        if CGROUP_V2_MAX.is_file():
            quota, period = CGROUP_V2_MAX.read_text().split()[:2]
            return None if quota == "max" else int(quota) / int(period)
        if CGROUP_V1_QUOTA.is_file() and CGROUP_V1_PERIOD.is_file():
            quota, period = int(CGROUP_V1_QUOTA.read_text()), int(CGROUP_V1_PERIOD.read_text())
            return None if quota <= 0 or period <= 0 else quota / period
    except (OSError, ValueError):
        return None
    return None


def usable_cpus() -> int:
    """The CPUs this process may run on: its affinity mask, capped by its cgroup quota (rounded up), at least 1."""
    try:
        count = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS and Windows have no affinity call
        count = os.cpu_count() or 1
    quota = _cgroup_quota()
    if quota is not None:
        count = min(count, math.ceil(quota))
    return max(count, 1)


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
