"""Writing committed objects to a file the user chose: COCO instances json or a label image.

Qt-free (the widget asks before replacing a file and runs this on a worker). Nothing is
overwritten unless ``overwrite`` is given, and a missing folder is an error, not created.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .export import labels_to_coco

SUFFIXES = (".json", ".tif", ".tiff", ".png")


class ObjectFileError(ValueError):
    """The objects cannot be written where or how the user asked."""


def check_target(path: str | Path, overwrite: bool = False) -> Path:
    """The path, or one clear error: unknown format, missing folder, existing file, directory."""
    path = Path(path).expanduser()
    if str(path) in ("", "."):
        raise ObjectFileError("choose a file to export to (.json, .tif or .png)")
    if path.suffix.lower() not in SUFFIXES:
        raise ObjectFileError(f"cannot write {path.name!r}: use .json (COCO instances), .tif/.tiff or .png "
                              "(label image)")
    if path.is_dir():
        raise ObjectFileError(f"{path} is a folder: give a file name")
    if not path.parent.is_dir():
        raise ObjectFileError(f"the folder {path.parent} does not exist")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists")
    return path


def write_objects(path: str | Path, labels: np.ndarray, image_name: str, overwrite: bool = False) -> Path:
    """Write ``labels`` (instance ids) to ``path``; COCO ``file_name`` is the image's name.
    Written to a temporary file first, so a failure never leaves half a file behind."""
    labels = np.asarray(labels)
    if labels.ndim < 2 or labels.size == 0:
        raise ObjectFileError(f"labels must be a 2-D image or a stack of them, got shape {labels.shape}")
    if not (np.issubdtype(labels.dtype, np.integer) or labels.dtype == bool):
        raise ObjectFileError(f"labels must be integer object ids, got {labels.dtype} (a label image is never "
                              "written by rounding)")
    if labels.min() < 0:
        raise ObjectFileError("labels must be non-negative object ids (0 = background)")
    path = check_target(path, overwrite)
    suffix = path.suffix.lower()
    tmp = path.with_name(f".{path.name}.part")
    try:
        if suffix == ".json":
            tmp.write_text(json.dumps(labels_to_coco(labels, name=image_name)))
        elif suffix == ".png":
            if labels.ndim != 2:
                raise ObjectFileError("a .png holds one 2-D label image: export a stack as .tif or .json")
            if labels.max(initial=0) > 65535 or labels.min(initial=0) < 0:
                raise ObjectFileError("object ids above 65535 do not fit a 16-bit .png: use .tif or .json")
            from PIL import Image  # noqa: PLC0415

            Image.fromarray(labels.astype(np.uint16)).save(tmp, format="PNG")
        else:
            import tifffile  # noqa: PLC0415

            if labels.max() > np.iinfo(np.int64).max:
                raise ObjectFileError("object ids above 2**63 - 1 do not fit a label .tif: relabel them 1..N")
            tifffile.imwrite(tmp, labels.astype(np.int32 if labels.max(initial=0) < 2**31 else np.int64))
        os.replace(tmp, path)
    except OSError as exc:
        raise ObjectFileError(f"could not write {path}: {exc.strerror or exc}") from exc
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
