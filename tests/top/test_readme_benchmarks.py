"""The generated tables (README: Ultralytics comparison, YOLO26 training, family speed; docs/targets.md: family precision) are the ones made from the committed results JSON."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

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
    for run in RESULTS.parent.glob("compare_ultralytics_yolo26n-seg-*.json"):  # the YOLO26 table is read from beside the results
        (tmp_path / run.name).write_text(run.read_text())
    readme.write_text((ROOT / "README.md").read_text())
    args = [sys.executable, str(SCRIPT), "--results", str(results), "--readme", str(readme)]
    stale = subprocess.run([*args, "--check"], capture_output=True, text=True)
    assert stale.returncode == 1 and "differs" in stale.stderr
    subprocess.run(args, check=True)
    assert subprocess.run([*args, "--check"]).returncode == 0
    ours, theirs = report["train"]["edgeseg"]["img_per_s"], report["train"]["ultralytics"]["img_per_s"]
    assert f"| training, img/s | {ours:.1f} | {theirs:.1f} | {ours / theirs:.2f}× |" in readme.read_text()


def yolo26_run(seed: int, data_seed: int, ours: float, theirs: float) -> dict:
    """A made-up ``compare_ultralytics.py --model yolo26n-seg --train-only`` report: img/s ``ours``/``theirs``, edgeseg ahead on masks only."""
    maps = {"edgeseg": {"box_map": 0.2, "mask_map": 0.25}, "ultralytics": {"box_map": 0.21, "mask_map": 0.24}}
    return {
        "model": "yolo26n-seg", "imgsz": 320, "train_images": 512, "val_images": 64, "epochs": 30, "seed": seed, "data_seed": data_seed,
        "train": {"edgeseg": {"img_per_s": ours}, "ultralytics": {"img_per_s": theirs}},
        "accuracy_one_evaluator": {"nms": maps, "end2end": maps}, "machine": "x86_64, 2 cores", "edgeseg": "0.1.0",
    }  # fmt: skip


def test_yolo26_training_table_has_one_row_per_run_in_order(tmp_path):
    for seed, data_seed in ((1, 3), (0, 0)):
        run = yolo26_run(seed, data_seed, 8.0, 4.0)
        if seed == 0:
            run["also_edgeseg"] = {"yolo11n-seg": {"nms": {"mask_map": 0.23, "box_map": 0.19}}}
        (tmp_path / f"compare_ultralytics_yolo26n-seg-s{seed}-d{data_seed}x512.json").write_text(json.dumps(run))
    (tmp_path / "compare_ultralytics.json").write_text(RESULTS.read_text())
    readme = tmp_path / "README.md"
    readme.write_text((ROOT / "README.md").read_text())
    subprocess.run([sys.executable, str(SCRIPT), "--results", str(tmp_path / "compare_ultralytics.json"), "--readme", str(readme)], check=True)
    rows = [line for line in readme.read_text().splitlines() if line.startswith("| 0 × 512") or line.startswith("| 3 × 512")]
    pairs = "**0.250** / 0.240 | 0.200 / **0.210** | **0.250** / 0.240 | 0.200 / **0.210** |"
    assert rows == [f"| 0 × 512 | 0 | 8.0 / 4.0 (2.00×) | {pairs} 0.230 / 0.190 |", f"| 3 × 512 | 1 | 8.0 / 4.0 (2.00×) | {pairs} not trained |"]


@pytest.mark.parametrize(
    "bf16_day, speed",
    [("2026-12-08", "10.0 / 4.0 (2.50×)"), ("2026-12-09", "10.0 / — (timed another day: no ratio)"), (None, "10.0 / — (timed another day: no ratio)")],
)
def test_yolo26_training_table_adds_the_bf16_run_and_names_the_cpu_feature(tmp_path, bf16_day, speed):
    run = {**yolo26_run(0, 0, 8.0, 4.0), "cpu_bf16": "avx512_bf16", "trained_on": "2026-12-08"}
    bf16 = {"img_per_s": 10.0, "nms": {"mask_map": 0.23, "box_map": 0.22}, "end2end": {"mask_map": 0.25, "box_map": 0.2}}
    run["also_edgeseg"] = {"yolo26n-seg-amp": {**bf16, **({"trained_on": bf16_day} if bf16_day else {})}}
    (tmp_path / "compare_ultralytics_yolo26n-seg-s0-d0x512.json").write_text(json.dumps(run))
    (tmp_path / "compare_ultralytics.json").write_text(RESULTS.read_text())
    readme = tmp_path / "README.md"
    readme.write_text((ROOT / "README.md").read_text())
    subprocess.run([sys.executable, str(SCRIPT), "--results", str(tmp_path / "compare_ultralytics.json"), "--readme", str(readme)], check=True)
    text = readme.read_text()
    rows = [line for line in text.splitlines() if line.startswith("| 0 × 512")]
    assert rows[1] == (
        f"| 0 × 512 | 0, edgeseg in bf16 | {speed} | **0.250** / 0.240 | 0.200 / **0.210** | 0.230 / **0.240** | **0.220** / 0.210 | |"
    )  # a speed ratio only against an Ultralytics run timed the same day
    assert "on x86_64, 2 cores, native bf16: avx512_bf16 (edgeseg 0.1.0; both in fp32; rows marked bf16:" in text


TABLES = {"family_speed": ("family_speed.json", "README.md", "--readme"), "family_precision": ("family_precision.json", "docs/targets.md", "--doc")}


@pytest.mark.parametrize("name", sorted(TABLES))
def test_generated_table_matches_its_results_json(name):
    script = ROOT / "benchmarks" / f"{name}.py"
    done = subprocess.run([sys.executable, str(script), "--table", "--check"], capture_output=True, text=True, cwd=script.parent)
    assert done.returncode == 0, done.stderr


def rewritten_table(name: str, report: dict, tmp_path: Path) -> str:
    """The doc of table ``name`` rewritten from ``report``, after checking that ``--check`` calls the old table stale."""
    results_name, doc_name, doc_flag = TABLES[name]
    script = ROOT / "benchmarks" / f"{name}.py"
    results, doc = tmp_path / results_name, tmp_path / Path(doc_name).name
    results.write_text(json.dumps(report))
    doc.write_text((ROOT / doc_name).read_text())
    args = [sys.executable, str(script), "--table", "--results", str(results), doc_flag, str(doc)]
    stale = subprocess.run([*args, "--check"], capture_output=True, text=True, cwd=script.parent)
    assert stale.returncode == 1 and f"{name} table differs" in stale.stderr
    subprocess.run(args, check=True, cwd=script.parent)
    return doc.read_text()


def test_family_table_check_fails_on_a_stale_table(tmp_path):
    report = json.loads((ROOT / "benchmarks" / "results" / "family_speed.json").read_text())
    report["ms"]["openvino"]["640"]["yolo26n-seg"] *= 2
    assert f"| {report['ms']['openvino']['640']['yolo26n-seg']:.1f} |" in rewritten_table("family_speed", report, tmp_path)


def test_precision_table_marks_a_row_over_its_limit(tmp_path):
    """A row whose mask mAP drop exceeds its precision's limit is marked in the generated table."""
    report = json.loads((ROOT / "benchmarks" / "results" / "family_precision.json").read_text())
    label = next(iter(report["models"]))
    row = next(r for r in report["models"][label]["rows"] if r["precision"] == "int8" and r["within"] is not None)
    row["d_mask_map"], row["within"] = -0.05, False
    text = rewritten_table("family_precision", report, tmp_path)
    assert "-0.0500" in text and "✗" in text


def test_the_default_session_row_appears_when_the_run_timed_it(tmp_path):
    report = json.loads(RESULTS.read_text())
    few = report["predict"]["few"]["edgeseg"]
    few["raw_default_session_ms"] = few["ms"] / 1.25
    results, readme = tmp_path / "compare_ultralytics.json", tmp_path / "README.md"
    results.write_text(json.dumps(report))
    for run in RESULTS.parent.glob("compare_ultralytics_yolo26n-seg-*.json"):
        (tmp_path / run.name).write_text(run.read_text())
    readme.write_text((ROOT / "README.md").read_text())
    subprocess.run([sys.executable, str(SCRIPT), "--results", str(results), "--readme", str(readme)], check=True)
    rows = [line for line in readme.read_text().splitlines() if "default `InferenceSession`" in line]
    assert rows == [f"| the same, a default `InferenceSession` (by hand) | {few['ms'] / 1.25:.1f} | | predict = 1.25× that |"]
