"""The OpenMP wait policy: edgeseg's passive default is lifted while an inference library loads; a user's setting never is."""

import os

from edgeseg.runtimes.openmp import DEFAULT_MARK, POLICY, default_passive_wait, spinning_wait


def test_default_is_marked_and_lifted_only_inside_spinning_wait(monkeypatch):
    monkeypatch.delenv(POLICY, raising=False)
    monkeypatch.delenv(DEFAULT_MARK, raising=False)
    default_passive_wait()
    assert os.environ[POLICY] == "PASSIVE" and os.environ[DEFAULT_MARK] == "PASSIVE"
    with spinning_wait():
        assert POLICY not in os.environ
    assert os.environ[POLICY] == "PASSIVE"


def test_a_users_policy_is_kept(monkeypatch):
    for users in ("PASSIVE", "ACTIVE"):
        monkeypatch.delenv(DEFAULT_MARK, raising=False)
        monkeypatch.setenv(POLICY, users)
        default_passive_wait()
        assert DEFAULT_MARK not in os.environ
        with spinning_wait():
            assert os.environ[POLICY] == users
    monkeypatch.setenv(DEFAULT_MARK, "PASSIVE")  # a parent process took the default, then the user set their own
    monkeypatch.setenv(POLICY, "ACTIVE")
    with spinning_wait():
        assert os.environ[POLICY] == "ACTIVE"
