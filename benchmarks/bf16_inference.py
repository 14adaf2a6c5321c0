"""OpenVINO bf16 against fp32 on trained and early checkpoints: what bf16 keeps (detections, mAP) and what it saves (time), in one run.

For each model, ``edgeseg bench`` (``edgeseg.benchmark.bench``) exports it to OpenVINO fp32 and
bf16 at imgsz 320, validates the ``.pt`` and both IRs on the same val split with one evaluator
(``Runtime.val``), verifies each IR against the ``.pt`` (detection agreement, mask IoU) and times
single-image predict in a fresh process per artifact (raw inference and end to end). The models:

* ``shipped-y11-e35``: weights/yolo11n-seg-synth320.pt (35 epochs on 1024 images of seed 1);
* ``y11-e1``, ``y11-e3``: yolo11n-seg trained 1 and 3 epochs here on the data, cached under ROOT
  (early checkpoints; on the default data they still score every box below 0.003, so they show
  only that bf16 adds no detection);
* every ``--weights LABEL=PATH`` (e.g. the trained models of ``compare_ultralytics.py``, edgeseg's
  and Ultralytics' own ``.pt`` of YOLO11 and YOLO26).

The data: ``--data``, default a synthetic set of seed 0 (512 train, 64 val images) made under ROOT.
A CPU without native bf16 cannot run this (the bf16 export is refused there). Writes
benchmarks/results/bf16_inference.json (with the CPU's bf16 feature) and prints the table.

    .venv/bin/python benchmarks/bf16_inference.py [--weights y26-s0=runs/compare_ultralytics/edgeseg-yolo26n-seg-s0-d0x512/weights/last.pt ...]
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

from report import save_report

ROOT = Path("runs/bench/bf16_inference")
RESULTS = Path(__file__).parent / "results" / "bf16_inference.json"
SHIPPED = Path(__file__).resolve().parents[1] / "weights" / "yolo11n-seg-synth320.pt"
IMGSZ = 320
EARLY_EPOCHS = (1, 3)
KEPT = ("format", "precision", "status", "box_map", "mask_map", "d_box_map", "d_mask_map", "agreement", "mask_iou", "infer_ms", "p50_ms")


def default_data() -> Path:
    """The data YAML of a synthetic set of seed 0 (512 train, 64 val images), made under ROOT on first use."""
    from edgeseg.data.synth import synthesize

    folder = ROOT / "data"
    if not (folder / "complete").exists():
        synthesize(folder, n_train=512, n_val=64, seed=0, progress=False)
        (folder / "complete").touch()
    return (folder / "data.yaml").resolve()


def early_checkpoint(epochs: int, data: Path) -> Path:
    """yolo11n-seg trained ``epochs`` epochs on ``data`` at IMGSZ (batch 16, seed 0, no val), cached under ROOT."""
    import edgeseg

    path = ROOT / f"y11-e{epochs}" / "weights" / "last.pt"
    if not path.exists():
        edgeseg.Model("yolo11n-seg.yaml").train(
            str(data), epochs=epochs, imgsz=IMGSZ, batch=16, seed=0, val=False, plots=False, project=str(ROOT), name=f"y11-e{epochs}", exist_ok=True
        )
    return path


def bench_model(label: str, weights: Path, data: Path, runs: int) -> dict:
    """One model: the PyTorch row's mAPs and the OpenVINO fp32 and bf16 rows (KEPT columns)."""
    import edgeseg
    from edgeseg.benchmark import bench
    from edgeseg.models.config import family_name

    family = family_name(edgeseg.Model(str(weights)).net.yaml)
    with tempfile.TemporaryDirectory() as work:
        torch_row, *rows = bench(str(weights), str(data), targets=["openvino", "openvino:bf16"], imgsz=IMGSZ, runs=runs, project=work, name=label)
    result = {
        "weights": str(weights), "family": family,
        "pytorch": {"box_map": torch_row["box_map"], "mask_map": torch_row["mask_map"]},
        "rows": [{key: row.get(key) for key in KEPT} for row in rows],
    }  # fmt: skip
    print(format_model(label, result), flush=True)
    return result


def format_model(label: str, model: dict) -> str:
    """One table line: the model's mAPs, bf16's mAP changes and agreement, and the fp32 → bf16 times."""
    rows = {row["precision"]: row for row in model["rows"]}
    fp32, bf16 = rows.get("fp32", {}), rows.get("bf16", {})
    if bf16.get("status") != "ok" or fp32.get("status") != "ok":
        return f"{label:<18} {model['family']:<12} fp32: {fp32.get('status')}; bf16: {bf16.get('status')}"
    pt = model["pytorch"]
    return (
        f"{label:<18} {model['family']:<12} mask/box {pt['mask_map']:.3f}/{pt['box_map']:.3f}"
        f"  Δ fp32 {fp32['d_mask_map']:+.4f}/{fp32['d_box_map']:+.4f}  Δ bf16 {bf16['d_mask_map']:+.4f}/{bf16['d_box_map']:+.4f}"
        f"  agreement {bf16['agreement']:.1%}  mask IoU {bf16['mask_iou']:.3f}"
        f"  infer {fp32['infer_ms']:.1f} → {bf16['infer_ms']:.1f} ms ({fp32['infer_ms'] / bf16['infer_ms']:.2f}x)"
        f"  predict p50 {fp32['p50_ms']:.1f} → {bf16['p50_ms']:.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", nargs="*", default=[], help="LABEL=PATH of more checkpoints")
    parser.add_argument("--data", type=Path, default=None, help="data YAML whose val split every model is judged on [default: see above]")
    parser.add_argument("--runs", type=int, default=30, help="timed single-image predict calls per artifact")
    parser.add_argument("--results", type=Path, default=RESULTS)
    args = parser.parse_args()

    from edgeseg.runtimes.backends.openvino import require_bf16, shared_core
    from edgeseg.runtimes.cpus import native_bf16

    require_bf16(shared_core(), "OpenVINO bf16")
    started = time.perf_counter()
    data = (args.data or default_data()).resolve()
    models = {"shipped-y11-e35": SHIPPED, **{f"y11-e{e}": early_checkpoint(e, data) for e in EARLY_EPOCHS}}
    models.update({label: Path(path) for label, path in (spec.split("=", 1) for spec in args.weights)})
    report = {
        "imgsz": IMGSZ, "data": str(data), "cpu_bf16": native_bf16(), "runs": args.runs,
        "models": {label: bench_model(label, path, data, args.runs) for label, path in models.items()},
        "seconds": None,
    }  # fmt: skip
    report["seconds"] = round(time.perf_counter() - started)
    save_report(report, args.results)
    print(json.dumps({label: format_model(label, m) for label, m in report["models"].items()}, indent=2))


if __name__ == "__main__":
    main()
