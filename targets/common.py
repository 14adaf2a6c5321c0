"""What every target shares: the export job, atomic artifact writes, missing-extra messages, calibration images."""

import importlib.util
import logging
import os
import shutil
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeseg.runtimes.errors import EdgesegError
from edgeseg.runtimes.io.files import staging_folder
from edgeseg.runtimes.io.sources import SplitImages, split_images
from edgeseg.runtimes.meta.model_meta import ModelMeta
from edgeseg.runtimes.pipeline.preprocess import letterbox

LOGGER = logging.getLogger("edgeseg")


@dataclass
class ExportJob:
    """Everything a target's ``build(job)`` needs to write one artifact.

    Attributes:
        net: a private copy of the fused ``SegmentationNet`` in eval mode on ``device``; the
            target may change it (e.g. cast it to half). Its eval forward maps (B, 3, H, W) float
            RGB in [0, 1] to preds (B, 4 + nc + nm, A) and protos (B, nm, H / 4, W / 4).
        meta: the ModelMeta to embed (names, imgsz, stride, nm, batch, dynamic, precision,
            source_hash, version, outputs already filled in).
        path: where to write the artifact, a file or a folder; it lies in a private staging
            folder that the target may also use for scratch files.
        precision: ``fp32``, ``fp16``, ``bf16`` or ``int8``.
        imgsz: (height, width) of the model input, multiples of ``meta.stride``.
        batch: the static batch size, or 0 when ``dynamic``.
        dynamic: batch, height and width are free dimensions of the artifact.
        end2end: NMS in the graph was asked for.
        data: a data YAML for calibration (``data``, else the checkpoint's ``train_args`` data), or None.
        calib: number of calibration images.
        device: ``cpu``, ``cuda``, ``cuda:N`` or ``N``, as the user gave it.
        simplify: simplify the graph where the target can.
        opset: the ONNX opset for graph-based targets.
        platform: the chip a target compiles for (RKNN: ``rk3588`` …), else empty.
        verifier: set by a target whose artifact cannot run on this machine but has a stand-in
            that can (RKNN's simulator): a Backend that export verification uses instead of
            loading the artifact; the exporter calls its ``close()`` when done.
    """

    net: object
    meta: ModelMeta
    path: Path
    precision: str
    imgsz: tuple[int, int]
    batch: int
    dynamic: bool
    end2end: bool
    data: str | None
    calib: int
    device: str
    simplify: bool
    opset: int
    platform: str = ""
    verifier: object = None


def artifact_size(path: str | Path) -> int:
    """Bytes of a file, or of all files under a folder."""
    path = Path(path)
    if path.is_dir():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    return path.stat().st_size


@contextmanager
def atomic_output(dest: str | Path):
    """Stage an artifact (file or folder) beside ``dest`` and move it there only when the block succeeds.

    Yields ``<dest folder>/.<dest name>.<pid>.<random>/<dest name>``: the same name as ``dest``
    (so a runtime that picks its backend from the name loads it during the block), in the same
    folder (so the final ``os.replace`` is a rename on one file system). On normal exit the
    staged path replaces ``dest``; an existing folder at ``dest`` is replaced only when it is a
    previous artifact of the same layout (every path in it is also in the new one), so a user's
    folder is never deleted. On any exception, KeyboardInterrupt and SIGTERM under the CLI
    included, the staging folder is deleted and ``dest`` is left as it was; staging folders of
    killed runs are removed the next time ``dest`` is written (``edgeseg.runtimes.io.files.remove_stale``).

    Raises:
        EdgesegError: the block wrote nothing, or ``dest`` is a file or folder the artifact must
            not replace (nothing is changed then).
    """
    dest = Path(dest)
    staging = staging_folder(dest)
    staged = staging / dest.name
    try:
        yield staged
        if not staged.exists():
            raise EdgesegError(f"{dest}: the exporter wrote nothing")
        _check_replaceable(dest, staged)
        if dest.is_dir() and not dest.is_symlink():
            old = staging / ".replaced"
            os.replace(dest, old)
            try:
                os.replace(staged, dest)
            except BaseException:
                os.replace(old, dest)
                raise
        else:
            os.replace(staged, dest)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _tree(folder: Path) -> set[str]:
    """Relative paths of everything under ``folder`` (links not followed)."""
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def refuse_folder(dest: Path) -> None:
    """Raise EdgesegError when ``dest`` is an existing folder (not a link), which a file artifact must not replace."""
    if dest.is_dir() and not dest.is_symlink():
        raise EdgesegError(f"{dest}: is an existing folder; the artifact is a file: give a file path or a folder name not ending like the artifact")


def _check_replaceable(dest: Path, staged: Path) -> None:
    """Raise EdgesegError when putting ``staged`` at ``dest`` would destroy something that is not a previous artifact."""
    if not os.path.lexists(dest) or dest.is_symlink():
        return
    if not staged.is_dir():
        refuse_folder(dest)
    if staged.is_dir() and not dest.is_dir():
        raise EdgesegError(f"{dest}: is an existing file; the artifact is a folder: remove it or choose another --out")
    if staged.is_dir():
        foreign = sorted(_tree(dest) - _tree(staged))
        if foreign:
            raise EdgesegError(
                f"{dest}: is an existing folder holding files that are not part of this artifact "
                f"({', '.join(foreign[:3])}{', ...' if len(foreign) > 3 else ''}); remove them or choose another --out"
            )


@contextmanager
def missing_extra(extra: str):
    """Turn a ModuleNotFoundError of a third-party package into ``EdgesegError("... install edgeseg[extra]")``."""
    try:
        yield
    except ModuleNotFoundError as exc:
        if not exc.name or exc.name.split(".")[0] == "edgeseg":
            raise
        raise EdgesegError(f"this export needs the '{exc.name}' package: install edgeseg[{extra}]") from None


def calibration_set(data: str | Path | None, calib: int) -> SplitImages:
    """The first ``calib`` readable train images of the data YAML ``data`` (``split_images``), as read.

    Fewer than ``calib`` (the split is smaller) are used with a warning.

    Raises:
        EdgesegError: no data YAML, or a train split that is missing, empty or unreadable.
    """
    if data is None:
        raise EdgesegError(
            "int8 export needs calibration images: give --data DATA.yaml (its train split); "
            "the checkpoint names no training data"
        )
    try:
        found = split_images(data, "train", calib)
    except EdgesegError as exc:
        raise EdgesegError(f"int8 calibration: {exc}") from None
    if len(found.images) < calib:
        LOGGER.warning(
            f"int8 calibration: the train split of {found.yaml_file} has {len(found.images)} readable images, "
            f"fewer than --calib {calib}; using all of them"
        )
    else:
        LOGGER.info(f"int8 calibration on {len(found.images)} train images of {found.yaml_file}")
    return found


def calibration_images(job: "ExportJob") -> list[np.ndarray]:
    """``calibration_set``'s images letterboxed to ``job.imgsz`` (the runtime's ``letterbox``): N (H, W, 3) uint8 BGR.

    Raises:
        EdgesegError: as ``calibration_set``.
    """
    return [letterbox(image, job.imgsz)[0] for image in calibration_set(job.data, job.calib).images]


def side_python(env_var: str, venv: str, module: str, install: str) -> str:
    """The python of a converter that lives in its own venv (it pins packages edgeseg's venv cannot share).

    ``$env_var`` when set; else ``<venv>/bin/python`` in the current folder or the source tree;
    else this interpreter when it can import ``module``.

    Raises:
        EdgesegError: ``$env_var`` names no file, or none is found (the message says ``install``).
    """
    configured = os.environ.get(env_var)
    if configured:
        if not Path(configured).is_file():
            raise EdgesegError(f"{env_var}={configured}: no such python")
        return str(Path(configured).absolute())
    for root in (Path.cwd(), Path(__file__).resolve().parents[1]):
        candidate = root / venv / "bin" / "python"
        if candidate.is_file():
            return str(candidate)
    if importlib.util.find_spec(module) is not None:
        return sys.executable
    raise EdgesegError(f"{install}, and set {env_var} to its python")
