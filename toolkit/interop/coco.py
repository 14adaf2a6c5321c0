"""Convert COCO instance-segmentation annotations (JSON) into a YOLO-seg dataset (numpy + OpenCV, no torch).

Output layout (Ultralytics' and edgeseg's)::

    out/images/<split>/<file_name>     copies of (or links to) the images
    out/labels/<split>/<stem>.txt      one line per object: class x1 y1 x2 y2 ... (normalised)
    out/data.yaml                      path, train / val / test entries present, names

Each object becomes ONE polygon (YOLO-seg has one outline per object, no holes). COCO objects
can have several parts (an occluded car cut in two) given as several polygons or as an RLE
mask with several blobs; :data:`MERGE_MODES` says how they become one outline.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import yaml

from edgeseg.errors import EdgesegError
from edgeseg.runtimes.rle import rle_decode

LOGGER = logging.getLogger("edgeseg")

MERGE_MODES = ("merge", "largest")
SPLITS = ("train", "val", "test")
_SPLIT_IN_NAME = re.compile(r"(train|val|test)")


def infer_split(annotations_json: str | os.PathLike) -> str:
    """The split named in an annotation file's name (``instances_val2017.json`` -> ``val``); ``train`` if none."""
    match = _SPLIT_IN_NAME.search(Path(annotations_json).stem.lower())
    return match.group(1) if match else "train"


def merge_polygons(parts: list[np.ndarray]) -> np.ndarray:
    """Join the parts of one object into a single outline.

    The parts are linked into a tree by their shortest connections (Prim's minimum spanning
    tree over the distance between the nearest points of two parts). The outline walks once
    around each part and, at each link point, goes along the link to the next part, around
    it, and back the same way, so every link is a zero-width "there and back" segment.
    Filling the outline gives the parts plus a 1-px line along each link. This is the idea
    of Ultralytics' ``merge_multi_segment`` (which links the parts in their listed order);
    the spanning tree keeps the links short whatever the order.

    Args:
        parts: K >= 1 polygons, each (n_i, 2) float x, y in pixels.

    Returns:
        (sum n_i + 2 * (K - 1), 2) float64 pixel outline: every vertex of every part, plus
        both ends of each link once more (the way back).
    """
    parts = [np.asarray(p, np.float64).reshape(-1, 2) for p in parts]
    k = len(parts)
    if k == 1:
        return parts[0]
    dist = np.full((k, k), np.inf)
    nearest = np.zeros((k, k), np.int64)  # nearest[i, j]: index of the point of part i closest to part j
    for i in range(k):
        for j in range(i + 1, k):
            d2 = ((parts[i][:, None, :] - parts[j][None, :, :]) ** 2).sum(-1)
            a, b = np.unravel_index(np.argmin(d2), d2.shape)
            dist[i, j] = dist[j, i] = d2[a, b]
            nearest[i, j], nearest[j, i] = a, b
    attached: list[dict[int, list[int]]] = [{} for _ in range(k)]  # part -> {its point index: child parts}
    in_tree = np.zeros(k, bool)
    in_tree[0] = True
    for _ in range(k - 1):
        masked = np.where(in_tree[:, None] & ~in_tree[None, :], dist, np.inf)
        i, j = np.unravel_index(np.argmin(masked), masked.shape)
        attached[i].setdefault(int(nearest[i, j]), []).append(int(j))
        in_tree[j] = True

    def steps(i: int, entry: int):
        """Part i's points from ``entry`` around back to it; ``(child, entry)`` where a link leaves."""
        n = len(parts[i])
        for s in range(n + 1):
            v = (entry + s) % n
            yield parts[i][v]
            for child in attached[i].get(v, []) if s < n else []:
                yield child, int(nearest[child, i])
                yield parts[i][v]

    outline, stack = [], [steps(0, 0)]
    while stack:  # an explicit stack instead of recursion: chains of many parts stay shallow
        item = next(stack[-1], None)
        if item is None:
            stack.pop()
        elif isinstance(item, tuple):
            stack.append(steps(*item))
        else:
            outline.append(item)
    return np.array(outline[:-1])  # the root's last point repeats its first


def mask_polygons(mask: np.ndarray) -> list[np.ndarray]:
    """The outer contours of a binary mask (holes ignored): a list of (n, 2) float64 x, y pixel polygons, n >= 3."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return [c.reshape(-1, 2).astype(np.float64) for c in contours if len(c) >= 3]


def annotation_polygon(segmentation, height: int, width: int, merge: str = "merge") -> np.ndarray | None:
    """One polygon for a COCO ``segmentation`` (polygons, compressed or uncompressed RLE).

    Args:
        segmentation: a list of flat ``[x1, y1, x2, y2, ...]`` pixel polygons (or one such
            polygon), or an RLE dict ``{"size": [H, W], "counts": str | list}``.
        height, width: the image size in pixels (an RLE of another size is rejected).
        merge: ``"merge"`` joins all parts (:func:`merge_polygons`); ``"largest"`` keeps the
            part with the largest area.

    Returns:
        (n, 2) float64 x, y in pixels, n >= 3, or None when there is no usable part (malformed
        data included).
    """
    try:
        if isinstance(segmentation, list):
            if segmentation and not isinstance(segmentation[0], list):  # a single flat polygon
                segmentation = [segmentation]
            flat = [np.asarray(p, np.float64) for p in segmentation if isinstance(p, list)]
            parts = [p.reshape(-1, 2) for p in flat if p.size >= 6 and p.size % 2 == 0]
        elif isinstance(segmentation, dict) and "counts" in segmentation and "size" in segmentation:
            if [int(v) for v in segmentation["size"]] != [height, width]:
                return None
            parts = mask_polygons(rle_decode(segmentation))
        else:
            return None
    except (ValueError, TypeError, IndexError):
        return None
    if not parts:
        return None
    if merge == "largest":
        return max(parts, key=lambda p: abs(cv2.contourArea(p.astype(np.float32))))
    return merge_polygons(parts)


def _label_line(cls: int, polygon: np.ndarray, width: int, height: int) -> str:
    """``cls x1 y1 ...`` with coordinates divided by the image size, clipped to [0, 1], 6 decimals."""
    coords = (polygon / [width, height]).clip(0, 1).ravel()
    return " ".join([str(cls)] + [f"{v:.6f}" for v in coords])


def _read_coco(path: Path) -> dict:
    """The annotation JSON, checked for ``images`` and ``categories`` lists."""
    try:
        coco = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EdgesegError(f"{path}: not valid JSON ({str(exc).splitlines()[0]})") from None
    if not isinstance(coco, dict):
        raise EdgesegError(f"{path}: expected a COCO object with 'images', 'annotations' and 'categories'")
    for key in ("images", "categories"):
        if not isinstance(coco.get(key), list):
            raise EdgesegError(f"{path}: missing COCO '{key}' list")
    if not coco["categories"]:
        raise EdgesegError(f"{path}: 'categories' is empty")
    for img in coco["images"]:
        if not (isinstance(img, dict) and "id" in img and img.get("width") and img.get("height")):
            raise EdgesegError(f"{path}: image entry {str(img)[:80]} lacks an id, width or height")
    return coco


def _update_data_yaml(yaml_path: Path, split: str, names: dict[int, str], source: Path) -> dict:
    """Read ``data.yaml`` (if any), check its names equal ``names``, add ``split``; return the new mapping (unwritten)."""
    cfg = {}
    if yaml_path.is_file():
        try:
            cfg = yaml.safe_load(yaml_path.read_text(encoding="utf-8")) or {}
        except (yaml.YAMLError, UnicodeDecodeError):
            cfg = None
        if not isinstance(cfg, dict):
            raise EdgesegError(f"{yaml_path}: exists but is not a data YAML mapping; remove it or choose another folder")
        old = cfg.get("names")
        old = dict(enumerate(old)) if isinstance(old, list) else old
        if old and {int(k): str(v) for k, v in old.items()} != names:
            raise EdgesegError(
                f"{yaml_path}: its names differ from the categories of {source}; convert each dataset into its own folder"
            )
    cfg[split] = f"images/{split}"
    ordered = {"path": str(yaml_path.parent.resolve())}
    ordered.update({s: cfg[s] for s in SPLITS if cfg.get(s)})
    ordered.update({k: v for k, v in cfg.items() if k not in ("path", "names", "nc", *SPLITS)})
    ordered["names"] = names
    return ordered


def _place_image(src: Path, dst: Path, copy: bool) -> None:
    """Copy ``src`` to ``dst``, or link it there (an absolute symbolic link) when not ``copy``."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists() and os.path.samefile(src, dst):
        return
    if dst.is_symlink() or dst.exists():
        dst.unlink()
    if copy:
        shutil.copyfile(src, dst)
    else:
        dst.symlink_to(src.resolve())


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
    label file; annotations of unknown images or categories, or without a usable polygon,
    and images missing from ``images_dir`` are skipped. Every such case is counted in one
    summary log line on the ``edgeseg`` logger. Coordinates are divided by the image's
    width / height, clipped to [0, 1] and written with 6 decimals.

    Raises:
        EdgesegError: missing file or folder, unreadable JSON, an unknown ``split`` /
            ``merge``, or an existing ``data.yaml`` with other class names.
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
    coco = _read_coco(ann_path)
    category_ids = sorted({int(c["id"]) for c in coco["categories"]})
    class_of = {cid: i for i, cid in enumerate(category_ids)}
    names = dict(sorted((class_of[int(c["id"])], str(c["name"])) for c in coco["categories"]))
    yaml_path = out / "data.yaml"
    data_cfg = _update_data_yaml(yaml_path, split, names, ann_path)

    images = {img["id"]: img for img in coco["images"]}
    counts = Counter()
    objects: dict[int, list[str]] = {image_id: [] for image_id in images}
    for ann in coco.get("annotations") or []:
        img = images.get(ann.get("image_id"))
        if ann.get("iscrowd"):
            counts["crowd"] += 1
        elif img is None:
            counts["no_image"] += 1
        elif ann.get("category_id") not in class_of:
            counts["unknown_category"] += 1
        else:
            width, height = int(img["width"]), int(img["height"])
            polygon = annotation_polygon(ann.get("segmentation"), height, width, merge)
            if polygon is None:
                counts["no_polygon"] += 1
            else:
                objects[img["id"]].append(_label_line(class_of[ann["category_id"]], polygon, width, height))

    for image_id, img in images.items():
        rel = Path(str(img.get("file_name", "")))
        src = images_dir / rel
        if rel.is_absolute() or ".." in rel.parts or not src.is_file():
            counts["missing_image_files"] += 1
            continue
        _place_image(src, out / "images" / split / rel, copy_images)
        label = (out / "labels" / split / rel).with_suffix(".txt")
        label.parent.mkdir(parents=True, exist_ok=True)
        lines = objects[image_id]
        label.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
        counts["images"] += 1
        counts["objects"] += len(lines)
        counts["empty_images"] += not lines

    out.mkdir(parents=True, exist_ok=True)
    yaml_path.write_text(yaml.safe_dump(data_cfg, sort_keys=False, allow_unicode=True), encoding="utf-8")
    LOGGER.info(
        f"{ann_path.name} -> {out} ({split}): {counts['images']} images ({counts['empty_images']} without objects), "
        f"{counts['objects']} objects in {len(names)} classes; skipped {counts['crowd']} crowd annotations, "
        f"{counts['no_image']} annotations of unknown images, {counts['unknown_category']} of unknown categories, "
        f"{counts['no_polygon']} without a usable polygon, {counts['missing_image_files']} images missing from {images_dir}"
    )
    missing = [s for s in ("train", "val") if s not in data_cfg]
    if missing:
        LOGGER.info(f"{yaml_path}: no {' or '.join(missing)} split yet; convert those annotations into the same folder")
    return yaml_path
