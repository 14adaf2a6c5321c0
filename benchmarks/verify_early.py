"""Does export verification pass exact exports of early checkpoints, and still refuse real drift on them?

Early models emit many overlapping boxes with nearly equal scores, so NMS keeps boxes that the
last bit of a score picks (docs/verification.md, "NMS near-ties"). This measures, on two synthetic
sets of other sizes and seeds (SETS) at imgsz 160 and 320:

* a train-free yolo11n-seg (fresh weights, seed 0) and yolo11n-seg trained 1, 2 and 5 epochs
  with ``edgeseg train``'s defaults (batch 8, as a user checking a pipeline would);
* each exported to ONNX fp32 and fp16 by ``export`` itself, verification on (its default images:
  the set's data YAML, whose val split is labelled), and the true mask ΔmAP of the artifact on
  the whole val split (``Runtime.val``);
* the drifts, each judged by ``verify`` against the unaltered model with the limits of its
  precision: the ``model.5`` conv's weights x1.5 (ONNX fp32), the letterbox padding 0 instead of
  114 and BGR instead of RGB (fed to the fp32 ONNX), and an OpenVINO int8 build calibrated on
  uniform noise images (int8 limits).

Writes benchmarks/results/verify_early.json and prints the table; ``acceptance`` holds the checks
of the brief: every fp32 export passes, every fp16 export whose true mask mAP drop is <= 0.01
passes, the trained model's int8 passes, every drift on the trained model is refused with a
reason, and how far the drifts that passed (on early models) moved what a user sees, at worst
(docs/verification.md, "What cannot be refused").

    .venv/bin/python benchmarks/verify_early.py [--sizes 160 320] [--sets a b]
"""

import argparse
import logging
import time
from pathlib import Path

import cv2
import numpy as np

import edgeseg
from edgeseg.data.synth import CLASS_NAMES, synthesize
from edgeseg.runtimes import Runtime, load
from edgeseg.runtimes.errors import EdgesegError
from edgeseg.targets import export
from edgeseg.targets.registry import target_entry
from edgeseg.targets.verify import TOLERANCES, verification_set, verify
from report import save_judgement
from verify_judgement import AlteredInput, bgr, scaled_checkpoint, zero_padding

ROOT = Path("runs/bench/verify_early")
RESULTS = Path(__file__).parent / "results" / "verify_early.json"
LOGGER = logging.getLogger("verify_early")
SETS = {"a": (16, 8, 1), "b": (128, 32, 2)}  # name: (train images, val images, seed)
EPOCHS = (0, 1, 2, 5)  # 0: train-free
# A trained model for the drift cases to be refused on: the shipped yolo11n-seg (35 epochs on 1024
# synthetic images of seed 1), judged on set b (seed 2) at 320.
TRAINED = Path(__file__).parents[1] / "weights" / "yolo11n-seg-synth320.pt"
BATCH = 8
CALIB = 16  # int8 calibration images (noise)
ALTERATIONS = {"pad 0": zero_padding, "bgr": bgr}


def dataset(name: str) -> Path:
    """The data YAML of ``SETS[name]``, synthesized under ROOT/data on first use."""
    n_train, n_val, seed = SETS[name]
    folder = ROOT / "data" / name
    if not (folder / "complete").exists():
        synthesize(folder, n_train, n_val, seed=seed, progress=False)
        (folder / "complete").touch()
    return (folder / "data.yaml").resolve()


def noise_dataset(n: int = CALIB) -> Path:
    """A data YAML whose ``n`` train and 2 val images are uniform noise (320 x 320, seed 0): a wrong calibration set."""
    folder = ROOT / "data" / "noise"
    if not (folder / "complete").exists():
        rng = np.random.default_rng(0)
        for split, count in (("train", n), ("val", 2)):
            (folder / "images" / split).mkdir(parents=True, exist_ok=True)
            for i in range(count):
                cv2.imwrite(str(folder / "images" / split / f"{i}.png"), rng.integers(0, 256, (320, 320, 3), np.uint8))
        names = "\n".join(f"  {i}: c{i}" for i in range(len(CLASS_NAMES)))
        (folder / "data.yaml").write_text(f"path: {folder.resolve()}\ntrain: images/train\nval: images/val\nnames:\n{names}\n")
        (folder / "complete").touch()
    return (folder / "data.yaml").resolve()


def checkpoint(set_name: str, imgsz: int, epochs: int | str) -> Path:
    """The model of ``set_name`` at ``imgsz`` after ``epochs`` epochs (0: train-free; "trained": TRAINED), cached under ROOT."""
    if epochs == "trained":
        return TRAINED
    name = f"{set_name}-{imgsz}-e{epochs}"
    path = ROOT / name / "weights" / "last.pt"
    if path.exists():
        return path
    if epochs == 0:
        import torch

        torch.manual_seed(0)
        model = edgeseg.Model("yolo11n-seg.yaml", names=list(CLASS_NAMES))
        model.imgsz = imgsz
        return model.save(path)
    edgeseg.Model("yolo11n-seg.yaml").train(
        str(dataset(set_name)), epochs=epochs, imgsz=imgsz, batch=BATCH, seed=0, workers=2,
        val=False, plots=False, project=str(ROOT), name=name, exist_ok=True,
    )  # fmt: skip
    return path


def row(case: dict, report: dict | None, error: str | None = None, true_drop: float | None = None) -> dict:
    """One result row: the case, the verdict and the detection counts of ``report`` (None: refused before a report)."""
    out = {**case, "passed": report["passed"] if report else False, "failures": report["failures"] if report else [error]}
    if report:
        out.update({
            "agreement": report["agreement"], "detections": report["detections"], "conf": report["conf"],
            "box_iou": report["box_iou"], "mask_iou": report["mask_iou"],
            "verify_d_map": (report["map"] or {}).get("delta"), "max_abs_diff": report["max_abs_diff"],
            "score_change_max": report["score_change"]["max"],
        })  # fmt: skip
    if true_drop is not None:
        out["true_mask_map_drop"] = true_drop
    return out


def model_rows(set_name: str, imgsz: int, epochs: int | str) -> list[dict]:
    """The fp32/fp16 rows and the drift rows of one model."""
    ckpt, data = checkpoint(set_name, imgsz, epochs), dataset(set_name)
    folder = ROOT / "artifacts" / f"{set_name}-{imgsz}-e{epochs}"
    folder.mkdir(parents=True, exist_ok=True)
    reference = load(ckpt)
    truth = reference.val(str(data), progress=False).seg.map
    model = {"set": set_name, "imgsz": imgsz, "epochs": epochs, "pt_mask_map": truth}
    rows, fp32 = [], None
    formats = [("onnx", "fp32", "m-fp32.onnx"), ("onnx", "fp16", "m-fp16.onnx")]
    if epochs == "trained":  # a legitimate int8 build must still pass
        formats.append(("openvino", "int8", "m-int8_openvino_model"))
    for target, precision, name in formats:
        case = {**model, "case": f"{target} {precision}"}
        settings = {"target": target, "precision": precision, "imgsz": imgsz, "data": str(data), "calib": 64}
        try:
            artifact = export(ckpt, **settings, out=folder / name)
            runtime = load(artifact.path)
            drop = truth - runtime.val(str(data), progress=False).seg.map
            rows.append(row(case, artifact.report, true_drop=drop))
            fp32 = runtime if precision == "fp32" else fp32
        except EdgesegError as exc:
            kept = export(ckpt, **settings, out=folder / f"kept-{name}", verify=False)
            drop = truth - load(kept.path).val(str(data), progress=False).seg.map
            rows.append(row(case, None, str(exc), true_drop=drop))
        LOGGER.info(format_row(rows[-1]))
    sample = verification_set(str(data), None)
    if fp32 is None:
        fp32 = load(export(ckpt, imgsz=imgsz, out=folder / "m-fp32-kept.onnx", verify=False).path)
    drifted = {
        "scaled conv, onnx fp32": ("fp32", load(export(scaled_checkpoint(ckpt, folder / "scaled.pt"), imgsz=imgsz, out=folder / "scaled.onnx", verify=False).path)),
        **{f"{label}, onnx fp32": ("fp32", Runtime(AlteredInput(fp32.backend, alter))) for label, alter in ALTERATIONS.items()},
        "noise calibration, openvino int8": ("int8", load(export(
            ckpt, target="openvino", precision="int8", imgsz=imgsz, data=str(noise_dataset()), calib=CALIB, verify=False, out=folder / "noise-int8_openvino_model"
        ).path)),
    }  # fmt: skip
    for label, (precision, runtime) in drifted.items():
        tolerance = target_entry("openvino" if "openvino" in label else "onnx", precision).tolerances.get(precision)
        report = verify(reference, runtime, sample.images, precision, None, tolerance, sample.labels)
        rows.append(row({**model, "case": f"drift: {label}", "drift": True}, report))
        LOGGER.info(format_row(rows[-1]))
    return rows


def format_row(r: dict) -> str:
    """One fixed-width table line."""
    verdict = "pass" if r["passed"] else "REFUSE"
    dets = r.get("detections") or {}
    ties = dets.get("tied", {})
    drop = r.get("true_mask_map_drop")
    return (
        f"{r['set']:<4}{r['imgsz']:>5}{r['epochs']:>8}  {r['case']:<36}{verdict:>7}  mask mAP {r['pt_mask_map']:.3f}"
        f"  true drop {'-' if drop is None else format(drop, '+.3f'):>6}  agree {r.get('agreement', 0):.1%}"
        f"  ties {ties.get('reference', '-')}/{ties.get('artifact', '-')}  max|Δ| {(r.get('max_abs_diff') or {}).get('preds', float('nan')):.1e}"
        f"  {'; '.join(r['failures'])[:140]}"
    )


def worst_passed_drift(drift: list[dict]) -> dict:
    """How far the passed drift rows moved what a user sees, at worst: the lowest agreement and mask IoU p5, the largest raw box and score change."""
    passed = [r for r in drift if r["passed"]]
    if not passed:
        return {}
    return {
        "rows": len(passed),
        "agreement_min": min(r["agreement"] for r in passed),
        "mask_iou_p5_min": min((r["mask_iou"]["p5"] for r in passed if r["mask_iou"]["p5"] is not None), default=None),
        "boxes_max_diff": max(r["max_abs_diff"]["boxes"] for r in passed),  # of the input size
        "scores_max_diff": max(r["max_abs_diff"]["scores"] for r in passed),
    }


def acceptance(rows: list[dict]) -> dict:
    """The brief's checks over the rows (see the module docstring)."""
    plain = [r for r in rows if not r.get("drift")]
    fp32 = [r for r in plain if r["case"] == "onnx fp32"]
    fp16 = [r for r in plain if r["case"] == "onnx fp16" and r["true_mask_map_drop"] <= 0.01]
    int8 = [r for r in plain if r["case"] == "openvino int8"]
    drift = [r for r in rows if r.get("drift")]
    trained = [r for r in drift if r["epochs"] == "trained"]
    return {
        "fp32_pass": f"{sum(r['passed'] for r in fp32)} of {len(fp32)}",
        "fp16_within_0.01_pass": f"{sum(r['passed'] for r in fp16)} of {len(fp16)}",
        "trained_int8_pass": f"{sum(r['passed'] for r in int8)} of {len(int8)}",
        "drift_refused_with_reason": f"{sum(not r['passed'] and bool(r['failures']) for r in drift)} of {len(drift)}",
        "drift_refused_on_trained": f"{sum(not r['passed'] and bool(r['failures']) for r in trained)} of {len(trained)}",
        "passed_drifts_at_worst": worst_passed_drift(drift),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", nargs="*", default=list(SETS), choices=list(SETS))
    parser.add_argument("--sizes", nargs="*", type=int, default=[160, 320])
    parser.add_argument("--epochs", nargs="*", type=int, default=list(EPOCHS))
    parser.add_argument("--no-trained", action="store_true", help="Skip the drift cases on the shipped trained model.")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("edgeseg").setLevel(logging.WARNING)  # export's own reports: the rows hold them
    LOGGER.setLevel(logging.INFO)
    start = time.perf_counter()
    rows = []
    for set_name in args.sets:
        for imgsz in args.sizes:
            for epochs in args.epochs:
                rows += model_rows(set_name, imgsz, epochs)
    if not args.no_trained:
        rows += model_rows("b", 320, "trained")
    print("\n".join(format_row(r) for r in rows))
    fields = {
        "sets": {k: dict(zip(("train", "val", "seed"), v)) for k, v in SETS.items()},
        "batch": BATCH,
        "tolerances": TOLERANCES,
    }
    save_judgement(fields, acceptance(rows), rows, start, args.out)


if __name__ == "__main__":
    main()
