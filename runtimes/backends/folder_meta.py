"""The ModelMeta as ``edgeseg.json`` beside the model files, for folder artifacts whose files have no room for it (NCNN, RKNN).

The plain keys the YOLO ecosystem reads go beside it as ``metadata.yaml`` (``edgeseg.runtimes.meta.plain_keys``); a folder with
only those (an Ultralytics export) is read from them.
"""

import json
from pathlib import Path

from edgeseg.runtimes.errors import EdgesegError
from edgeseg.runtimes.io.yaml_safe import load_yaml
from edgeseg.runtimes.meta.limits import MAX_METADATA_BYTES
from edgeseg.runtimes.meta.model_meta import ModelMeta
from edgeseg.runtimes.meta.plain_keys import SIDECAR, meta_from_map, write_sidecar

META_FILE = "edgeseg.json"


def read_folder_meta(folder: Path, holds: str) -> ModelMeta:
    """The ModelMeta of ``folder/edgeseg.json``, else of the plain keys in ``folder/metadata.yaml`` (an Ultralytics export).

    Args:
        folder: the artifact folder.
        holds: what such a folder holds, for the message when neither file is there (e.g. ``model.rknn``).

    Raises:
        EdgesegError: neither file, or one that is too large or unreadable.
    """
    meta_path = folder / META_FILE
    if not meta_path.is_file():
        sidecar = folder / SIDECAR
        if sidecar.is_file():
            values = load_yaml(sidecar)
            meta = meta_from_map(values, sidecar) if isinstance(values, dict) else None
            if meta is not None:
                return meta
        raise EdgesegError(f"{folder}: no {META_FILE} and no {SIDECAR} with names and imgsz (such a folder holds {holds} and {META_FILE})")
    if meta_path.stat().st_size > MAX_METADATA_BYTES:
        raise EdgesegError(f"{meta_path}: {meta_path.stat().st_size} bytes of metadata (at most {MAX_METADATA_BYTES})")
    try:
        return ModelMeta.from_json(meta_path.read_bytes())
    except (ValueError, UnicodeDecodeError) as exc:
        raise EdgesegError(f"{meta_path}: unreadable edgeseg metadata ({exc})") from None


def write_folder_meta(folder: Path, meta: ModelMeta) -> None:
    """Write ``folder/edgeseg.json`` (indented, readable by a person) and the plain keys' ``metadata.yaml`` beside it."""
    (folder / META_FILE).write_text(json.dumps(json.loads(meta.to_json()), indent=1) + "\n")
    write_sidecar(folder, meta)
