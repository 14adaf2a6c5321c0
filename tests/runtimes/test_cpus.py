"""usable_cpus: the affinity mask capped by the cgroup CPU quota (what every engine's thread count starts from)."""

import pytest

from edgeseg.runtimes import cpus


@pytest.fixture
def four_cpus(monkeypatch, tmp_path):
    """A process allowed CPUs 0-3, with the cgroup files pointed into tmp_path (absent until written)."""
    monkeypatch.setattr(cpus.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    paths = {"v2": tmp_path / "cpu.max", "quota": tmp_path / "cfs_quota_us", "period": tmp_path / "cfs_period_us"}
    monkeypatch.setattr(cpus, "CGROUP_V2_MAX", paths["v2"])
    monkeypatch.setattr(cpus, "CGROUP_V1_QUOTA", paths["quota"])
    monkeypatch.setattr(cpus, "CGROUP_V1_PERIOD", paths["period"])
    return paths


def test_affinity_without_a_quota(four_cpus):
    assert cpus.usable_cpus() == 4
    four_cpus["v2"].write_text("max 100000\n")
    assert cpus.usable_cpus() == 4


@pytest.mark.parametrize("text, expected", [("150000 100000\n", 2), ("200000 100000", 2), ("50000 100000", 1), ("800000 100000", 4)])
def test_cgroup_v2_quota_caps_the_affinity(four_cpus, text, expected):
    four_cpus["v2"].write_text(text)
    assert cpus.usable_cpus() == expected


@pytest.mark.parametrize("quota, expected", [("-1", 4), ("300000", 3), ("100000", 1)])
def test_cgroup_v1_quota(four_cpus, quota, expected):
    four_cpus["quota"].write_text(quota)
    four_cpus["period"].write_text("100000")
    assert cpus.usable_cpus() == expected


def test_unreadable_cgroup_files_fall_back_to_the_affinity(four_cpus):
    four_cpus["v2"].write_text("garbage")
    assert cpus.usable_cpus() == 4


def test_without_an_affinity_call_the_cpu_count_counts(monkeypatch, four_cpus):
    monkeypatch.delattr(cpus.os, "sched_getaffinity")
    monkeypatch.setattr(cpus.os, "cpu_count", lambda: 6)
    assert cpus.usable_cpus() == 6


def test_busy_cpus_sums_the_busy_share_of_the_process_cpus(monkeypatch, four_cpus, tmp_path):
    """Between the two reads of /proc/stat, CPU 0 is fully busy, CPU 1 half, CPU 2 idle; CPU 5 is not ours."""
    stat = tmp_path / "stat"
    before = ["cpu  1 1 1 1 1 1 1 1 0 0", "cpu0 100 0 0 100 0 0 0 0 0 0", "cpu1 100 0 0 100 0 0 0 0 0 0",
              "cpu2 100 0 0 100 0 0 0 0 0 0", "cpu5 100 0 0 100 0 0 0 0 0 0", "intr 5"]  # fmt: skip
    after = ["cpu0 150 0 30 100 0 0 0 20 0 0", "cpu1 110 0 0 140 10 0 0 0 0 0",
             "cpu2 100 0 0 200 0 0 0 0 0 0", "cpu5 200 0 0 100 0 0 0 0 0 0"]  # fmt: skip
    stat.write_text("\n".join(before))
    monkeypatch.setattr(cpus, "PROC_STAT", stat)
    monkeypatch.setattr(cpus.time, "sleep", lambda seconds: stat.write_text("\n".join(after)))
    assert cpus.busy_cpus() == pytest.approx(1.0 + 10 / 60 + 0.0)  # iowait counts as idle
    stat.unlink()
    assert cpus.busy_cpus() == 0.0
