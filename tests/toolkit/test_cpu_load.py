"""busy_cpus: the share of this process's CPUs other processes keep busy, read from /proc/stat."""

import pytest

from edgeseg.train import cpu_load


def test_busy_cpus_sums_the_busy_share_of_the_process_cpus(monkeypatch, tmp_path):
    """Between the two reads of /proc/stat, CPU 0 is fully busy, CPU 1 half, CPU 2 idle; CPU 5 is not ours."""
    monkeypatch.setattr(cpu_load.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    stat = tmp_path / "stat"
    before = ["cpu  1 1 1 1 1 1 1 1 0 0", "cpu0 100 0 0 100 0 0 0 0 0 0", "cpu1 100 0 0 100 0 0 0 0 0 0",
              "cpu2 100 0 0 100 0 0 0 0 0 0", "cpu5 100 0 0 100 0 0 0 0 0 0", "intr 5"]  # fmt: skip
    after = ["cpu0 150 0 30 100 0 0 0 20 0 0", "cpu1 110 0 0 140 10 0 0 0 0 0",
             "cpu2 100 0 0 200 0 0 0 0 0 0", "cpu5 200 0 0 100 0 0 0 0 0 0"]  # fmt: skip
    stat.write_text("\n".join(before))
    monkeypatch.setattr(cpu_load, "PROC_STAT", stat)
    monkeypatch.setattr(cpu_load.time, "sleep", lambda seconds: stat.write_text("\n".join(after)))
    assert cpu_load.busy_cpus() == pytest.approx(1.0 + 10 / 60 + 0.0)  # iowait counts as idle
    stat.unlink()
    assert cpu_load.busy_cpus() == 0.0
