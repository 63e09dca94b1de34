"""Readers for the layouts of the field: GrabCut, Berkeley, RITM img/gt, instance-label folders,
COCO instances json (pycocotools). Every reader yields :class:`Sample` objects."""

from __future__ import annotations

import contextlib
import io
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from .coco_checks import CocoFormatError, check_structure, decode_segmentation, image_size

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"}


class DatasetError(ValueError):
    """A dataset cannot be read; the message names the file or folder at fault."""


class LabelMasks(Sequence):
    """The objects of an instance label image as boolean masks, made on demand.

    A MoNuSeg tile holds ~100 nuclei; building every full-size mask up front costs memory and
    minutes over a dataset, so masks are computed when indexed. ``labels`` stays available.
    """

    def __init__(self, labels: np.ndarray) -> None:
        self.labels = labels
        self.ids = [int(i) for i in np.unique(labels) if i != 0]

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self.labels == j for j in self.ids[i]]
        return self.labels == self.ids[i]


@dataclass
class Sample:
    """One image with its objects. ``masks[i]`` is a boolean object mask of the image's size."""

    name: str
    image: np.ndarray  # (H, W, 3) uint8
    masks: Sequence[np.ndarray]
    categories: list[int] = field(default_factory=list)
    ignore: np.ndarray | None = None  # boolean, True where pixels do not count (GrabCut band)

    @property
    def labels(self) -> np.ndarray | None:
        """The instance label image when the objects came from one (no overlaps)."""
        return self.masks.labels if isinstance(self.masks, LabelMasks) else None


def read_image(path: Path | str) -> np.ndarray:
    """RGB uint8 (H, W, 3) from any image file Pillow reads; a clear error otherwise."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except FileNotFoundError:
        raise DatasetError(f"image file not found: {path}") from None
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types for bad files
        raise DatasetError(f"cannot read image {path}: {exc}") from exc


def read_label_array(path: Path | str) -> np.ndarray:
    """Mask / label image as stored (16-bit label PNGs stay uint16)."""
    path = Path(path)
    try:
        with Image.open(path) as im:
            return np.asarray(im)
    except FileNotFoundError:
        raise DatasetError(f"mask file not found: {path}") from None
    except Exception as exc:  # noqa: BLE001
        raise DatasetError(f"cannot read mask {path}: {exc}") from exc


def _by_stem(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        raise DatasetError(f"folder not found: {folder}")
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() in IMAGE_EXTS}


def binary_nonzero(arr: np.ndarray) -> tuple[list[np.ndarray], np.ndarray | None]:
    """RITM img/gt rule: any non-zero pixel is the object."""
    if arr.ndim == 3:
        arr = arr[..., 0]
    return [arr > 0], None


def binary_channel0(arr: np.ndarray) -> tuple[list[np.ndarray], np.ndarray | None]:
    """Berkeley rule (isegm): channel 0 thresholded at > 128."""
    if arr.ndim == 3:
        arr = arr[..., 0]
    return [arr > 128], None


def grabcut_mask(arr: np.ndarray) -> tuple[list[np.ndarray], np.ndarray | None]:
    """GrabCut rule: 128 is the ignored boundary band, > 128 is the object."""
    if arr.ndim == 3:
        arr = arr[..., 0]
    return [arr > 128], arr == 128


def instance_labels(arr: np.ndarray) -> tuple[LabelMasks, np.ndarray | None]:
    """Instance label image: 0 background, each other value one object."""
    if arr.ndim == 3:
        arr = arr[..., 0]
    return LabelMasks(arr), None


MaskRule = Callable[[np.ndarray], tuple[list[np.ndarray], "np.ndarray | None"]]


class FolderDataset:
    """A folder of images and a folder of masks, matched by file stem (as isegm does)."""

    def __init__(self, image_dir: Path | str, mask_dir: Path | str, rule: MaskRule, name: str = "") -> None:
        self.image_dir, self.mask_dir, self.rule = Path(image_dir), Path(mask_dir), rule
        self.name = name or self.image_dir.parent.name
        images, masks = _by_stem(self.image_dir), _by_stem(self.mask_dir)
        if not images:
            raise DatasetError(f"no images in {self.image_dir}")
        missing = sorted(set(images) - set(masks))
        if missing:
            raise DatasetError(f"no mask in {self.mask_dir} for image {images[missing[0]]}"
                               + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
        self.pairs = [(stem, images[stem], masks[stem]) for stem in sorted(images)]

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> Sample:
        stem, ipath, mpath = self.pairs[i]
        image = read_image(ipath)
        raw = read_label_array(mpath)
        masks, ignore = self.rule(raw)
        if raw.shape[:2] != image.shape[:2]:
            raise DatasetError(f"mask {mpath} is {raw.shape[1::-1]} but image {ipath} is "
                               f"{image.shape[1::-1]} (width, height)")
        return Sample(stem, image, masks, self.categories(stem, masks), ignore)

    def categories(self, stem: str, masks: Sequence[np.ndarray]) -> list[int]:
        """One category per mask: instance-label folders hold one kind of object (1)."""
        return [1] * len(masks)


# MSRC_v2 things (countable objects); its stuff classes (grass, sky, road, ...) get category 0
MSRC_THINGS = ("body", "face", "cow", "bird", "book", "flower", "car", "boat", "sign", "sheep", "chair",
               "dog", "bicycle", "aeroplane", "cat", "horse")


class ClassedFolderDataset(FolderDataset):
    """An instance-label folder with a ``{image stem: {label id: class name}}`` json beside it
    (MSRC_v2's ``segment_classes.json``): each segment's category is its class, so images with
    cows and sheep give one Find-similar target per class. Classes not in ``things`` are stuff
    and get category 0 (no category target: a lawn is not counted in instances)."""

    def __init__(self, image_dir: Path | str, mask_dir: Path | str, classes_file: Path | str,
                 things: Sequence[str], name: str = "") -> None:
        super().__init__(image_dir, mask_dir, instance_labels, name)
        try:
            self.classes = json.loads(Path(classes_file).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DatasetError(f"cannot read segment classes {classes_file}: {exc}") from None
        if not isinstance(self.classes, dict):
            raise DatasetError(f"{classes_file} must map image stems to {{label id: class name}}")
        self.ids = {name: k for k, name in enumerate(things, start=1)}

    def categories(self, stem: str, masks: Sequence[np.ndarray]) -> list[int]:
        names = self.classes.get(stem, {})
        if not isinstance(names, dict):
            names = {}
        return [self.ids.get(names.get(str(i), ""), 0) for i in masks.ids]  # instance_labels: LabelMasks


class TileMosaic:
    """Whole images put back together from tiles named ``<source>_<row><col>`` (MoNuSeg's
    500 px tiles of its 1000 px images): large images with many small objects. Instance ids
    stay unique; an object cut by a tile seam stays two instances."""

    _TILE = re.compile(r"^(?P<source>.+)_(?P<row>\d)(?P<col>\d)$")

    def __init__(self, tiles: FolderDataset, name: str = "") -> None:
        self.tiles, self.name = tiles, name or f"{tiles.name}_whole"
        groups: dict[str, dict[tuple[int, int], int]] = {}
        for i, (stem, _, _) in enumerate(tiles.pairs):
            m = self._TILE.match(stem)
            if m is None:
                raise DatasetError(f"tile {stem!r} is not named <source>_<row><col>")
            groups.setdefault(m["source"], {})[(int(m["row"]), int(m["col"]))] = i
        self.sources = sorted(groups.items())

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, i: int) -> Sample:
        source, where = self.sources[i]
        rows = max(r for r, _ in where) + 1
        cols = max(c for _, c in where) + 1
        parts = {rc: self.tiles[k] for rc, k in where.items()}
        if len(parts) != rows * cols:
            raise DatasetError(f"{source}: {len(parts)} tiles do not fill a {rows}x{cols} grid")
        heights = [parts[(r, 0)].image.shape[0] for r in range(rows)]
        widths = [parts[(0, c)].image.shape[1] for c in range(cols)]
        image = np.zeros((sum(heights), sum(widths), 3), np.uint8)
        labels = np.zeros(image.shape[:2], np.int32)
        next_id = 0
        for (r, c), part in sorted(parts.items()):
            y, x = sum(heights[:r]), sum(widths[:c])
            h, w = part.image.shape[:2]
            if (h, w) != (heights[r], widths[c]):
                raise DatasetError(f"{source}: tile {r}{c} is {w}x{h}, not {widths[c]}x{heights[r]}")
            image[y:y + h, x:x + w] = part.image
            lab = np.asarray(part.labels, np.int32)
            labels[y:y + h, x:x + w] = np.where(lab > 0, lab + next_id, 0)
            next_id += int(lab.max())
        masks = LabelMasks(labels)
        return Sample(source, image, masks, [1] * len(masks), None)


class CocoInstances:
    """COCO instances json via pycocotools; polygons and RLE decoded, crowd regions ignored.

    The json is validated as a whole when opened and every segmentation before it is decoded
    (``coco_checks``), so a damaged file is a :class:`DatasetError`, never a crash."""

    def __init__(self, annotation_file: Path | str, image_dir: Path | str, name: str = "") -> None:
        from pycocotools.coco import COCO  # noqa: PLC0415 - heavy import, only when used

        self.annotation_file, self.image_dir = Path(annotation_file), Path(image_dir)
        self.name = name or self.annotation_file.stem
        if not self.annotation_file.is_file():
            raise DatasetError(f"annotation file not found: {self.annotation_file}")
        try:
            data = json.loads(self.annotation_file.read_text())
            check_structure(data, need_size=False)
            for i, info in enumerate(data["images"]):
                if not isinstance(info.get("file_name"), str) or not info["file_name"]:
                    raise CocoFormatError(f"images[{i}] has no 'file_name'")
                if "height" in info or "width" in info:
                    image_size(info, f"images[{i}]")
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError, CocoFormatError) as exc:
            raise DatasetError(f"cannot read COCO json {self.annotation_file}: {exc}") from None
        with contextlib.redirect_stdout(io.StringIO()):
            self.coco = COCO()
            self.coco.dataset = data
            self.coco.createIndex()
        self.image_ids = sorted(self.coco.getImgIds())

    def __len__(self) -> int:
        return len(self.image_ids)

    def __getitem__(self, i: int) -> Sample:
        info = self.coco.loadImgs(self.image_ids[i])[0]
        image = read_image(self.image_dir / info["file_name"])
        h, w = image.shape[:2]
        if (info.get("height", h), info.get("width", w)) != (h, w):
            raise DatasetError(f"{self.image_dir / info['file_name']} is {w}x{h} but the json says "
                               f"{info.get('width')}x{info.get('height')}")
        anns = self.coco.loadAnns(self.coco.getAnnIds(imgIds=info["id"]))
        masks, cats = [], []
        ignore = np.zeros((h, w), bool)
        for ann in anns:
            try:
                m = decode_segmentation(ann["segmentation"], h, w)
            except CocoFormatError as exc:
                raise DatasetError(f"{self.annotation_file}: annotation {ann.get('id')!r} of "
                                   f"{info['file_name']}: {exc}") from None
            if ann.get("iscrowd", 0):
                ignore |= m
            elif m.any():
                masks.append(m)
                cats.append(int(ann.get("category_id", 1)))
        return Sample(Path(info["file_name"]).stem, image, masks, cats, ignore if ignore.any() else None)


def coco_image_dir(annotation_file: Path) -> Path:
    """Where a COCO json's images are: ``root/<split>/`` for ``root/annotations/instances_<split>.json``
    (the COCO layout), else ``images/`` beside the json, else the json's own folder."""
    ann = Path(annotation_file)
    split = ann.stem.removeprefix("instances_")
    if ann.parent.name == "annotations" and (ann.parent.parent / split).is_dir():
        return ann.parent.parent / split
    return ann.parent / "images" if (ann.parent / "images").is_dir() else ann.parent


def _coco_split(root: Path, split: str) -> CocoInstances:
    return CocoInstances(root / "annotations" / f"instances_{split}.json", root / split, f"{root.name}_{split}")


# name -> how to open it under a data root; generic layouts are detected by open_dataset.
DATASET_LAYOUTS: dict[str, Callable[[Path], object]] = {
    "GrabCut": lambda r: FolderDataset(r / "GrabCut/data_GT", r / "GrabCut/boundary_GT", grabcut_mask, "GrabCut"),
    "Berkeley": lambda r: FolderDataset(r / "Berkeley/images", r / "Berkeley/masks", binary_channel0, "Berkeley"),
    "COCO_MVal_train": lambda r: FolderDataset(r / "COCO_MVal_train/img", r / "COCO_MVal_train/gt", binary_nonzero),
    "COCO_Tiny_train": lambda r: _coco_split(r / "COCO_Tiny", "train2017"),
    "COCO_Tiny_val": lambda r: _coco_split(r / "COCO_Tiny", "val2017"),
    "WeizmannHorse": lambda r: FolderDataset(r / "WeizmannHorse/images", r / "WeizmannHorse/masks", binary_nonzero),
    **{
        name: (lambda r, n=name: FolderDataset(r / n / "images", r / n / "labels", instance_labels, n))
        for name in ("PennFudanPed", "DSB2018", "EPFL_EM", "MoNuSeg", "CamVid")
    },
    "MSRC_v2": lambda r: ClassedFolderDataset(r / "MSRC_v2/images", r / "MSRC_v2/labels",
                                              r / "MSRC_v2/segment_classes.json", MSRC_THINGS, "MSRC_v2"),
    # the 27 whole 1000 px H&E images (test sources first: [:14] = the test tiles' images)
    "MoNuSeg_whole": lambda r: TileMosaic(FolderDataset(r / "MoNuSeg/images", r / "MoNuSeg/labels", instance_labels,
                                                        "MoNuSeg")),
}


class DatasetSlice:
    """``name[start:stop]``: a contiguous part of a dataset (e.g. a held-out split)."""

    def __init__(self, dataset, start: int | None, stop: int | None, name: str) -> None:
        self.dataset, self.indices, self.name = dataset, range(len(dataset))[slice(start, stop)], name
        if not len(self.indices):
            raise DatasetError(f"{name} selects no images (the dataset has {len(dataset)})")

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> Sample:
        return self.dataset[self.indices[i]]


_SLICE = re.compile(r"^(?P<name>.+)\[(?P<start>-?\d*):(?P<stop>-?\d*)\]$")


def open_dataset(name_or_path: str, data_root: Path | str | None = None):
    """A named dataset under ``data_root`` or a path to a folder in a known layout; a
    ``[start:stop]`` suffix selects a part (``MoNuSeg[56:]`` = its train tiles)."""
    match = _SLICE.match(name_or_path)
    if match:
        base = open_dataset(match["name"], data_root)
        start = int(match["start"]) if match["start"] else None
        stop = int(match["stop"]) if match["stop"] else None
        return DatasetSlice(base, start, stop, name_or_path)
    if name_or_path in DATASET_LAYOUTS:
        if data_root is None:
            raise DatasetError(f"dataset {name_or_path!r} needs --data-root")
        return DATASET_LAYOUTS[name_or_path](Path(data_root))
    root = Path(name_or_path)
    if root.suffix.lower() == ".json":
        return CocoInstances(root, coco_image_dir(root), root.stem)
    layouts = [("img", "gt", binary_nonzero), ("images", "masks", binary_nonzero),
               ("images", "labels", instance_labels), ("data_GT", "boundary_GT", grabcut_mask)]
    for imgs, masks, rule in layouts:
        if (root / imgs).is_dir() and (root / masks).is_dir():
            return FolderDataset(root / imgs, root / masks, rule, root.name)
    raise DatasetError(
        f"unknown dataset {name_or_path!r}: not one of {sorted(DATASET_LAYOUTS)}, not a COCO .json and "
        f"{root} has none of the layouts img/+gt/, images/+masks/, images/+labels/, data_GT/+boundary_GT/"
    )
