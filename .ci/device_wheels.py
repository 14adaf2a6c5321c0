"""Check that the device install resolves to binary wheels on the mission's Arm devices, without installing anything.

For each device (a Raspberry Pi: aarch64 Linux, Python 3.11; a Jetson on JetPack 6: aarch64
Linux, Python 3.10; an Apple-silicon Mac: macOS arm64, Python 3.10 and 3.11) it asks pip to
resolve edgeseg's base dependencies, then the base plus the ``tflite`` extra, from
``pyproject.toml``, with ``--only-binary=:all:`` and that device's platform tags
(``pip install --dry-run --report``: wheel metadata only, nothing is downloaded in full or
installed). A dependency with no wheel there fails pip's resolution, and this script exits 1
naming the device and pip's last error line. Needs PyPI.

    .venv/bin/python .ci/device_wheels.py
"""

import json
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# glibc 2.35 (JetPack 6 / Ubuntu 22.04) and 2.36 (Raspberry Pi OS / Debian 12) take any of these manylinux tags
LINUX_ARM64 = [f"manylinux_2_{minor}_aarch64" for minor in (17, 24, 26, 27, 28, 31, 34, 35)] + ["manylinux2014_aarch64"]
MACOS_ARM64 = [f"macosx_{major}_0_{arch}" for major in (11, 12, 13, 14) for arch in ("arm64", "universal2")]
DEVICES = [
    ("Raspberry Pi (aarch64, cp311)", LINUX_ARM64, "3.11"),
    ("Jetson JetPack 6 (aarch64, cp310)", LINUX_ARM64, "3.10"),
    ("Apple-silicon Mac (arm64, cp311)", MACOS_ARM64, "3.11"),
    ("Apple-silicon Mac (arm64, cp310)", MACOS_ARM64, "3.10"),
]
EXTRAS = [(), ("tflite",)]


def requirements(extras: tuple[str, ...]) -> list[str]:
    """The base dependencies of ``pyproject.toml`` plus those of ``extras``."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [*project["dependencies"], *(r for e in extras for r in project["optional-dependencies"][e])]


def resolve(platforms: list[str], python: str, reqs: list[str]) -> tuple[bool, str]:
    """(resolved, ``name==version`` list or pip's last error line) for ``reqs`` on those platform tags."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        command = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
                   "--disable-pip-version-check", "--only-binary=:all:", "--implementation", "cp",
                   "--python-version", python, "--target", str(Path(tmp) / "target"), "--report", str(report)]  # fmt: skip
        for tag in platforms:
            command += ["--platform", tag]
        done = subprocess.run([*command, *reqs], capture_output=True, text=True)
        if done.returncode:
            lines = [line for line in done.stderr.splitlines() if line.startswith("ERROR")] or done.stderr.splitlines() or ["pip failed"]
            return False, lines[-1]
        installs = json.loads(report.read_text())["install"]
        return True, " ".join(f"{i['metadata']['name']}=={i['metadata']['version']}" for i in installs)


def main() -> int:
    failed = 0
    for device, platforms, python in DEVICES:
        for extras in EXTRAS:
            label = f"edgeseg[{','.join(extras)}]" if extras else "edgeseg"
            ok, detail = resolve(platforms, python, requirements(extras))
            print(f"{'ok  ' if ok else 'FAIL'} {device}: {label}: {detail}", flush=True)
            failed += not ok
    if failed:
        print(f"{failed} device install(s) do not resolve to binary wheels", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
