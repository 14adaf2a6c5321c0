"""Convert COCO instance-segmentation annotations (JSON) into a YOLO-seg dataset (numpy + OpenCV, no torch).

Output layout (Ultralytics' and edgeseg's)::

    out/images/<split>/<file_name>     copies of (or links to) the images
    out/labels/<split>/<stem>.txt      one line per object: class x1 y1 x2 y2 ... (normalised)
    out/data.yaml                      path, train / val / test entries present, names

Each object becomes ONE polygon (YOLO-seg has one outline per object, no holes). COCO objects
can have several parts (an occluded car cut in two) given as several polygons or as an RLE
mask with several blobs; :data:`MERGE_MODES` says how they become one outline (``coco_geometry``).

A crafted annotation file gets one error line or counted skips, never a traceback: the file
is refused over ``coco_json.MAX_COCO_JSON_BYTES`` before it is read; malformed ``images`` /
``categories`` entries are errors; annotations that are malformed, of images over
``MAX_IMAGE_PIXELS`` (their RLE would be that large), or of more than :data:`MAX_OBJECT_PARTS`
parts / :data:`MAX_OBJECT_POINTS` points (merging is quadratic in points) are skipped and
counted. Output files are written only inside the output folder, through new files renamed
into place.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import yaml

from edgeseg.interop.coco_geometry import MAX_OBJECT_PARTS, MAX_OBJECT_POINTS, ObjectTooComplex, annotation_polygon
from edgeseg.interop.coco_json import coco_categories, coco_images, entry_id, read_coco
from edgeseg.runtimes.errors import EdgesegError
from edgeseg.runtimes.io.files import atomic_write, ensure_folder, staging_prefix
from edgeseg.runtimes.io.images import MAX_IMAGE_PIXELS
from edgeseg.runtimes.io.yaml_safe import load_yaml

LOGGER = logging.getLogger("edgeseg")

MERGE_MODES = ("merge", "largest")
SPLITS = ("train", "val", "test")
_SPLIT_IN_NAME = re.compile(r"(train|val|test)")


def infer_split(annotations_json: str | os.PathLike) -> str:
    """The split named in an annotation file's name (``instances_val2017.json`` -> ``val``); ``train`` if none."""
    match = _SPLIT_IN_NAME.search(Path(annotations_json).stem.lower())
    return match.group(1) if match else "train"


def _label_line(cls: int, polygon: np.ndarray, width: int, height: int) -> str:
    """``cls x1 y1 ...`` with coordinates divided by the image size, clipped to [0, 1], 6 decimals."""
    coords = (polygon / [width, height]).clip(0, 1).ravel()
    return " ".join([str(cls)] + [f"{v:.6f}" for v in coords])


def _update_data_yaml(yaml_path: Path, split: str, names: dict[int, str], source: Path) -> dict:
    """Read ``data.yaml`` (if any), check its names equal ``names``, add ``split``; return the new mapping (unwritten)."""
    cfg = {}
    if yaml_path.is_file():
        cfg = load_yaml(yaml_path) or {}
        if not isinstance(cfg, dict):
            raise EdgesegError(f"{yaml_path}: exists but is not a data YAML mapping; remove it or choose another folder")
        old = cfg.get("names")
        old = dict(enumerate(old)) if isinstance(old, list) else old
        try:
            differ = bool(old) and {int(k): str(v) for k, v in old.items()} != names
        except (AttributeError, TypeError, ValueError):
            differ = True
        if differ:
            raise EdgesegError(
                f"{yaml_path}: its names differ from the categories of {source}; convert each dataset into its own folder"
            )
    cfg[split] = f"images/{split}"
    ordered = {"path": str(yaml_path.parent.resolve())}
    ordered.update({s: cfg[s] for s in SPLITS if cfg.get(s)})
    ordered.update({k: v for k, v in cfg.items() if k not in ("path", "names", "nc", *SPLITS)})
    ordered["names"] = names
    return ordered


def _source_file(images_dir: Path, file_name) -> Path | None:
    """``images_dir / file_name`` when ``file_name`` is a relative path inside it naming a regular file, else None."""
    if not isinstance(file_name, str) or not file_name or "\0" in file_name:
        return None
    rel = Path(file_name)
    if rel.is_absolute() or ".." in rel.parts:
        return None
    src = images_dir / rel
    try:
        return src if src.is_file() else None
    except OSError:
        return None


def _inside(folder: Path, root: str) -> bool:
    """True when ``folder`` (links in it followed, created or not) lies in ``root`` (a real path)."""
    real = os.path.realpath(folder)
    return real == root or real.startswith(root + os.sep)


def _output_folder(folder: Path, root: str) -> Path:
    """Create ``folder`` after checking that it stays inside the output root ``root`` (a real path).

    Raises:
        EdgesegError: a symbolic link (or ``..``) leads it outside ``root``, or it cannot be created.
    """
    if not _inside(folder, root):
        raise EdgesegError(f"{folder}: leads outside the output folder {root} (a symbolic link?); not writing there")
    return ensure_folder(folder)


def _replace_with_link(dst: Path, target: Path) -> None:
    """Create or replace ``dst`` with a symbolic link to ``target``, made under a random name and renamed over ``dst``."""
    tmp = dst.with_name(staging_prefix(dst) + secrets.token_hex(4))
    os.symlink(target, tmp)
    try:
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _place_image(src: Path, dst: Path, copy: bool) -> None:
    """Copy ``src`` to ``dst``, or link it there (an absolute symbolic link) when not ``copy``; ``dst``'s folder exists."""
    if os.path.lexists(dst) and os.path.isfile(dst) and os.path.samefile(src, dst):
        return
    if copy:
        with open(src, "rb") as source:
            atomic_write(dst, lambda f: shutil.copyfileobj(source, f, 1 << 20), bulk=True)
    else:
        _replace_with_link(dst, src.resolve())


def _write_outputs(image: tuple[Path, Path, Path, str], copy: bool, root: str) -> None:
    """Place one image and write its label text (``(src, image dst, label dst, text)``), inside the output root.

    Raises:
        EdgesegError: a destination leads outside the output root or cannot be written.
    """
    src, dst, label, text = image
    try:
        _output_folder(dst.parent, root)
        _place_image(src, dst, copy)
        _output_folder(label.parent, root)
        atomic_write(label, lambda f: f.write(text.encode("utf-8")), bulk=True)
    except OSError as exc:
        raise EdgesegError(f"{exc.filename or dst}: cannot be written ({exc.strerror or exc})") from None


def convert_coco(
    annotations_json: str | os.PathLike,
    images_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    split: str | None = None,
    merge: str = "merge",
    copy_images: bool = True,
) -> Path:
    """Convert one COCO annotation file (one split) into YOLO-seg labels and a data YAML.

    Call it once per split (``instances_train2017.json``, then ``instances_val2017.json``)
    with the same ``out_dir``: each call adds its split to the folder and to ``data.yaml``.

    Multi-part objects: ``merge="merge"`` (the default) joins every part into one outline
    with zero-width links (:func:`merge_polygons`), so the training mask covers all the
    visible pieces of an occluded object, as datasets converted by Ultralytics do;
    ``"largest"`` keeps only the biggest part, which drops the other pieces from the mask
    (they then count as background) but never draws the 1-px link lines. RLE masks are
    traced with OpenCV (outer contours) and merged the same way.

    Args:
        annotations_json: COCO JSON with ``images`` (id, file_name, width, height),
            ``annotations`` (image_id, category_id, segmentation, iscrowd) and ``categories``
            (id, name).
        images_dir: folder the ``file_name`` entries are relative to.
        out_dir: dataset folder to write (created; shared by all splits).
        split: ``train``, ``val`` or ``test``; default: from the JSON file name, else ``train``.
        merge: ``"merge"`` or ``"largest"`` (above).
        copy_images: copy the images; False links them (symbolic links: no extra disk space,
            the source folder must stay).

    Returns:
        The data YAML path (``out_dir/data.yaml``), with ``path`` (absolute), one entry per
        converted split and ``names``: COCO category ids sorted ascending map to class ids
        0..nc-1, names kept.

    Crowd annotations (``iscrowd=1``) are skipped; images without annotations get an empty
    label file; annotations that are not JSON objects, of unknown images or categories, of
    images over MAX_IMAGE_PIXELS, without a usable polygon (malformed data included), or with
    more than MAX_OBJECT_PARTS parts / MAX_OBJECT_POINTS points, and images missing from
    ``images_dir`` or over MAX_IMAGE_PIXELS are skipped. Every such case is counted in one
    summary log line on the ``edgeseg`` logger. Coordinates are divided by the image's
    width / height, clipped to [0, 1] and written with 6 decimals. Every file is written
    through a new file of a random name renamed into place, only inside ``out_dir`` (a
    symbolic link in it leading elsewhere is an error, a link at a file's name is replaced).

    Raises:
        EdgesegError: missing file or folder, an annotation file over MAX_COCO_JSON_BYTES or
            not valid JSON, malformed ``images`` / ``categories`` entries, an unknown ``split``
            / ``merge``, an existing ``data.yaml`` with other class names, or an output path
            that leads outside ``out_dir`` or cannot be written.
    """
    ann_path, images_dir, out = Path(annotations_json), Path(images_dir), Path(out_dir)
    split = split or infer_split(ann_path)
    if split not in SPLITS:
        raise EdgesegError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if merge not in MERGE_MODES:
        raise EdgesegError(f"merge must be one of {', '.join(MERGE_MODES)}, got {merge!r}")
    if not ann_path.is_file():
        raise EdgesegError(f"{ann_path}: annotation file not found")
    if not images_dir.is_dir():
        raise EdgesegError(f"{images_dir}: images folder not found")
    coco = read_coco(ann_path)
    class_of, names = coco_categories(coco, ann_path)
    images = coco_images(coco, ann_path)
    yaml_path = out / "data.yaml"
    data_cfg = _update_data_yaml(yaml_path, split, names, ann_path)

    counts = Counter()
    objects = _label_lines(coco.get("annotations") or [], images, class_of, merge, counts)
    root = os.path.realpath(ensure_folder(out))
    for image_id, (file_name, width, height) in images.items():
        src = _source_file(images_dir, file_name)
        if width * height > MAX_IMAGE_PIXELS:
            counts["large_images"] += 1
        elif src is None:
            counts["missing_image_files"] += 1
        else:
            rel = Path(file_name)
            lines = objects.get(image_id, [])
            label = (out / "labels" / split / rel).with_suffix(".txt")
            text = "".join(f"{line}\n" for line in lines)
            _write_outputs((src, out / "images" / split / rel, label, text), copy_images, root)
            counts["images"] += 1
            counts["objects"] += len(lines)
            counts["empty_images"] += not lines

    dumped = yaml.safe_dump(data_cfg, sort_keys=False, allow_unicode=True).encode("utf-8")
    try:
        atomic_write(yaml_path, lambda f: f.write(dumped))
    except OSError as exc:
        raise EdgesegError(f"{yaml_path}: cannot be written ({exc.strerror or exc})") from None
    LOGGER.info(
        f"{ann_path.name} -> {out} ({split}): {counts['images']} images ({counts['empty_images']} without objects), "
        f"{counts['objects']} objects in {len(names)} classes; skipped {counts['crowd']} crowd annotations, "
        f"{counts['no_image']} annotations of unknown images, {counts['unknown_category']} of unknown categories, "
        f"{counts['no_polygon']} without a usable polygon, {counts['too_complex']} too complex "
        f"(over {MAX_OBJECT_PARTS} parts or {MAX_OBJECT_POINTS} points), {counts['malformed']} malformed, "
        f"{counts['large_image_objects']} of images over {MAX_IMAGE_PIXELS:,} pixels; "
        f"{counts['missing_image_files']} images missing from {images_dir}, "
        f"{counts['large_images']} over {MAX_IMAGE_PIXELS:,} pixels"
    )
    missing = [s for s in ("train", "val") if s not in data_cfg]
    if missing:
        LOGGER.info(f"{yaml_path}: no {' or '.join(missing)} split yet; convert those annotations into the same folder")
    return yaml_path


def _label_lines(annotations: list, images: dict, class_of: dict[int, int], merge: str, counts: Counter) -> dict:
    """``{image id: [label line, ...]}`` of the usable annotations; every skipped one is counted in ``counts`` by reason."""
    objects: dict = {}
    for ann in annotations:
        if not isinstance(ann, dict):
            counts["malformed"] += 1
            continue
        image = images.get(entry_id(ann.get("image_id")))
        category = entry_id(ann.get("category_id"))
        if ann.get("iscrowd"):
            counts["crowd"] += 1
        elif image is None:
            counts["no_image"] += 1
        elif category not in class_of:
            counts["unknown_category"] += 1
        elif image[1] * image[2] > MAX_IMAGE_PIXELS:
            counts["large_image_objects"] += 1
        else:
            _, width, height = image
            try:
                polygon = annotation_polygon(ann.get("segmentation"), height, width, merge)
            except ObjectTooComplex:
                counts["too_complex"] += 1
                continue
            if polygon is None:
                counts["no_polygon"] += 1
            else:
                objects.setdefault(ann["image_id"], []).append(_label_line(class_of[category], polygon, width, height))
    return objects
