"""Hostile-input harness: one entry point on one crafted input, in a fresh process under a memory cap.

A :class:`Case` builds its fixture files inside a sandbox folder (the test's ``tmp_path``), names
the command to run there (a CLI argv, or Python code calling the API) and the one-line error it
must end with. :func:`check` runs it with ``RLIMIT_AS`` set to the idle process's address space
plus :data:`BUDGET_MB`, and asserts what the trust promise says: a non-zero exit within
:data:`TIME_LIMIT_S`, exactly one ``error: ...`` line matching the case's pattern, no traceback,
no marker file, and nothing in the sandbox created, changed or removed outside the case's
``allowed`` paths. Covering a new entry point or format is one more ``Case`` in a list.
"""

from __future__ import annotations

import fnmatch
import os
import re
import resource
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable

BUDGET_MB = 1024  # address space a hostile case may use above an idle edgeseg process's
TIME_LIMIT_S = 10.0  # seconds a case may take, start-up included (the acceptance limit)
TIMEOUT_S = 60  # the subprocess is killed after this (a hang fails the case, it does not stall the suite)
MARKER = "PWNED"  # file name a code-execution payload would create

# One-thread settings keep the address space stable (each OpenMP thread and malloc arena reserves some).
ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "MALLOC_ARENA_MAX": "2", "PYTHONWARNINGS": "ignore"}

API_PRELUDE = """
import sys
from edgeseg.runtimes.errors import EdgesegError
try:
{body}
except EdgesegError as exc:
    print(f"error: {{exc}}", file=sys.stderr)
    sys.exit(1)
"""

IDLE_CODE = """
import torch, cv2, onnxruntime, numpy
import edgeseg, edgeseg.cli, edgeseg.model, edgeseg.targets, edgeseg.runtimes
import edgeseg.train.trainer, edgeseg.interop.ultralytics, edgeseg.interop.coco
for line in open('/proc/self/status'):
    if line.startswith('VmPeak:'):
        print(int(line.split()[1]) // 1024)
"""


@dataclass
class Case:
    """One hostile input and the entry point it is fed to.

    Attributes:
        id: the test id.
        build: writes the fixture files into the sandbox (its argument) before the run.
        argv: CLI arguments after ``edgeseg`` (paths relative to the sandbox), or None.
        code: Python statements calling the API (run with the sandbox as the current folder), or None.
        expect: regex the ``error:`` line must match (``re.search``).
        allowed: glob patterns (sandbox-relative) of paths the command may create or change; a
            pattern also allows everything inside the folder it names.
        budget_mb: address space allowed above the idle process, MB.
        succeeds: the input is skipped and counted, not refused: the run must exit 0 and ``expect``
            must match a line of its output (the count), instead of an ``error:`` line.
    """

    id: str
    build: Callable[[Path], None]
    argv: list[str] | None = None
    code: str | None = None
    expect: str = ""
    allowed: tuple[str, ...] = ()
    budget_mb: int = BUDGET_MB
    succeeds: bool = False
    marks: tuple = field(default=())


@dataclass
class Outcome:
    """What a run of a case gave: exit status, output, wall time in seconds."""

    rc: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def output(self) -> str:
        """stdout and stderr together."""
        return self.stdout + self.stderr


@lru_cache(maxsize=1)
def idle_address_space_mb() -> int:
    """Peak address space (MB) of a process that has imported everything the entry points import."""
    out = subprocess.run([sys.executable, "-c", IDLE_CODE], capture_output=True, text=True, env={**os.environ, **ENV}, check=True)
    return int(out.stdout.split()[-1])


def _command(case: Case) -> list[str]:
    """The argv that runs ``case`` in a fresh interpreter."""
    if case.argv is not None:
        return [sys.executable, "-m", "edgeseg", *case.argv]
    body = textwrap.indent(textwrap.dedent(case.code).strip(), "    ")
    return [sys.executable, "-c", API_PRELUDE.format(body=body)]


def run(case: Case, sandbox: Path) -> Outcome:
    """Run ``case`` in ``sandbox`` under the memory cap; return its outcome."""
    limit = (idle_address_space_mb() + case.budget_mb) << 20

    def cap_memory():
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    start = time.perf_counter()
    try:
        proc = subprocess.run(
            _command(case), cwd=sandbox, capture_output=True, text=True, timeout=TIMEOUT_S,
            env={**os.environ, **ENV}, preexec_fn=cap_memory,
        )
    except subprocess.TimeoutExpired as exc:
        return Outcome(-9, exc.stdout or "", f"timed out after {TIMEOUT_S} s", time.perf_counter() - start)
    return Outcome(proc.returncode, proc.stdout, proc.stderr, time.perf_counter() - start)


def snapshot(folder: Path) -> dict[str, tuple]:
    """``{relative path: (kind, size, mtime_ns, mode)}`` of everything under ``folder`` (links not followed)."""
    found = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(root, name)
            st = path.lstat()
            kind = "link" if path.is_symlink() else "dir" if path.is_dir() else "file"
            found[str(path.relative_to(folder))] = (kind, 0 if kind == "dir" else st.st_size, st.st_mtime_ns, st.st_mode)
    return found


def changed(before: dict, after: dict, allowed: tuple[str, ...]) -> list[str]:
    """Paths created, removed or modified between two snapshots, except those ``allowed`` matches (or holds)."""
    paths = {p for p in before.keys() | after.keys() if before.get(p) != after.get(p)}
    return sorted(p for p in paths if not any(fnmatch.fnmatch(p, pat) or p.startswith(pat + "/") for pat in allowed))


def check(case: Case, sandbox: Path) -> Outcome:
    """Build, run and judge ``case`` in ``sandbox`` (an empty folder); raise AssertionError on any broken promise."""
    case.build(sandbox)
    before = snapshot(sandbox)
    outcome = run(case, sandbox)
    text = outcome.output
    assert "Traceback" not in text, f"{case.id}: traceback\n{text[-3000:]}"
    if case.succeeds:
        assert outcome.rc == 0, f"{case.id}: exit status {outcome.rc}\n{text[-3000:]}"
        assert re.search(case.expect, text, re.MULTILINE), f"{case.id}: no line matches {case.expect!r}\n{text[-3000:]}"
    else:
        assert outcome.rc not in (0, -9), f"{case.id}: exit status {outcome.rc}\n{text[-3000:]}"
        errors = [line for line in outcome.stderr.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1, f"{case.id}: expected one 'error:' line, got {errors}\n{text[-3000:]}"
        assert re.search(case.expect, errors[0]), f"{case.id}: {errors[0]!r} does not match {case.expect!r}"
        assert "internal error" not in errors[0], f"{case.id}: an unexpected exception reached the user: {errors[0]}"
    assert outcome.seconds < TIME_LIMIT_S, f"{case.id}: took {outcome.seconds:.1f} s (limit {TIME_LIMIT_S} s)"
    assert not list(sandbox.rglob(MARKER)), f"{case.id}: the payload ran (marker file created)"
    assert not (Path("/tmp") / MARKER).exists(), f"{case.id}: the payload ran (/tmp marker created)"
    diff = changed(before, snapshot(sandbox), case.allowed)
    assert not diff, f"{case.id}: changed outside its output: {diff}"
    return outcome


def params(cases: list[Case]) -> list:
    """``pytest.param`` per case, with its id and marks, for ``@pytest.mark.parametrize("case", ...)``."""
    import pytest

    return [pytest.param(c, id=c.id, marks=c.marks) for c in cases]
