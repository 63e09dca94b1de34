"""An image series (a folder or a list of files): which image is on screen, and the objects of
every image, kept when it is left and given back when it is revisited.

Qt-free: the widget only translates Next / Previous into calls here. With a
:class:`~napari_icmformer.autosave.SeriesStore` the objects also live on disk (written on every
commit, accept and undo through :meth:`ImageSeries.autosave`), and a series closed or killed
is resumed from its save folder.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .autosave import SeriesStore
from .image import read_image_file as _read

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


class SeriesError(ValueError):
    """The series cannot be opened as asked (no images, a missing file, an unreadable image)."""


def list_images(source: str | Path | Sequence[str | Path]) -> list[Path]:
    """The image files of a folder (sorted by name, hidden files skipped) or of a list of
    files (in the order given); one clear error when there are none or one is missing."""
    if isinstance(source, (str, Path)):
        folder = Path(source).expanduser()
        if not folder.is_dir():
            raise SeriesError(f"{folder} is not a folder")
        paths = sorted(p for p in folder.iterdir()
                       if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES)
        if not paths:
            raise SeriesError(f"{folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        return [p.resolve() for p in paths]
    paths = [Path(p).expanduser() for p in source]
    if not paths:
        raise SeriesError("give at least one image file")
    for p in paths:
        if not p.is_file():
            raise SeriesError(f"image file not found: {p}")
    return [p.resolve() for p in paths]


def read_image_file(path: str | Path) -> np.ndarray:
    """The image as stored, as napari opens it (``image.read_image_file``: a tif stack stays a
    stack, 16-bit stays 16-bit); one clear error for a file that is not an image."""
    path = Path(path)
    try:
        data = np.asarray(_read(path))
    except FileNotFoundError:
        raise SeriesError(f"image file not found: {path}") from None
    except Exception as exc:  # noqa: BLE001 - the readers raise many types for bad files
        raise SeriesError(f"cannot read image {path}: {exc}") from exc
    if data.ndim < 2 or data.size == 0 or not (np.issubdtype(data.dtype, np.number) or data.dtype == bool):
        raise SeriesError(f"{path} is not a 2-D image (shape {data.shape}, {data.dtype})")
    return data


def spatial_shape(image: np.ndarray) -> tuple[int, ...]:
    """The label shape of an image: RGB(A) channels (a last axis of 3 or 4) dropped."""
    shape = tuple(image.shape)
    return shape[:-1] if len(shape) >= 3 and shape[-1] in (3, 4) else shape


class ImageSeries:
    """The files of a series, the current index, and each image's objects (label arrays)."""

    def __init__(self, paths: Sequence[str | Path], store: SeriesStore | None = None) -> None:
        self.paths = [Path(p) for p in paths]
        if not self.paths:
            raise SeriesError("a series needs at least one image")
        self.store = store
        self.index = store.current if store is not None else 0
        self._labels: dict[int, np.ndarray] = {}  # objects of the images visited (the current one too)
        self._counts: dict[int, int] = {}  # objects per image (for the progress line)

    @classmethod
    def open(cls, source: str | Path | Sequence[str | Path], save_folder: str | Path | None = None) -> "ImageSeries":
        """A folder or a list of files; with ``save_folder`` every change is saved there (and
        a folder that already holds this series resumes it)."""
        paths = list_images(source)
        if save_folder is None:
            return cls(paths)
        store = SeriesStore(save_folder, paths)
        return cls(store.images, store)  # a resumed series keeps its order, new images last

    @classmethod
    def resume(cls, save_folder: str | Path) -> "ImageSeries":
        """The series saved in ``save_folder``, at the image that was on screen."""
        store = SeriesStore.resume(save_folder)
        missing = [p for p in store.images if not p.is_file()]
        if missing:
            raise SeriesError(f"{len(missing)} image(s) of this series are gone, e.g. {missing[0]}")
        return cls(store.images, store)

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def path(self) -> Path:
        return self.paths[self.index]

    def read(self, index: int | None = None) -> np.ndarray:
        return read_image_file(self.paths[self.index if index is None else index])

    def objects(self, index: int, shape: tuple[int, ...]) -> np.ndarray:
        """Image ``index``'s objects: as left, as saved, or empty (int32, ``shape``)."""
        labels = self._labels.get(index)
        if labels is None and self.store is not None:
            labels = self.store.load(index)
        if labels is None or tuple(labels.shape) != tuple(shape):
            labels = np.zeros(shape, np.int32)
        labels = np.array(labels, np.int32)  # a copy: the viewer may edit it in place
        self._labels[index] = labels
        self._counts[index] = count_objects(labels)
        return labels

    def keep(self, labels: np.ndarray, index: int | None = None) -> None:
        """Remember the objects of image ``index`` (default: the current one) as they are now."""
        index = self.index if index is None else index
        self._labels[index] = np.array(labels, np.int32)
        self._counts[index] = count_objects(labels)

    def autosave(self, labels: np.ndarray) -> bool:
        """After a commit, accept or undo: keep the current image's objects and write them to
        the save folder (True when written)."""
        self.keep(labels)
        if self.store is None:
            return False
        self.store.save(self.index, self._labels[self.index])
        return True

    def go(self, index: int, labels: np.ndarray | None = None) -> int:
        """Leave the current image (its ``labels`` kept and saved) for image ``index``."""
        if not 0 <= index < len(self.paths):
            raise SeriesError(f"image {index + 1} is outside the series of {len(self.paths)}")
        if labels is not None:
            if self.store is not None and not np.array_equal(labels, self._labels.get(self.index)):
                self.autosave(labels)
            else:
                self.keep(labels)
        self.index = index
        if self.store is not None:
            self.store.set_current(index)
        return index

    def next(self, labels: np.ndarray | None = None) -> int:
        return self.go(min(self.index + 1, len(self.paths) - 1), labels)

    def previous(self, labels: np.ndarray | None = None) -> int:
        return self.go(max(self.index - 1, 0), labels)

    def count(self, index: int) -> int | None:
        """Objects of image ``index`` (None when not known without reading its file)."""
        if index in self._counts:
            return self._counts[index]
        if self.store is not None and self.store.saved(index):
            self._counts[index] = count_objects(self.store.load(index))
            return self._counts[index]
        return None

    def progress(self) -> str:
        """The progress line: ``image k of N, M objects`` (M on this image)."""
        m = self.count(self.index) or 0
        return f"image {self.index + 1} of {len(self.paths)}, {m} object{'s' if m != 1 else ''}"


def count_objects(labels: np.ndarray) -> int:
    labels = np.asarray(labels)
    return int(np.count_nonzero(np.unique(labels))) if labels.size else 0
