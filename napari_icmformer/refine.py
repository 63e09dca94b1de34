"""Graph-cut refinement of the network's probability (DIOS, Xu et al. 2016): the clicks are kept
exactly and the boundary follows the image's edges.

A min-cut (PyMaxflow) on the engine's view: the network probability is the unary term, a
contrast-sensitive 8-connected pairwise term ties neighbouring pixels of similar colour, and
every click's disk is a hard constraint (a positive click is always inside the result, a
negative one always outside). Only a band around the network's boundary is free; deeper
inside and farther outside the network's decision stands, so the cut fixes edges and honours
clicks without inventing a new object.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from src_models import Clicks

from .recall_views import mask_box

HARD = 1e9  # capacity of a hard constraint


@dataclass
class GraphCutConfig:
    """Weights of the refinement, chosen on held-out training-side data (COCO_Tiny val2017, 40
    objects, 20 clicks; ``benchmarks/tune_graphcut.py``, BENCHMARKS.md "Graph-cut refinement")."""

    # pairwise weight (lambda) relative to the unary log-odds: larger = smoother, edge-snapping
    pairwise: float = 3.0
    # free band on each side of the network's boundary, in the network's output pixels (its
    # boundary error is a few of its own pixels, whatever the view's size): the engine converts
    # it to image pixels (x view side / network input side), at least band_min_px
    band: float = 8.0
    band_min_px: int = 2
    # radius (pixels) of each click's hard-constraint disk
    click_radius: float = 3.0
    # and at most this share of the network's object's equivalent radius (at least 1 px; 0 = no
    # such cap): a 3 px disk is a quarter of a 12 px nucleus, so a negative click on its rim
    # would cut away a bite of it
    click_radius_per_size: float = 0.25
    # the cut runs at most on this many pixels; a larger view is cut at a reduced scale and the
    # result upsampled (a 2000² view: edges within a pixel or two of the full-resolution cut)
    max_pixels: int = 512 * 512
    # and at most at this multiple of the network's own resolution over the view (the engine
    # passes the scale): a 1000 px view seen by a 224 px network is cut at 448 px — finer costs
    # time (max-flow on a wide band) and adds nothing the network could have told apart
    resolution: float = 2.0
    # keep only the parts of the result that hold a positive click: a blob the network fired on
    # elsewhere (another coin, a similar texture) is not part of the object the user clicked;
    # a separate piece of the object (an occluded half) is added by a positive click on it
    drop_unclicked_parts: bool = True
    # which mask the network sees as its previous mask at the next click: "network" = its own
    # probability, "refined" = the graph-cut result
    feedback: str = "refined"
    # weight of a colour model in the unary term (GrabCut's idea, Rother et al. 2004): smoothed
    # colour histograms of the object and of its surroundings, learnt from the pixels the
    # network is sure of (outside the free band) and the click disks; its log-likelihood ratio
    # is added to the network's log-odds. 0 = the network alone decides the unary. 0.3 won on
    # two disjoint COCO_Tiny val samples (NoC@90 16.86 -> 16.32, mIoU@1 0.24 -> 0.29 over 67
    # objects); 1.0 lost (the colours of cluttered scenes overlap)
    color: float = 0.3
    # histogram bins per channel of the colour model
    color_bins: int = 16

    def __post_init__(self) -> None:
        for name in ("pairwise", "band", "click_radius", "click_radius_per_size", "color"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"GraphCutConfig.{name} must be a finite number >= 0, got {v!r}")
        if not (isinstance(self.band_min_px, int) and self.band_min_px >= 0):
            raise ValueError(f"GraphCutConfig.band_min_px must be an integer >= 0, got {self.band_min_px!r}")
        if not (isinstance(self.resolution, (int, float)) and math.isfinite(self.resolution)
                and self.resolution > 0):
            raise ValueError(f"GraphCutConfig.resolution must be a finite number > 0, got {self.resolution!r}")
        if not (isinstance(self.max_pixels, int) and self.max_pixels >= 64):
            raise ValueError(f"GraphCutConfig.max_pixels must be an integer >= 64, got {self.max_pixels!r}")
        if not (isinstance(self.color_bins, int) and 2 <= self.color_bins <= 64):
            raise ValueError(f"GraphCutConfig.color_bins must be an integer in [2, 64], got {self.color_bins!r}")
        if self.feedback not in ("network", "refined"):
            raise ValueError(f"GraphCutConfig.feedback must be 'network' or 'refined', got {self.feedback!r}")


# 8-connectivity: right, down, down-right, down-left (each edge once, symmetric)
_OFFSETS = ((0, 1), (1, 0), (1, 1), (1, -1))


def click_disks(shape: tuple[int, int], clicks: Clicks, radius: float) -> tuple[np.ndarray, np.ndarray]:
    """The positive and negative hard-constraint disks. Where disks of both signs overlap a pixel
    goes to its nearest click (the newer on a tie): on a small object a negative click placed
    inside an earlier positive click's disk must still take its own pixels out, or the click
    does nothing and the user clicks again and again."""
    h, w = shape
    best = np.full(shape, np.inf)
    sign = np.zeros(shape, np.int8)
    r = max(0.0, radius)
    ri = int(math.ceil(r))
    for c in clicks:
        cy, cx = int(round(c.y)), int(round(c.x))
        y0, y1 = max(0, cy - ri), min(h, cy + ri + 1)
        x0, x1 = max(0, cx - ri), min(w, cx + ri + 1)
        if y0 >= y1 or x0 >= x1:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1]
        d = (yy - c.y) ** 2 + (xx - c.x) ** 2
        win = (d <= r * r + 1e-6) & (d <= best[y0:y1, x0:x1])
        best[y0:y1, x0:x1][win] = d[win]
        sign[y0:y1, x0:x1][win] = 1 if c.positive else -1
    return sign > 0, sign < 0


def _resize(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of (H, W) or (H, W, C) float arrays (torch: fast on large views)."""
    t = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    t = t[None, None] if t.ndim == 2 else t.permute(2, 0, 1)[None]
    t = F.interpolate(t, size=size, mode="bilinear", align_corners=False, antialias=True)[0]
    return (t[0] if array.ndim == 2 else t.permute(1, 2, 0)).numpy()


def graphcut_refine(image: np.ndarray, prob: np.ndarray, clicks: Clicks, threshold: float,
                    config: GraphCutConfig, band_px: float | None = None, scale: float = 1.0) -> np.ndarray:
    """The refined object mask (bool, same shape as ``prob``).

    ``image``: (H, W, 3) float in [0, 1] of the same pixels; ``clicks`` in these pixel
    coordinates; ``band_px``: the free band's half-width in these pixels (default
    ``config.band``); ``scale`` < 1 cuts at that reduced scale (the result is upsampled). A
    positive click's disk is always in the result, a negative one's never.
    """
    out = _graphcut(image, prob, clicks, threshold, config, band_px, scale)
    if config.drop_unclicked_parts and clicks.positives:
        out = keep_clicked_parts(out, clicks)
    return out


def cut_as_probability(prob: np.ndarray, cut: np.ndarray, threshold: float) -> np.ndarray:
    """``prob`` whose decision at ``threshold`` is the cut's: pixels the cut keeps agree with the
    network; pixels it flips are set halfway between the threshold and certainty, so whatever
    reads the probability later (the next click's previous mask, an instance split) sees the cut."""
    out = np.array(prob, np.float32, copy=True)
    out[cut & (out <= threshold)] = 0.5 * (1.0 + threshold)
    out[~cut & (out > threshold)] = 0.5 * threshold
    return out


def keep_clicked_parts(mask: np.ndarray, clicks: Clicks) -> np.ndarray:
    """The connected parts (8-connected) of ``mask`` that hold a positive click."""
    parts, n = ndimage.label(mask, structure=np.ones((3, 3), bool))
    if n <= 1:
        return mask
    h, w = mask.shape
    keep = {int(parts[min(h - 1, max(0, int(round(c.y)))), min(w - 1, max(0, int(round(c.x))))])
            for c in clicks.positives}
    keep.discard(0)
    return np.isin(parts, list(keep)) if keep else mask


def _graphcut(image: np.ndarray, prob: np.ndarray, clicks: Clicks, threshold: float,
              config: GraphCutConfig, band_px: float | None, scale: float = 1.0) -> np.ndarray:
    h, w = prob.shape
    if image.shape[:2] != (h, w):
        raise ValueError(f"image {image.shape[:2]} and probability {prob.shape} differ in size")
    band_px = max(float(config.band_min_px), float(config.band if band_px is None else band_px))
    net = prob > threshold
    radius = config.click_radius
    if config.click_radius_per_size > 0 and net.any():
        radius = min(radius, max(1.0, config.click_radius_per_size * math.sqrt(net.sum() / math.pi)))
    pos, neg = click_disks((h, w), clicks, radius)
    if config.pairwise == 0:
        return (net | pos) & ~neg
    # the region the cut can touch: the band around the network's object, and the click disks
    region = mask_box(pos | neg)
    box = mask_box(net)
    if box is not None:
        m = int(math.ceil(band_px)) + 2
        grown = (max(0, box[0] - m), max(0, box[1] - m), min(h, box[2] + m), min(w, box[3] + m))
        region = grown if region is None else (min(region[0], grown[0]), min(region[1], grown[1]),
                                               max(region[2], grown[2]), max(region[3], grown[3]))
    if region is None:
        return net
    y0, x0, y1, x1 = region
    sl = (slice(y0, y1), slice(x0, x1))
    ch, cw = y1 - y0, x1 - x0
    scale = min(1.0, scale, math.sqrt(config.max_pixels / float(ch * cw)))
    if scale < 1.0:  # a huge region: cut at a reduced scale, the result upsampled (nearest)
        small = (max(2, int(ch * scale)), max(2, int(cw * scale)))
        zy, zx = small[0] / ch, small[1] / cw
        cl = clicks.map(zy, zx, y0 - 0.5 + 0.5 / zy, x0 - 0.5 + 0.5 / zx)  # pixel centres, as the resize
        cfg = replace(config, click_radius=max(1.0, config.click_radius * scale),
                      max_pixels=max(64, small[0] * small[1]), band_min_px=1)  # no second reduction
        cut = _graphcut(_resize(image[sl], small), _resize(prob[sl], small), cl, threshold, cfg,
                        band_px * scale)
        yi = np.minimum((np.arange(ch) * zy).astype(int), small[0] - 1)
        xi = np.minimum((np.arange(cw) * zx).astype(int), small[1] - 1)
        out = net.copy()
        out[sl] = cut[yi][:, xi]
        return (out | pos) & ~neg
    crop = net[sl]
    # one distance transform: pixels within band_px of the boundary (either side) are free
    boundary = crop ^ ndimage.binary_erosion(crop, border_value=0)
    boundary |= ndimage.binary_dilation(crop) & ~crop
    free = ndimage.distance_transform_edt(~boundary) <= band_px if boundary.any() else np.zeros_like(crop)
    free |= pos[sl] | neg[sl]  # clicks far from the network's object still get their disk
    colour_llr = None
    if config.color > 0:
        colour_llr = config.color * colour_log_ratio(image[sl], crop, free, pos[sl], neg[sl], config.color_bins)
    obj = _min_cut(image[sl], prob[sl], crop, free, pos[sl], neg[sl], threshold, config.pairwise, colour_llr)
    out = net.copy()
    out[sl] = obj
    return (out | pos) & ~neg


def colour_log_ratio(image: np.ndarray, net: np.ndarray, free: np.ndarray, pos: np.ndarray, neg: np.ndarray,
                     bins: int) -> np.ndarray:
    """log p(colour | object) - log p(colour | background) per pixel, (H, W) float.

    The two models are colour histograms (``bins`` per channel, smoothed over neighbouring
    bins so that unseen shades borrow from their neighbours) of the pixels the network is sure
    of — outside the free band — plus the click disks, which are the user's word. Clipped to
    +-4 so that colour alone never outvotes a confident network."""
    q = np.clip((image.reshape(-1, image.shape[-1]) * bins).astype(np.int64), 0, bins - 1)
    if q.shape[1] == 1:
        q = np.repeat(q, 3, axis=1)
    code = (q[:, 0] * bins + q[:, 1]) * bins + q[:, 2]
    sure = ~free.ravel()
    fg = (sure & net.ravel()) | pos.ravel()
    bg = (sure & ~net.ravel()) | neg.ravel()
    if fg.sum() < 16 or bg.sum() < 16:  # too few sure pixels of one side: no colour evidence
        return np.zeros(net.shape, np.float32)
    n = bins ** 3

    def density(sel: np.ndarray) -> np.ndarray:
        hist = np.bincount(code[sel], minlength=n).astype(np.float64).reshape(bins, bins, bins)
        hist = ndimage.gaussian_filter(hist, 1.0, mode="constant")
        return (hist + 1e-3) / (hist.sum() + 1e-3 * n)

    llr = np.log(density(fg)) - np.log(density(bg))
    return np.clip(llr.ravel()[code], -4.0, 4.0).reshape(net.shape).astype(np.float32)


def _min_cut(image: np.ndarray, prob: np.ndarray, net: np.ndarray, free: np.ndarray, pos: np.ndarray,
             neg: np.ndarray, threshold: float, pairwise: float,
             colour_llr: np.ndarray | None = None) -> np.ndarray:
    """PyMaxflow min-cut over the free pixels only: unary = the network's log-odds against the
    threshold, pairwise = contrast-sensitive 8-connected (GrabCut's exp(-beta |dI|^2) / dist,
    beta from the band's own contrast); a fixed neighbour (outside ``free``, keeping the
    network's label) becomes a terminal edge; click disks are hard."""
    import maxflow  # noqa: PLC0415 - PyMaxflow, only needed when refining

    h, w = prob.shape
    flat = np.flatnonzero(free)
    n = len(flat)
    index = np.full(h * w, -1, np.int64)
    index[flat] = np.arange(n)
    colours = image.reshape(h * w, -1).astype(np.float32)
    p = np.clip(prob.ravel()[flat].astype(np.float64), 1e-4, 1 - 1e-4)
    t = min(max(threshold, 1e-4), 1 - 1e-4)
    logit = np.log(p / (1 - p)) - math.log(t / (1 - t))  # > 0: the network says object
    if colour_llr is not None:
        logit = logit + colour_llr.ravel()[flat]
    ys, xs = np.divmod(flat, w)
    net_flat = net.ravel()
    pairs = []  # (free pixel k, neighbour pixel q, 1 / distance) for all 8 neighbours
    for dy, dx in (*_OFFSETS, *((-a, -b) for a, b in _OFFSETS)):
        qy, qx = ys + dy, xs + dx
        ok = (qy >= 0) & (qy < h) & (qx >= 0) & (qx < w)
        k = np.nonzero(ok)[0]
        pairs.append((k, (qy * w + qx)[ok], 1.0 / math.hypot(dy, dx)))
    sq = [np.sum((colours[flat[k]] - colours[q]) ** 2, axis=1) for k, q, _ in pairs]
    total = sum(int(len(d)) for d in sq)
    mean = sum(float(d.sum()) for d in sq) / max(1, total)
    beta = 1.0 / (2.0 * mean) if mean > 1e-12 else 0.0
    source = np.maximum(logit, 0.0)  # cost of labelling the pixel background
    sink = np.maximum(-logit, 0.0)  # cost of labelling it object
    starts, ends, caps = [], [], []
    for i, ((k, q, inv), d) in enumerate(zip(pairs, sq)):
        cap = pairwise * inv * np.exp(-beta * d)
        j = index[q]
        both = j >= 0
        if i < len(_OFFSETS):  # free-free edges once: from the forward offsets
            starts.append(k[both])
            ends.append(j[both])
            caps.append(cap[both])
        fixed = ~both
        obj = fixed & net_flat[q]
        source += np.bincount(k[obj], cap[obj], minlength=n)  # background here cuts an object neighbour
        bg = fixed & ~net_flat[q]
        sink += np.bincount(k[bg], cap[bg], minlength=n)
    pf, nf = pos.ravel()[flat], neg.ravel()[flat]
    source[pf], sink[pf] = HARD, 0.0
    source[nf], sink[nf] = 0.0, HARD
    g = maxflow.Graph[float](n, 4 * n)
    g.add_nodes(n)
    if starts:
        cap = np.concatenate(caps)
        g.add_edges(np.concatenate(starts), np.concatenate(ends), cap, cap)
    g.add_grid_tedges(np.arange(n), source, sink)
    g.maxflow()
    out = net_flat.copy()
    out[flat] = ~g.get_grid_segments(np.arange(n))  # source side = object
    return out.reshape(h, w)


