"""Runtime-only install check: an exported model runs predict, track (images and a video, with zone counts), val and save where torch is not installed.

    python tests/runtime_only_check.py model.onnx

A ``.pt`` of the same stem beside it, when there is one, must be refused with the extra to install.

``make runtime-check`` runs it in ``.venv-runtime`` (``pip install .``, no extras). pytest does
not collect this file (its name does not start with ``test_``).
"""

import sys
import tempfile
from pathlib import Path

import edgeseg.runtimes
from edgeseg.data.synth import synthesize
from edgeseg.data.synth_clip import write_clip
from edgeseg.runtimes.errors import EdgesegError
from edgeseg.runtimes.tracking import LineZone, TrackerSettings, ZoneCounter

CLIP_FRAMES = 20


def main(model: str) -> None:
    """Predict on, track through, save and validate ``model`` over a 4-image synthetic val split, track a generated clip; fail if torch was imported."""
    with tempfile.TemporaryDirectory() as tmp:
        data = synthesize(tmp, n_train=1, n_val=4, progress=False)
        runtime = edgeseg.runtimes.load(model)
        results = list(runtime.predict(Path(tmp) / "images" / "val"))
        folder = edgeseg.runtimes.save_results(results, Path(tmp) / "predict", txt=True, coco=True)
        saved = sorted(p.name for p in folder.iterdir())
        metrics = runtime.val(data, progress=False)
        tracked = list(runtime.track(Path(tmp) / "images" / "val"))
        image_tracks = runtime.last_tracks.get("images")
        clip = write_clip(Path(tmp) / "clip", n_frames=CLIP_FRAMES)
        counter = ZoneCounter([LineZone((240, 0), (240, 320), "middle")])
        frames = 0
        for result in runtime.track(clip, tracker=TrackerSettings(association="mask")):
            counter.update(result)
            frames += 1
        clip_tracks = runtime.last_tracks.get(str(clip))
    assert frames == CLIP_FRAMES and clip_tracks is not None, f"tracked {frames} clip frames, tracks {list(runtime.last_tracks)}"
    assert str(clip) in counter.counts, "the zone counter saw no clip frame"
    assert all(r.track_ids is not None for r in tracked) and image_tracks is not None, "track gave no ids"
    assert len(results) == 4, f"expected 4 results, got {len(results)}"
    assert len(saved) == 6 and "predictions.json" in saved and "labels" in saved, f"saved {saved}"
    assert metrics.seg.seen == 4, f"val saw {metrics.seg.seen} images, expected 4"
    checkpoint = Path(model).with_suffix(".pt")
    if checkpoint.is_file():
        try:
            edgeseg.runtimes.load(checkpoint)
        except EdgesegError as exc:
            assert "install edgeseg[train]" in str(exc), f"unexpected message for a .pt: {exc}"
        else:
            raise AssertionError(f"{checkpoint} loaded without torch")
    assert "torch" not in sys.modules, "torch was imported"
    print(
        f"runtime-only check passed: {runtime!r}; predict: {len(results)} images, "
        f"{sum(map(len, results))} detections, saved {len(saved)} entries; track: {len(tracked)} images, {frames} clip frames "
        f"({len(clip_tracks)} tracks, mask association, line counts {counter.counts[str(clip)]['middle']}); "
        f"val: 4 images, mask mAP50-95 {metrics.seg.map:.3f}; torch not imported"
    )


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
