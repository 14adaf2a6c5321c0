"""How many CPUs this process may use (the thread count every engine and the trainer start from), and whether they compute bf16 natively.

``os.cpu_count()`` counts the machine's CPUs. A process pinned to fewer (``taskset``, a cpuset)
or limited by a CPU quota (a container's ``--cpus``, a cgroup ``cpu.max``) that starts that many
threads oversubscribes its share and, on a busy machine, spends its time waiting for its own
threads.
"""

import math
import os
import platform
import subprocess
from pathlib import Path

CGROUP_V2_MAX = Path("/sys/fs/cgroup/cpu.max")  # "<quota> <period>" or "max <period>"
CGROUP_V1_QUOTA = Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us")  # -1 when unlimited
CGROUP_V1_PERIOD = Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us")
CPUINFO = Path("/proc/cpuinfo")
BF16_FEATURES = ("amx_bf16", "avx512_bf16", "bf16")  # x86 AMX, x86 AVX-512 (Cooper Lake, Zen 4 on), Arm (Armv8.6: Graviton3, Neoverse V1/V2)


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


def native_bf16() -> str | None:
    """The CPU feature that makes bf16 arithmetic native here, or None where it would be emulated (slower than fp32).

    Linux: the first of ``BF16_FEATURES`` in ``/proc/cpuinfo``'s ``flags`` (x86) or ``Features``
    (Arm); macOS: ``FEAT_BF16`` when ``sysctl hw.optional.arm.FEAT_BF16`` is 1 (Apple M2 on).
    """
    if platform.system() == "Darwin":
        try:
            done = subprocess.run(["sysctl", "-n", "hw.optional.arm.FEAT_BF16"], capture_output=True, text=True, timeout=5)
        except (OSError, subprocess.SubprocessError):
            return None
        return "FEAT_BF16" if done.stdout.strip() == "1" else None
    try:
        text = CPUINFO.read_text(errors="replace")
    except OSError:
        return None
    flags = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags.update(value.split())
    return next((feature for feature in BF16_FEATURES if feature in flags), None)
