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
