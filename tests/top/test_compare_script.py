"""benchmarks/compare_ultralytics.py's own logic: worker command lines and reusing an earlier run's training."""

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import compare_ultralytics as compare  # noqa: E402
from report import machine  # noqa: E402


def test_boolean_options_become_bare_flags_and_reach_every_edgeseg_run():
    commands = compare.busy_train_commands(Path("py"), "yolo26n-seg", Path("d.yaml"), Path("w"), 3, 320, "-x", 1, amp=True)
    assert commands["edgeseg"][3:] == ["train", "--name=edgeseg-x_busy", "--model=yolo26n-seg", "--data=d.yaml", "--work=w",
                                       "--epochs=3", "--imgsz=320", "--seed=1", "--amp"]  # fmt: skip
    assert commands["edgeseg_follow_load"][-2:] == ["--amp", "--follow-load"]
    assert "--amp" not in " ".join(map(str, commands["ultralytics"]))  # Ultralytics trains in fp32 on a CPU either way
    fp32 = compare.train_commands(Path("py"), "yolo26n-seg", Path("d.yaml"), Path("w"), 3, 320, seed=1)
    assert not any(str(part).startswith("--amp") for part in fp32["edgeseg"])


def test_reuse_takes_an_earlier_run_only_with_the_same_settings_and_machine(tmp_path):
    settings = {"model": "yolo26n-seg", "imgsz": 320, "train_images": 512, "val_images": 64, "epochs": 30, "seed": 0, "data_seed": 0}
    out = tmp_path / "run.json"
    assert compare.reusable(out, settings) == {}  # nothing there yet
    out.write_text(json.dumps({**settings, "machine": machine(), "train": {"edgeseg": 1}}))
    assert compare.reusable(out, settings)["train"] == {"edgeseg": 1}
    assert compare.reusable(out, {**settings, "seed": 1}) == {}
    out.write_text(json.dumps({**settings, "machine": "another, 64 cores"}))
    assert compare.reusable(out, settings) == {}


def test_ratios_give_predict_over_the_default_session_where_it_was_timed():
    row = {"edgeseg": {"ms": 8.0, "raw_infer_ms": 7.0}, "edgeseg_auto_engine": {"ms": 8.0}, "ultralytics": {"ms": 10.0}}
    report = {
        "train": {"edgeseg": {"img_per_s": 2.0}, "ultralytics": {"img_per_s": 1.0}},
        "predict": {"few": row, "many": {**row, "edgeseg": {**row["edgeseg"], "raw_default_session_ms": 6.4}}},
        "val": {"edgeseg": {"ms_per_image": 12.0}, "ultralytics": {"ms_per_image": 24.0}},
    }
    out = compare.ratios(report)
    assert out["predict_over_default_session_many"] == 8.0 / 6.4 and "predict_over_default_session_few" not in out
    assert out["predict_speedup_few"] == 10.0 / 8.0 and out["val_over_predict"] == 12.0 / 8.0
