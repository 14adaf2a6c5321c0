"""Reading and checking a COCO annotation file: its size, its JSON, and its ``categories`` and ``images`` entries."""

from __future__ import annotations

import json
import math
from pathlib import Path

from edgeseg.runtimes.errors import EdgesegError, is_int, quoted
from edgeseg.runtimes.io.capped import FileLimitError, open_user_file
from edgeseg.runtimes.meta.limits import MAX_CLASSES, MAX_NAME_CHARS

MAX_COCO_JSON_BYTES = 2 << 30  # bytes (2 GiB; LVIS v1 train is 1.1 GB): larger annotation files are refused unread


def entry_id(value) -> int | str | None:
    """An image / category id as written (an int or a string), or None for any other JSON value."""
    return value if is_int(value) or isinstance(value, str) else None


def _pixels(value) -> int | None:
    """A width / height as a positive int (integral floats such as 640.0 accepted), or None."""
    if is_int(value) and value > 0:
        return value
    if isinstance(value, float) and math.isfinite(value) and value == int(value) and value > 0:
        return int(value)
    return None


def read_coco(path: Path) -> dict:
    """The annotation JSON (at most MAX_COCO_JSON_BYTES), checked for ``images``, ``categories`` and ``annotations`` lists.

    The first bytes must open a JSON object before the whole file is read.
    """
    try:
        f, size = open_user_file(path, MAX_COCO_JSON_BYTES, "annotation file")
    except FileLimitError as exc:
        raise EdgesegError(f"{path}: {exc}") from None
    with f:
        if f.read(1 << 16).lstrip(b" \t\r\n\xef\xbb\xbf")[:1] != b"{":
            raise EdgesegError(f"{path}: not a COCO annotation file (no JSON object at its start)")
        f.seek(0)
        data = f.read(size)
    try:
        coco = json.loads(data)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, bad UTF-8, an int of too many digits, deep nesting
        raise EdgesegError(f"{path}: not valid JSON ({str(exc).splitlines()[0][:200]})") from None
    except MemoryError:
        raise EdgesegError(f"{path}: too large to load ({size:,} bytes)") from None
    if not isinstance(coco, dict):
        raise EdgesegError(f"{path}: expected a COCO object with 'images', 'annotations' and 'categories'")
    for key in ("images", "categories"):
        if not isinstance(coco.get(key), list):
            raise EdgesegError(f"{path}: missing COCO '{key}' list")
    if not coco["categories"]:
        raise EdgesegError(f"{path}: 'categories' is empty")
    if not isinstance(coco.get("annotations") or [], list):
        raise EdgesegError(f"{path}: COCO 'annotations' must be a list")
    return coco


def coco_categories(coco: dict, path: Path) -> tuple[dict[int, int], dict[int, str]]:
    """``{category id: class id}`` (ids sorted ascending -> 0..nc-1) and ``{class id: name}``.

    Raises:
        EdgesegError: a category without an integer ``id`` or a text ``name`` (numbers allowed),
            a repeated id, a name over MAX_NAME_CHARS, or more than MAX_CLASSES categories.
    """
    found: dict[int, str] = {}
    for cat in coco["categories"]:
        ok = isinstance(cat, dict) and is_int(cat.get("id")) and isinstance(cat.get("name"), (str, int, float))
        if not ok or isinstance(cat.get("name"), bool):
            raise EdgesegError(f"{path}: category {quoted(cat)} needs an integer 'id' and a 'name'")
        if cat["id"] in found:
            raise EdgesegError(f"{path}: category id {cat['id']} appears twice")
        name = str(cat["name"])
        if len(name) > MAX_NAME_CHARS:
            raise EdgesegError(f"{path}: category {cat['id']} has a name of {len(name)} characters (limit {MAX_NAME_CHARS})")
        found[cat["id"]] = name
    if len(found) > MAX_CLASSES:
        raise EdgesegError(f"{path}: {len(found)} categories, more than {MAX_CLASSES}")
    class_of = {cid: i for i, cid in enumerate(sorted(found))}
    return class_of, {class_of[cid]: name for cid, name in sorted(found.items())}


def coco_images(coco: dict, path: Path) -> dict:
    """``{image id: (file_name, width, height)}``.

    Raises:
        EdgesegError: an entry without an integer or text ``id`` and positive integer
            ``width`` and ``height``, or a repeated id.
    """
    images = {}
    for img in coco["images"]:
        image_id = entry_id(img.get("id")) if isinstance(img, dict) else None
        width, height = (_pixels(img.get("width")), _pixels(img.get("height"))) if isinstance(img, dict) else (None, None)
        if image_id is None or width is None or height is None:
            raise EdgesegError(f"{path}: image entry {quoted(img)} lacks an id, width or height (positive integers)")
        if image_id in images:
            raise EdgesegError(f"{path}: image id {quoted(image_id)} appears twice")
        images[image_id] = (img.get("file_name"), width, height)
    return images
