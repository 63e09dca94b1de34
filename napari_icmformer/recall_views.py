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


@dataclass(frozen=True)
class TilingConfig:
    """When and how to tile (part of :class:`~napari_icmformer.engine.PredictorConfig`)."""

    enabled: bool = True
    overlap: int = 64  # px of the layout shared by neighbouring tiles
    max_scale: float = 1.5  # upsampling when the short side is below the view (1.5 ≈ 2 ≈ 3 on DSB2018[:50])
    max_tiles: int = 64  # beyond this the scale drops below 1 (a CPU recall tile costs ~0.5 s)
    max_patch_fraction: float = 1 / 3  # the pasted exemplar patch must fit in this much of a tile side


@dataclass(frozen=True)
class RecallLayout:
    """Image pixels → layout pixels (``scale`` per axis), the padded layout and its tiles."""

    scale: tuple[float, float]
    shape: tuple[int, int]  # scaled image in the layout
    padded: tuple[int, int]  # layout size (≥ view per axis; the excess is edge padding)
    view: int
    origins: tuple[tuple[int, int], ...]  # top-left corner of each view×view tile
    squeezed: bool = False  # the whole image in one view, aspect not kept


def squeeze_layout(shape: tuple[int, int], view: int) -> RecallLayout:
    """The whole image resized to one view×view input (the paper's way, aspect not kept)."""
    h, w = shape
    return RecallLayout((view / h, view / w), (view, view), (view, view), view, ((0, 0),), squeezed=True)


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


def plan_layout(shape: tuple[int, int], view: int, exemplar_box: Box, cfg: TilingConfig) -> RecallLayout:
    """Squeeze when the image fits the view, tiling is off, or the exemplar is too big to paste;
    otherwise tiles at scale ``min(max(1, view / short side), max_scale)``."""
    h, w = shape
    if not cfg.enabled or max(h, w) <= view:
        return squeeze_layout(shape, view)
    stride = max(1, view - cfg.overlap)
    scale = min(max(1.0, view / min(h, w)), cfg.max_scale)

    def grid(s: float) -> tuple[list[int], list[int]]:
        hp, wp = max(round(h * s), view), max(round(w * s), view)
        return _starts(hp, view, stride), _starts(wp, view, stride)

    while len(grid(scale)[0]) * len(grid(scale)[1]) > cfg.max_tiles:
        scale *= 0.9
    y0, x0, y1, x1 = exemplar_patch_box(exemplar_box, shape)
    if max(y1 - y0, x1 - x0) * scale > cfg.max_patch_fraction * view:
        return squeeze_layout(shape, view)
    ys, xs = grid(scale)
    hs, ws = round(h * scale), round(w * scale)
    return RecallLayout((scale, scale), (hs, ws), (max(hs, view), max(ws, view)), view,
                        tuple((y, x) for y in ys for x in xs))


def to_layout_box(box: Box, layout: RecallLayout) -> Box:
    """An image-pixel box in layout pixels (rounded outwards, clipped to the scaled image)."""
    sy, sx = layout.scale
    y0, x0, y1, x1 = box
    return (max(0, math.floor(y0 * sy)), max(0, math.floor(x0 * sx)),
            min(layout.shape[0], math.ceil(y1 * sy)), min(layout.shape[1], math.ceil(x1 * sx)))


def contains(origin: tuple[int, int], view: int, box: Box) -> bool:
    y, x = origin
    return y <= box[0] and x <= box[1] and box[2] <= y + view and box[3] <= x + view


def paste_corner(origin: tuple[int, int], layout: RecallLayout, patch_shape: tuple[int, int]) -> tuple[int, int]:
    """Where a tile gets the exemplar patch: its corner facing the layout centre, which the
    neighbouring tiles also cover."""
    (y, x), v = origin, layout.view
    ph, pw = patch_shape
    cy = 0 if y + v / 2 > layout.padded[0] / 2 else v - ph
    cx = 0 if x + v / 2 > layout.padded[1] / 2 else v - pw
    return cy, cx


def blend_weights(view: int, ramp: int) -> np.ndarray:
    """Tile weights that fall linearly to 1/ramp at the tile edge, so seams do not show."""
    r = np.minimum(np.arange(view) + 1, view - np.arange(view)).astype(np.float32)
    r = np.minimum(r / max(1, ramp), 1.0)
    return np.outer(r, r)
