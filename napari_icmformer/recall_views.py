"""Where iCMFormer++ looks: the whole image in one square view, or square tiles at one scale.

The shipped model sees a square ``view`` (448 px). An image up to that size is squeezed into it
(as in the paper). A larger image squeezed whole would shrink its small objects — a 1000 px
histology tile puts 15 px nuclei at 7 px — so it is cut into overlapping ``view``-sized tiles at
a uniform scale (never below 1 unless the tile budget forces it). Every tile's exemplar branch
must see the exemplar (training always had it in view): a tile that does not hold it gets the
exemplar's patch pasted into its corner facing the image centre, and that corner is left to the
neighbouring tiles when the tiles are blended (BENCHMARKS.md, "Large images").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

Box = tuple[int, int, int, int]  # y0, x0, y1, x1 (exclusive)


def mask_box(mask: np.ndarray) -> Box | None:
    """The bounding box of a 2-D mask's True pixels; None when it has none."""
    rows, cols = np.any(mask, axis=1), np.any(mask, axis=0)
    if not rows.any():
        return None
    y0, y1 = np.nonzero(rows)[0][[0, -1]]
    x0, x1 = np.nonzero(cols)[0][[0, -1]]
    return int(y0), int(x0), int(y1) + 1, int(x1) + 1


@dataclass(frozen=True)
class TilingConfig:
    """When and how to tile (part of :class:`~napari_icmformer.exemplar.RecallConfig`)."""

    enabled: bool = True
    overlap: int = 64  # px of the layout shared by neighbouring tiles (at least)
    max_scale: float = 1.5  # upsampling when the short side is below the view (BENCHMARKS.md)
    max_tiles: int = 64  # beyond this the scale drops below 1 (a CPU recall tile costs ~0.5 s)
    max_patch_fraction: float = 0.25  # the pasted exemplar patch must fit in this much of a tile side

    def __post_init__(self) -> None:
        if self.overlap < 0 or self.max_scale < 1 or self.max_tiles < 1 or not 0 < self.max_patch_fraction <= 0.5:
            raise ValueError(f"invalid tiling settings {self}: need overlap >= 0, max_scale >= 1, "
                             "max_tiles >= 1 and 0 < max_patch_fraction <= 0.5")


@dataclass(frozen=True)
class RecallLayout:
    """Image pixels → layout pixels (``scale`` per axis), the padded layout and its tiles."""

    scale: tuple[float, float]
    shape: tuple[int, int]  # scaled image in the layout
    padded: tuple[int, int]  # layout size (≥ view per axis; the excess is edge padding)
    view: int
    origins: tuple[tuple[int, int], ...]  # top-left corner of each view×view tile
    squeezed: bool = False  # the whole image in one view, aspect not kept
    patch: Box | None = None  # the exemplar's patch in the layout (tiled layouts)
    # per tile: where in the tile the patch is pasted (its top-left), None = the tile holds the exemplar
    pastes: tuple[tuple[int, int] | None, ...] = ()

    @property
    def grid(self) -> tuple:
        """What the recall branch's tile features depend on (not the exemplar's patch)."""
        return self.scale, self.shape, self.padded, self.view, self.origins


def squeeze_layout(shape: tuple[int, int], view: int) -> RecallLayout:
    """The whole image resized to one view×view input (the paper's way, aspect not kept)."""
    h, w = shape
    return RecallLayout((view / h, view / w), (view, view), (view, view), view, ((0, 0),), squeezed=True,
                        pastes=(None,))


def _starts(length: int, view: int, stride: int) -> list[int]:
    if length <= view:
        return [0]
    n = math.ceil((length - view) / stride) + 1
    return [round(i * (length - view) / (n - 1)) for i in range(n)]  # evenly spread, last at the end


def exemplar_patch_box(box: Box, shape: tuple[int, int]) -> Box:
    """The exemplar's box plus half its longer side (≥ 8 px) of context, clipped to ``shape``."""
    y0, x0, y1, x1 = box
    pad = max(8, (max(y1 - y0, x1 - x0) + 1) // 2)
    return max(0, y0 - pad), max(0, x0 - pad), min(shape[0], y1 + pad), min(shape[1], x1 + pad)


def scale_box(box: Box, scale: tuple[float, float], shape: tuple[int, int]) -> Box:
    """An image-pixel box in layout pixels (rounded outwards, clipped to the scaled image)."""
    sy, sx = scale
    y0, x0, y1, x1 = box
    return (max(0, math.floor(y0 * sy)), max(0, math.floor(x0 * sx)),
            min(shape[0], math.ceil(y1 * sy)), min(shape[1], math.ceil(x1 * sx)))


def contains(origin: tuple[int, int], view: int, box: Box) -> bool:
    y, x = origin
    return y <= box[0] and x <= box[1] and box[2] <= y + view and box[3] <= x + view


def _paste_corner(origin: tuple[int, int], view: int, padded: tuple[int, int],
                  patch_shape: tuple[int, int]) -> tuple[int, int]:
    """A tile's corner facing the layout centre: with strides of at most view − 2 × patch the
    neighbour towards the centre covers it with its own, unpasted, pixels."""
    (y, x), (ph, pw) = origin, patch_shape
    cy = 0 if y + view / 2 > padded[0] / 2 else view - ph
    cx = 0 if x + view / 2 > padded[1] / 2 else view - pw
    return cy, cx


@dataclass(frozen=True)
class _Grid:
    """Tile starts at one scale, before any tile is built (cheap to count)."""

    scale: tuple[float, float]
    shape: tuple[int, int]
    padded: tuple[int, int]
    box: Box
    patch: Box
    ys: tuple[int, ...]
    xs: tuple[int, ...]

    @property
    def count(self) -> int:
        return len(self.ys) * len(self.xs)

    @property
    def patch_side(self) -> int:
        return max(self.patch[2] - self.patch[0], self.patch[3] - self.patch[1])


def _grid(shape: tuple[int, int], view: int, exemplar_box: Box, scale: float, overlap: int) -> _Grid:
    h, w = shape
    hs, ws = max(1, round(h * scale)), max(1, round(w * scale))
    sc = (hs / h, ws / w)  # the exact resize ratio
    box = scale_box(exemplar_box, sc, (hs, ws))
    patch = exemplar_patch_box(box, (hs, ws))
    ph, pw = patch[2] - patch[0], patch[3] - patch[1]
    padded = (max(hs, view), max(ws, view))
    ys = _starts(padded[0], view, max(1, min(view - overlap, view - 2 * ph)))
    xs = _starts(padded[1], view, max(1, min(view - overlap, view - 2 * pw)))
    return _Grid(sc, (hs, ws), padded, box, patch, tuple(ys), tuple(xs))


def _layout(g: _Grid, view: int) -> RecallLayout:
    ph, pw = g.patch[2] - g.patch[0], g.patch[3] - g.patch[1]
    origins = tuple((y, x) for y in g.ys for x in g.xs)
    pastes = tuple(None if contains(o, view, g.box) else _paste_corner(o, view, g.padded, (ph, pw)) for o in origins)
    return RecallLayout(g.scale, g.shape, g.padded, view, origins, False, g.patch, pastes)


def clean_coverage(layout: RecallLayout) -> np.ndarray:
    """How many tiles see each layout pixel as it is (not under a pasted patch)."""
    seen = np.zeros(layout.padded, np.int32)
    v = layout.view
    for (y, x), paste in zip(layout.origins, layout.pastes, strict=True):
        own = np.ones((v, v), np.int32)
        if paste is not None and layout.patch is not None:
            py0, px0, py1, px1 = layout.patch
            own[paste[0]:paste[0] + py1 - py0, paste[1]:paste[1] + px1 - px0] = 0
        seen[y:y + v, x:x + v] += own
    return seen


def plan_layout(shape: tuple[int, int], view: int, exemplar_box: Box, cfg: TilingConfig) -> RecallLayout:
    """Squeeze when the image fits the view or tiling is off; otherwise tiles at scale
    ``min(max(1, view / short side), max_scale)`` — or 1 when the exemplar's patch is too big
    upsampled — lowered below 1 while there are more than ``max_tiles`` tiles. Falls back to the
    squeeze when the patch is still too big to paste (people, cars) or a pixel of the image would
    be seen only under pasted patches."""
    h, w = shape
    if not cfg.enabled or max(h, w) <= view:
        return squeeze_layout(shape, view)
    if cfg.overlap >= view:
        raise ValueError(f"tiling overlap {cfg.overlap} must be smaller than the view {view}")
    fill = min(max(1.0, view / min(h, w)), cfg.max_scale)
    for scale in dict.fromkeys((fill, 1.0)):
        grid = _grid(shape, view, exemplar_box, scale, cfg.overlap)
        if grid.patch_side <= cfg.max_patch_fraction * view:
            break
    else:
        return squeeze_layout(shape, view)
    while grid.count > cfg.max_tiles:  # the patch only shrinks with the scale
        scale *= 0.9
        grid = _grid(shape, view, exemplar_box, scale, cfg.overlap)
    layout = _layout(grid, view)
    if clean_coverage(layout)[: layout.shape[0], : layout.shape[1]].min() < 1:
        return squeeze_layout(shape, view)
    return layout


def blend_weights(view: int, ramp: int) -> np.ndarray:
    """Tile weights that fall linearly to 1/ramp at the tile edge, so seams do not show."""
    r = np.minimum(np.arange(view) + 1, view - np.arange(view)).astype(np.float32)
    r = np.minimum(r / max(1, ramp), 1.0)
    return np.outer(r, r)


def carried_layout(layout: RecallLayout, patch_shape: tuple[int, int]) -> RecallLayout:
    """``layout`` for an exemplar from another image (carried forward): no tile holds it, so
    every tile gets its patch (``patch_shape`` layout pixels, at most half a view per side) pasted
    into the corner facing the layout centre. Where that leaves pixels seen only under a patch
    (one view, a single row or column), each tile is seen twice, pasted at opposite corners, so
    the blend always has a clean view of every pixel. ``patch`` is (0, 0, ph, pw): the patch
    image itself, not a box of this image."""
    v = layout.view
    ph, pw = patch_shape
    if not (0 < ph <= v // 2 and 0 < pw <= v // 2):
        raise ValueError(f"a carried exemplar patch of {patch_shape} px does not fit half a {v} px view")
    patch = (0, 0, ph, pw)
    pastes = tuple(_paste_corner(o, v, layout.padded, (ph, pw)) for o in layout.origins)
    out = RecallLayout(layout.scale, layout.shape, layout.padded, v, layout.origins, layout.squeezed, patch, pastes)
    if clean_coverage(out)[: out.shape[0], : out.shape[1]].min() >= 1:
        return out
    opposite = tuple((v - ph - cy, v - pw - cx) for cy, cx in pastes)
    return RecallLayout(layout.scale, layout.shape, layout.padded, v, layout.origins * 2, layout.squeezed, patch,
                        pastes + opposite)
