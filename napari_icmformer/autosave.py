"""Save as you go: the objects of every image of a series, on disk after each commit.

A save folder holds one series and nothing else of the user's::

    <folder>/icmformer-series.json      manifest: the image files, the current image
    <folder>/labels/0003_<stem>.tif     one label image per annotated image (the truth on resume)
    <folder>/objects.json               COCO instances of the whole series (pycocotools RLE)

Every file is written whole to a temporary file in the same folder, flushed to disk and renamed
over the old one (``os.replace``), so killing the process at any moment leaves each file either
as it was or as it is now, never half written. A folder that holds anything else is refused:
the user's files are never overwritten or mixed with ours.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from pathlib import Path

import numpy as np

from .export import labels_to_coco

MANIFEST = "icmformer-series.json"
COCO_NAME = "objects.json"
LABELS_DIR = "labels"
FORMAT = "napari-icmformer series"
VERSION = 1


class AutosaveError(ValueError):
    """The save folder cannot be used (someone else's files, unreadable, not writable)."""


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """``data`` as the whole content of ``path``: written to ``.<name>.part`` beside it, flushed
    to disk, then renamed over it. An interrupted write leaves the old file (or none)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.part")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise AutosaveError(f"could not write {path}: {exc.strerror or exc}") from exc
    with contextlib.suppress(OSError):  # the rename itself on disk (POSIX; not needed elsewhere)
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def label_bytes(labels: np.ndarray) -> bytes:
    """A label image as tif bytes (int32, or int64 for ids beyond int32)."""
    import tifffile  # noqa: PLC0415

    labels = np.asarray(labels)
    buf = io.BytesIO()
    tifffile.imwrite(buf, labels.astype(np.int32 if labels.max(initial=0) < 2**31 else np.int64))
    return buf.getvalue()


class SeriesStore:
    """The save folder of one series (see the module docstring). ``images`` are the series'
    files in order; reopening a folder with the same images resumes it (images added to the
    folder since come after the saved ones, so every saved index keeps its image)."""

    def __init__(self, folder: str | Path, images: list[Path], *, create: bool = True) -> None:
        self.folder = Path(folder).expanduser()
        self.images = [Path(p).resolve() for p in images]
        if not self.images:
            raise AutosaveError("a series needs at least one image")
        self.current = 0
        self._coco: dict[int, dict] = {}  # per image: its COCO part (computed when it was saved)
        manifest = self.folder / MANIFEST
        if self.folder.exists() and not self.folder.is_dir():
            raise AutosaveError(f"{self.folder} is a file, not a folder")
        if manifest.is_file():
            data = read_manifest(self.folder)
            stored = [Path(p) for p in data["images"]]
            if not set(stored) <= set(self.images):
                raise AutosaveError(f"{self.folder} holds another series ({len(stored)} images, the first "
                                    f"{stored[0].name}): choose an empty folder for this one, or open that "
                                    "series from its save folder")
            grown = stored + [p for p in self.images if p not in set(stored)]  # images added since: at the end
            self.images = grown
            self.current = min(max(int(data.get("current", 0)), 0), len(self.images) - 1)
            if len(grown) > len(stored):
                self._write_manifest()
        else:
            # no manifest: only an empty folder (or a manifest write killed half-way) is ours
            foreign = sorted(p.name for p in self.folder.iterdir() if p.name != f".{MANIFEST}.part") \
                if self.folder.is_dir() else []
            if foreign:
                shown = ", ".join(foreign[:3]) + (" …" if len(foreign) > 3 else "")
                raise AutosaveError(f"{self.folder} already holds files that are not a napari-icmformer series "
                                    f"({shown}); choose an empty folder, so none of them is overwritten")
            if not create:
                raise AutosaveError(f"{self.folder} holds no series ({MANIFEST} is missing)")
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise AutosaveError(f"cannot create the save folder {self.folder}: {exc.strerror or exc}") from exc
            self._write_manifest()
        for p in (self.folder / LABELS_DIR).glob(".*.part"):  # a write killed half-way: ours, stale
            with contextlib.suppress(OSError):
                p.unlink()

    @classmethod
    def resume(cls, folder: str | Path) -> "SeriesStore":
        """Reopen a series from its save folder alone (the images listed in its manifest)."""
        data = read_manifest(Path(folder).expanduser())
        return cls(folder, [Path(p) for p in data["images"]], create=False)

    # -- files ------------------------------------------------------------------------------
    def label_path(self, index: int) -> Path:
        return self.folder / LABELS_DIR / f"{index:04d}_{self.images[index].stem}.tif"

    def _write_manifest(self) -> None:
        data = {"format": FORMAT, "version": VERSION, "images": [str(p) for p in self.images],
                "current": self.current, "coco": COCO_NAME, "labels": LABELS_DIR}
        atomic_write_bytes(self.folder / MANIFEST, json.dumps(data, indent=1).encode())

    def set_current(self, index: int) -> None:
        """Remember the image on screen (resuming opens it)."""
        self.current = int(index)
        self._write_manifest()

    def saved(self, index: int) -> bool:
        return self.label_path(index).is_file()

    def load(self, index: int) -> np.ndarray | None:
        """The saved objects of image ``index``; None when it was never saved."""
        path = self.label_path(index)
        if not path.is_file():
            return None
        import tifffile  # noqa: PLC0415

        try:
            return np.asarray(tifffile.imread(path))
        except Exception as exc:  # noqa: BLE001 - tifffile raises many types for a bad file
            raise AutosaveError(f"cannot read the saved objects {path}: {exc}") from exc

    def save(self, index: int, labels: np.ndarray) -> None:
        """Write the objects of image ``index``: its label image, then the series' COCO json."""
        labels = np.asarray(labels)
        (self.folder / LABELS_DIR).mkdir(exist_ok=True)
        atomic_write_bytes(self.label_path(index), label_bytes(labels))
        self._coco[index] = labels_to_coco(labels, name=self.images[index].name)
        self._write_coco()

    def _write_coco(self) -> None:
        for i in range(len(self.images)):  # after a resume: the images saved in an earlier session
            if i not in self._coco and self.saved(i):
                self._coco[i] = labels_to_coco(self.load(i), name=self.images[i].name)
        images, annotations, categories = [], [], None
        for i in sorted(self._coco):
            part = self._coco[i]
            categories = part["categories"]
            remap = {}
            for im in part["images"]:
                remap[im["id"]] = len(images) + 1
                images.append({**im, "id": len(images) + 1, "series_index": i, "path": str(self.images[i])})
            for ann in part["annotations"]:
                annotations.append({**ann, "id": len(annotations) + 1, "image_id": remap[ann["image_id"]]})
        data = {"images": images, "annotations": annotations, "categories": categories or [],
                "info": {"description": "image series annotated with napari-icmformer"}}
        atomic_write_bytes(self.folder / COCO_NAME, json.dumps(data).encode())


def read_manifest(folder: Path) -> dict:
    """The manifest of a save folder, checked; one clear error otherwise."""
    path = folder / MANIFEST
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise AutosaveError(f"{folder} holds no napari-icmformer series ({MANIFEST} is missing)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AutosaveError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise AutosaveError(f"{path} is not a napari-icmformer series manifest")
    images = data.get("images")
    if not isinstance(images, list) or not images or not all(isinstance(p, str) for p in images):
        raise AutosaveError(f"{path}: 'images' must be a non-empty list of file paths")
    if not isinstance(data.get("current", 0), int):
        raise AutosaveError(f"{path}: 'current' must be an integer")
    return data
