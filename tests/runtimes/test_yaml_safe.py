"""The safe YAML loader: bombs and tags refused, plain documents kept, files checked before reading."""

import os
import re

import pytest

from edgeseg.runtimes.errors import EdgesegError
from edgeseg.runtimes.io.yaml_safe import MAX_YAML_BYTES, load_yaml, parse_yaml

from bad_files import BOMB, sparse, write

# --------------------------------------------------------------------------------------
# Data YAML and the shared safe loader
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, problem",
    [
        (BOMB + "names: *i\n", "expands to more than 1,000,000 nodes"),
        ("a: &a [1]\nb: [" + ", ".join(["*a"] * 101) + "]\n", "more than 100 alias references"),
        ("a: &a [1, *a]\n", "recursive alias"),
        ("a: " + "[" * 150 + "]" * 150 + "\n", "nested deeper than 100 levels"),
        ("a: " + "[" * 5000 + "]" * 5000 + "\n", "not valid YAML"),
        ("a: !!python/object/apply:os.system ['touch PWNED']\n", "could not determine a constructor"),
        ("a: " + "1" * 5000 + "\n", "YAML value not usable"),
        ("a: 1\n---\nb: 2\n", "expected a single document"),
        ("a: [\n", "not valid YAML"),
    ],
)
def test_parse_yaml_refuses_bombs_and_tags(text, problem):
    with pytest.raises(EdgesegError, match=re.escape(problem)) as err:
        parse_yaml(text, "cfg.yaml")
    assert str(err.value).startswith("cfg.yaml: ") and "\n" not in str(err.value)


def test_parse_yaml_keeps_plain_documents_and_a_few_aliases():
    expected = {"base": {"x": 1}, "c": {"x": 1, "y": 2}, "l": [{"x": 1}] * 2}
    assert parse_yaml("base: &b {x: 1}\nc: {<<: *b, y: 2}\nl: [*b, *b]\n") == expected
    assert parse_yaml("") is None


def test_load_yaml_checks_the_file_before_reading(tmp_path):
    sparse(tmp_path / "big.yaml", b"a: 1\n", MAX_YAML_BYTES + 1)
    with pytest.raises(EdgesegError, match="big.yaml: YAML file refused: 1,048,577 bytes, more than the 1,048,576-byte"):
        load_yaml(tmp_path / "big.yaml")
    (tmp_path / "dir.yaml").mkdir()
    with pytest.raises(EdgesegError, match="dir.yaml: YAML file refused: not a regular file"):
        load_yaml(tmp_path / "dir.yaml")
    os.mkfifo(tmp_path / "fifo.yaml")
    with pytest.raises(EdgesegError, match="fifo.yaml: YAML file refused: not a regular file"):
        load_yaml(tmp_path / "fifo.yaml")
    with pytest.raises(EdgesegError, match="missing.yaml: YAML file not found"):
        load_yaml(tmp_path / "missing.yaml")
    with pytest.raises(EdgesegError, match=r"bin.yaml: not UTF-8 text \(byte 3\)"):
        load_yaml(write(tmp_path / "bin.yaml", b"a: \xff"))
