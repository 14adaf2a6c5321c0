"""The import contract (.importlinter, run by ``make layers`` and CI) holds, and fails on a back-edge."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
LINT = Path(sys.executable).parent / "lint-imports"
pytestmark = pytest.mark.skipif(not LINT.exists(), reason="import-linter is not installed (edgeseg[dev])")


def _copy(tmp_path: Path) -> Path:
    """The source folders, the contract and its script, copied to ``tmp_path/repo``."""
    repo = tmp_path / "repo"
    for folder in ("toolkit", "runtimes", "targets", "models", ".ci"):
        shutil.copytree(ROOT / folder, repo / folder, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / ".importlinter", repo / ".importlinter")
    return repo


def _lint(repo: Path) -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", "LINT_IMPORTS": str(LINT)}
    return subprocess.run(["bash", str(repo / ".ci" / "layers")], capture_output=True, text=True, env=env, timeout=120)


def test_the_tree_keeps_the_contract(tmp_path):
    done = _lint(_copy(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Contracts: 4 kept, 0 broken." in done.stdout


@pytest.mark.parametrize(
    "module, line, broken",
    [
        ("runtimes/io/sources.py", "from edgeseg.data.synth import render_sample", "edgeseg.runtimes is not allowed to import edgeseg.data"),
        ("runtimes/pipeline/loop.py", "import torch", "edgeseg.runtimes is not allowed to import torch"),
        ("toolkit/nn/network.py", "from edgeseg.targets import export", "edgeseg.nn is not allowed to import edgeseg.targets"),
        ("runtimes/pipeline/preprocess.py", "from edgeseg.runtimes.pipeline.loop import batches", "No cycles are allowed in edgeseg.runtimes"),
    ],
)
def test_a_back_edge_breaks_the_contract(tmp_path, module, line, broken):
    repo = _copy(tmp_path)
    path = repo / module
    text = path.read_text()
    first_import = text.index("\nimport ") + 1 if "\nimport " in text else text.index("\nfrom ") + 1
    path.write_text(text[:first_import] + line + "\n" + text[first_import:])
    done = _lint(repo)
    assert done.returncode != 0
    assert broken in done.stdout, done.stdout[-2000:]
