"""The README's Ultralytics comparison is the one generated from the committed results JSON."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "compare_table.py"
RESULTS = ROOT / "benchmarks" / "results" / "compare_ultralytics.json"


def test_readme_table_matches_the_results_json():
    done = subprocess.run([sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_check_fails_on_a_stale_table_and_a_rewrite_mends_it(tmp_path):
    report = json.loads(RESULTS.read_text())
    report["train"]["edgeseg"]["img_per_s"] *= 2
    results, readme = tmp_path / "results.json", tmp_path / "README.md"
    results.write_text(json.dumps(report))
    readme.write_text((ROOT / "README.md").read_text())
    args = [sys.executable, str(SCRIPT), "--results", str(results), "--readme", str(readme)]
    stale = subprocess.run([*args, "--check"], capture_output=True, text=True)
    assert stale.returncode == 1 and "differs" in stale.stderr
    subprocess.run(args, check=True)
    assert subprocess.run([*args, "--check"]).returncode == 0
    ours, theirs = report["train"]["edgeseg"]["img_per_s"], report["train"]["ultralytics"]["img_per_s"]
    assert f"| training, img/s | {ours:.1f} | {theirs:.1f} | {ours / theirs:.2f}× |" in readme.read_text()


def test_readme_family_table_matches_its_results_json():
    script = ROOT / "benchmarks" / "family_speed.py"
    done = subprocess.run([sys.executable, str(script), "--table", "--check"], capture_output=True, text=True, cwd=script.parent)
    assert done.returncode == 0, done.stderr


def test_family_table_check_fails_on_a_stale_table(tmp_path):
    script = ROOT / "benchmarks" / "family_speed.py"
    report = json.loads((ROOT / "benchmarks" / "results" / "family_speed.json").read_text())
    report["ms"]["openvino"]["640"]["yolo26n-seg"] *= 2
    results, readme = tmp_path / "results.json", tmp_path / "README.md"
    results.write_text(json.dumps(report))
    readme.write_text((ROOT / "README.md").read_text())
    args = [sys.executable, str(script), "--table", "--results", str(results), "--readme", str(readme)]
    stale = subprocess.run([*args, "--check"], capture_output=True, text=True, cwd=script.parent)
    assert stale.returncode == 1 and "family_speed table differs" in stale.stderr
    subprocess.run(args, check=True, cwd=script.parent)
    assert f"| {report['ms']['openvino']['640']['yolo26n-seg']:.1f} |" in readme.read_text()


def test_targets_precision_table_matches_its_results_json():
    script = ROOT / "benchmarks" / "family_precision.py"
    done = subprocess.run([sys.executable, str(script), "--table", "--check"], capture_output=True, text=True, cwd=script.parent)
    assert done.returncode == 0, done.stderr


def test_precision_table_marks_a_row_over_its_limit(tmp_path):
    """A row whose mask mAP drop exceeds its precision's limit is marked in the generated table."""
    script = ROOT / "benchmarks" / "family_precision.py"
    report = json.loads((ROOT / "benchmarks" / "results" / "family_precision.json").read_text())
    label = next(iter(report["models"]))
    row = next(r for r in report["models"][label]["rows"] if r["precision"] == "int8" and r["within"] is not None)
    row["d_mask_map"], row["within"] = -0.05, False
    results, doc = tmp_path / "results.json", tmp_path / "targets.md"
    results.write_text(json.dumps(report))
    doc.write_text((ROOT / "docs" / "targets.md").read_text())
    args = [sys.executable, str(script), "--table", "--results", str(results), "--doc", str(doc)]
    stale = subprocess.run([*args, "--check"], capture_output=True, text=True, cwd=script.parent)
    assert stale.returncode == 1 and "family_precision table differs" in stale.stderr
    subprocess.run(args, check=True, cwd=script.parent)
    assert "-0.0500" in doc.read_text() and "✗" in doc.read_text()
