"""docs/limits.md states the code's limits: each number in its table equals the constant the row names.

The table's last column names a constant as ``module.CONSTANT`` (an importable module of the
installed package, e.g. ``edgeseg.runtimes.meta.limits.MAX_IMGSZ``) or ``—`` for a rule with no
number. ``limit_problems`` imports each named constant and compares it with the first number of
the row's limit, read with its unit (``10,000``; ``250 M``, ``50 MP``: 10^6; ``64 MiB``: 2^20;
``2 GiB``: 2^30). Most named modules are torch-free; the few in the training toolkit import torch.
"""

import importlib
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LIMITS_DOC = ROOT / "docs" / "limits.md"

UNITS = {None: 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "M": 10**6, "MP": 10**6}
NUMBER = re.compile(r"(\d[\d,]*(?:\.\d+)?)\s*(KiB|MiB|GiB|MP|M)?(?![\w.])")
CONSTANT = re.compile(r"^`((?:\w+\.)+\w+)\.([A-Z][A-Z0-9_]*)`$")
NO_CONSTANT = "—"


def table_rows(text: str) -> list[tuple[str, str, str]]:
    """(input, limit, constant) of each row of the table whose header's last column is ``constant``."""
    rows, in_table = [], False
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")] if line.lstrip().startswith("|") else None
        if cells is None:
            in_table = False
        elif not in_table:
            in_table = cells[-1] == "constant"
        elif not set(line.strip()) <= set("|-: "):
            rows.append((cells[0], " | ".join(cells[1:-1]), cells[-1]))
    return rows


def documented_value(limit: str) -> float | None:
    """The first number in a limit cell, times its unit; None when the cell holds no number."""
    found = NUMBER.search(limit)
    if found is None:
        return None
    number, unit = found.groups()
    return float(number.replace(",", "")) * UNITS[unit]


def limit_problems(text: str) -> tuple[int, list[str]]:
    """(rows checked against a constant, one line per row that the code contradicts or that cannot be checked)."""
    checked, problems = 0, []
    rows = table_rows(text)
    if not rows:
        return 0, ["no table whose last column is 'constant'"]
    for what, limit, constant in rows:
        value = documented_value(limit)
        if constant == NO_CONSTANT:
            if value is not None:
                problems.append(f"{what}: states {limit!r} but names no constant")
            continue
        named = CONSTANT.match(constant)
        if named is None:
            problems.append(f"{what}: {constant!r} is not `module.CONSTANT`")
            continue
        module_name, name = named.groups()
        try:
            module = importlib.import_module(module_name)
        except ImportError as error:
            problems.append(f"{what}: cannot import {module_name} ({error})")
            continue
        if not hasattr(module, name):
            problems.append(f"{what}: {module_name} has no {name}")
            continue
        if value is None:
            problems.append(f"{what}: no number in {limit!r}")
            continue
        actual = getattr(module, name)
        if value != actual:
            problems.append(f"{what}: docs say {limit!r} ({value:g}), {module_name}.{name} is {actual!r}")
        checked += 1
    return checked, problems


def test_every_documented_limit_equals_its_constant():
    checked, problems = limit_problems(LIMITS_DOC.read_text(encoding="utf-8"))
    assert problems == []
    assert checked >= 20


def test_a_wrong_value_or_a_missing_constant_is_caught():
    # torch-free rows of the real table, each edited the way a stale doc would be
    lines = LIMITS_DOC.read_text(encoding="utf-8").splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("|") and line.rstrip().endswith("| constant |"))
    imgsz = next(line for line in lines if "`edgeseg.runtimes.meta.limits.MAX_IMGSZ`" in line)
    yaml_bytes = next(line for line in lines if "`edgeseg.runtimes.io.yaml_safe.MAX_YAML_BYTES`" in line)
    labels = next(line for line in lines if "`edgeseg.runtimes.evaluation.labels.MAX_LABEL_BYTES`" in line)
    table = lines[header : header + 2]

    assert limit_problems("\n".join([*table, imgsz, yaml_bytes, labels])) == (3, [])

    wrong_value = imgsz.replace("4096 px", "4095 px")
    wrong_unit = yaml_bytes.replace("1 MiB", "1 GiB")
    missing = labels.replace("MAX_LABEL_BYTES", "MAX_LABEL_SIZE")
    no_module = imgsz.replace("edgeseg.runtimes.meta.limits.", "edgeseg.runtimes.no_such_module.")
    unnamed = labels.replace("`edgeseg.runtimes.evaluation.labels.MAX_LABEL_BYTES`", NO_CONSTANT)
    checked, problems = limit_problems("\n".join([*table, wrong_value, wrong_unit, missing, no_module, unnamed]))
    assert checked == 2 and len(problems) == 5, problems
    assert "4095" in problems[0] and "MAX_IMGSZ is 4096" in problems[0]
    assert "MAX_YAML_BYTES is 1048576" in problems[1]
    assert "has no MAX_LABEL_SIZE" in problems[2]
    assert "cannot import edgeseg.runtimes.no_such_module" in problems[3]
    assert "names no constant" in problems[4]

    assert limit_problems(imgsz)[1] == ["no table whose last column is 'constant'"]
