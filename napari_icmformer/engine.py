"""The one inference path: a predictor that caches the image features and takes clicks.

Used by the napari plugin, ``icmformer-segment`` and ``icmformer-eval`` alike::

    predictor = Predictor.from_checkpoint()          # shipped default
    predictor.set_image(image)                       # once per image: S1 + cross K/V cached
    prob = predictor.predict(Clicks().add(120, 200)) # per click: click stream, S2, neck, head
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from src_models import Clicks, ICMFormer, ImageFeatures, coord_maps
from src_models.clicks import clicks_to_tensor

from .checkpoints import load_model
from .image import to_rgb01
from .recall_views import Box
from .refine import GraphCutConfig, cut_as_probability, graphcut_refine
from .runtime import DEFAULT_THRESHOLD, autocast, check_clicks, check_fields, check_prev_mask, resolve_runtime
from .weights import default_checkpoint


@dataclass
class PredictorConfig:
    """iCMFormer inference options (Find similar's are ``exemplar.RecallConfig``). Zoom-In as in
    RITM / SimpleClick: crop around the current object (expanded ×1.4, at least 64 px), kept
    while clicks stay inside it and its box IoU with the new object box stays ≥ 0.5, so the
    cached crop features are reused."""

    zoom_in: bool = True
    zoom_expansion: float = 1.4
    zoom_min_crop: int = 64
    zoom_recompute_iou: float = 0.5
    # first click on an object that is small in its view (its zoom-in crop at most this share of
    # the view's side): predict again in that crop (0 = never; 0.3 chosen on training-side
    # nuclei and COCO objects, BENCHMARKS.md "Small objects")
    zoom_refocus: float = 0.3
    # that crop's expansion around the first prediction (wider than zoom_expansion: a first
    # prediction may have missed part of the object)
    zoom_refocus_expansion: float = 2.0
    # a corrective click (one with a previous mask): look again at the area it changed, in a
    # crop of its own ("focus view", after FocalClick, Chen et al. 2022) — the 224 px network
    # sees a 400 px object at 14 tokens a side, a corrected stretch of boundary at many more.
    # The area is the click's connected part of the change, expanded ×focus_expansion, at
    # least focus_min_crop px; it fires only when that crop is at most focus_max_share of the
    # view's side (else it is the view again). Its probability replaces the view's inside the
    # crop, feathered over focus_feather of the crop's half-side towards the crop's border.
    focus: bool = False
    focus_expansion: float = 1.75
    focus_min_crop: int = 64
    focus_max_share: float = 0.6
    focus_feather: float = 0.3
    flip: bool = False
    threshold: float = DEFAULT_THRESHOLD
    device: str = "auto"
    precision: str = "auto"  # "fp32", "fp16", "bf16"; auto = fp32 on CPU, fp16 on CUDA
    cache_size: int = 4  # views (whole image / zoom crops) whose features are kept
    # images larger than this (pixels, longest side) are never squeezed whole into the network:
    # the first click sees a window of this size around the clicks, later clicks zoom in
    max_view: int = 1024
    image_cache: int = 8  # images (e.g. slices of a stack) whose features stay cached by key
    # after the network: "graphcut" = a min-cut on the view that keeps every click (positive
    # disks in, negative out) and follows the image's edges (refine.py); "none" = the network's
    # probability as it is
    refine: str = "graphcut"
    graphcut: GraphCutConfig = field(default_factory=GraphCutConfig)

    def __post_init__(self) -> None:
        check_fields(self, {"refine": ("graphcut", "none")}, {"graphcut": GraphCutConfig})
        for name, low in (("zoom_expansion", 1.0), ("zoom_refocus_expansion", 1.0), ("zoom_refocus", 0.0),
                          ("focus_expansion", 1.0), ("focus_max_share", 0.0), ("focus_feather", 0.0)):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and np.isfinite(v) and v >= low):
                raise ValueError(f"PredictorConfig.{name} must be a finite number >= {low:g}, got {v!r}")


def box_iou(a: Box, b: Box) -> float:
    iy = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    ix = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iy * ix
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / area if area else 0.0


def expanded_box(ys: np.ndarray, xs: np.ndarray, shape: tuple[int, int], expansion: float, min_size: int) -> Box:
    """Box around the points (y, x), expanded about its centre, at least ``min_size``, clipped."""
    h, w = shape
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    cy, cx = (y0 + y1) / 2, (x0 + x1) / 2
    sy = max((y1 - y0) * expansion, min_size)
    sx = max((x1 - x0) * expansion, min_size)
    by0, bx0 = int(max(0, round(cy - sy / 2))), int(max(0, round(cx - sx / 2)))
    by1, bx1 = int(min(h, round(cy + sy / 2))), int(min(w, round(cx + sx / 2)))
    return by0, bx0, max(by1, by0 + 1), max(bx1, bx0 + 1)


def object_roi(mask: np.ndarray, clicks: Clicks, expansion: float, min_size: int) -> Box:
    """Box around the predicted object and the positive clicks, expanded about its centre."""
    ys, xs = np.nonzero(mask)
    pys = np.asarray([c.y for c in clicks.positives], float)
    pxs = np.asarray([c.x for c in clicks.positives], float)
    return expanded_box(np.concatenate([ys, pys]), np.concatenate([xs, pxs]), mask.shape, expansion, min_size)


def click_window(clicks: Clicks, shape: tuple[int, int], size: int, expansion: float = 1.4) -> Box:
    """A window of at least ``size`` px around the positive clicks (all clicks if none)."""
    points = clicks.positives or list(clicks)
    ys = np.asarray([c.y for c in points], float)
    xs = np.asarray([c.x for c in points], float)
    return expanded_box(ys, xs, shape, expansion, size)


class Predictor:
    """Holds a model, the current image and the per-view feature cache."""

    def __init__(self, model: ICMFormer, config: PredictorConfig | None = None) -> None:
        self.config = config or PredictorConfig()
        self.device, self.dtype = resolve_runtime(self.config.device, self.config.precision)
        self.model = model.to(self.device).eval()
        self.size = model.cfg.img_size
        self._image: torch.Tensor | None = None  # (1, 3, H, W) float32 on device
        self._cache: OrderedDict[tuple, ImageFeatures] = OrderedDict()
        self._roi: Box | None = None
        self._key: object | None = None
        self._images: OrderedDict[object, tuple[torch.Tensor, OrderedDict]] = OrderedDict()
        self.stats = {"encodes": 0, "decodes": 0}
        # the last refined output and the network probability behind it: fed back to the
        # network instead of the refined mask when GraphCutConfig.feedback == "network"
        self._last_out: np.ndarray | None = None
        self._last_net: np.ndarray | None = None

    @classmethod
    def from_checkpoint(cls, path: Path | str | None = None, config: PredictorConfig | None = None) -> "Predictor":
        """Load ``path`` (or the shipped default when None)."""
        model = load_model(path if path is not None else default_checkpoint("sois"), expect_arch="icmformer")
        return cls(model, config)  # type: ignore[arg-type]

    # -- image ------------------------------------------------------------------------------
    def set_image(self, image: object, key: object | None = None) -> None:
        """Convert and keep the image; features are computed lazily per view and cached.

        ``key`` (hashable, e.g. ``(layer_id, slice_index)``) names the image: going back to a
        key seen recently restores its cached features instead of recomputing them, so
        moving between the slices of a stack costs one embedding per slice.
        """
        if key is not None and key == self._key and self._image is not None:
            self._roi = None
            return
        if self._key is not None and self._image is not None:
            self._images[self._key] = (self._image, self._cache)
            self._images.move_to_end(self._key)
            while len(self._images) > self.config.image_cache:
                self._images.popitem(last=False)
        self._roi = None
        self._key = key
        if key is not None and key in self._images:
            self._image, self._cache = self._images.pop(key)
            return
        rgb = to_rgb01(image)
        self._image = torch.from_numpy(rgb).permute(2, 0, 1)[None].to(self.device)
        self._cache = OrderedDict()

    @property
    def image_shape(self) -> tuple[int, int]:
        if self._image is None:
            raise RuntimeError("no image set: call set_image(image) first")
        return int(self._image.shape[2]), int(self._image.shape[3])

    def reset_object(self) -> None:
        """Start a new object: forget the zoom-in window (the features stay cached)."""
        self._roi = None

    def _view_tensor(self, box: Box) -> torch.Tensor:
        assert self._image is not None
        y0, x0, y1, x1 = box
        crop = self._image[:, :, y0:y1, x0:x1]
        return F.interpolate(crop, size=(self.size, self.size), mode="bilinear", align_corners=False,
                             antialias=True)

    @torch.no_grad()
    def features(self, box: Box, flip: bool = False) -> ImageFeatures:
        """Cached S1 image tokens + cross-attention K/V for one view of the image."""
        key = (box, flip)
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        view = self._view_tensor(box)
        if flip:
            view = view.flip(-1)
        with self._autocast():
            feats = self.model.encode_image(view)
        self.stats["encodes"] += 1
        self._cache[key] = feats
        while len(self._cache) > self.config.cache_size:
            self._cache.popitem(last=False)
        return feats

    def _autocast(self):
        return autocast(self.device, self.dtype)

    # -- clicks -----------------------------------------------------------------------------
    def choose_view(self, clicks: Clicks, prev_mask: np.ndarray | None) -> Box:
        h, w = self.image_shape
        cfg = self.config
        pred = None if prev_mask is None else prev_mask > cfg.threshold
        if not cfg.zoom_in or pred is None or not pred.any():
            if not cfg.max_view or max(h, w) <= cfg.max_view:
                self._roi = None
                return (0, 0, h, w)
            # a large image: a window around the clicks, kept while the clicks stay inside it
            inside = self._roi is not None and all(
                self._roi[0] <= c.y < self._roi[2] and self._roi[1] <= c.x < self._roi[3] for c in clicks)
            if not inside:
                self._roi = click_window(clicks, (h, w), cfg.max_view, cfg.zoom_expansion)
            assert self._roi is not None
            return self._roi
        roi = object_roi(pred, clicks, cfg.zoom_expansion, cfg.zoom_min_crop)
        keep = self._roi is not None and box_iou(roi, self._roi) >= cfg.zoom_recompute_iou and all(
            self._roi[0] <= c.y < self._roi[2] and self._roi[1] <= c.x < self._roi[3] for c in clicks
        )
        if not keep:
            self._roi = roi
        assert self._roi is not None
        return self._roi

    @torch.no_grad()
    def predict(self, clicks: Clicks, prev_mask: np.ndarray | None = None, *, use_cache: bool = True) -> np.ndarray:
        """Object probability (H, W) float32 at full image resolution.

        ``prev_mask``: the previous prediction (probabilities or boolean), fed back to the
        network and used to place the zoom-in window. ``use_cache=False`` runs the reference
        uncached forward (for tests and benchmarks).
        """
        h, w = self.image_shape
        check_clicks(clicks, (h, w))
        if (prev_mask is not None and prev_mask is self._last_out and self._last_net is not None
                and self.config.graphcut.feedback == "network"):
            prev_mask = self._last_net  # the network sees its own previous output, not the cut
        prev_mask = check_prev_mask(prev_mask, (h, w))
        if len(clicks) == 0:
            return np.zeros((h, w), np.float32)
        box = self.choose_view(clicks, prev_mask)
        prob = self._network(box, clicks, prev_mask, use_cache)
        focus = self._refocus_box(box, prob, clicks, prev_mask)
        if focus is not None:  # a small object seen whole: look again, zoomed in on it
            box = self._roi = focus
            prob = self._network(box, clicks, None, use_cache)
        y0, x0, y1, x1 = box
        out = np.zeros((h, w), np.float32)
        out[y0:y1, x0:x1] = prob
        local = self._focus_box(box, out, clicks, prev_mask)
        if local is not None:  # a correction: the area it changed, seen at a finer scale
            self._apply_focus(local, out, clicks)
        if self.config.refine == "none":
            return out
        net = out.copy()
        out[y0:y1, x0:x1] = self.refine_view(box, out[y0:y1, x0:x1], clicks)
        self._last_out, self._last_net = out, net
        return out

    @torch.no_grad()
    def _network(self, box: Box, clicks: Clicks, prev_mask: np.ndarray | None, use_cache: bool) -> np.ndarray:
        """The network's probability inside ``box`` (its size in image pixels)."""
        y0, x0, y1, x1 = box
        sy, sx = self.size / (y1 - y0), self.size / (x1 - x0)
        # pixel centres map as in the resize: v = (p - y0 + 0.5) * s - 0.5 = (p - d) * s
        view_clicks = clicks.map(sy, sx, y0 - 0.5 + 0.5 / sy, x0 - 0.5 + 0.5 / sx)
        prev = torch.zeros(1, 1, self.size, self.size, device=self.device)
        if prev_mask is not None:
            crop = torch.from_numpy(prev_mask[y0:y1, x0:x1])[None, None].to(self.device)
            prev = F.interpolate(crop, size=(self.size, self.size), mode="bilinear", align_corners=False)
        flips = [False, True] if self.config.flip else [False]
        probs = []
        for flip in flips:
            cl = view_clicks.flipped(self.size) if flip else view_clicks
            pm = prev.flip(-1) if flip else prev
            maps = coord_maps(clicks_to_tensor(cl, self.device), pm, (self.size, self.size),
                              self.model.cfg.click_radius)
            with self._autocast():
                if use_cache:
                    logits = self.model.decode(self.features(box, flip), maps)
                else:
                    view = self._view_tensor(box)
                    logits = self.model(view.flip(-1) if flip else view, maps)
            self.stats["decodes"] += 1
            p = torch.sigmoid(logits.float())
            probs.append(p.flip(-1) if flip else p)
        prob = torch.stack(probs).mean(0)
        prob = F.interpolate(prob, size=(y1 - y0, x1 - x0), mode="bilinear", align_corners=False)[0, 0]
        return prob.cpu().numpy()

    def _refocus_box(self, box: Box, prob: np.ndarray, clicks: Clicks, prev_mask: np.ndarray | None) -> Box | None:
        """The zoom-in crop around the object, when the network saw the object in a view not
        zoomed on it (no previous mask) and the crop is at most ``zoom_refocus`` of the view's
        side: a nucleus seen in a whole 500 px image is a few network pixels wide and comes out
        as a blob; seen again in its crop it is at the scale training showed it."""
        cfg = self.config
        if not cfg.zoom_in or not cfg.zoom_refocus or (prev_mask is not None and (prev_mask > cfg.threshold).any()):
            return None
        pred = prob > cfg.threshold
        if not pred.any():
            return None
        y0, x0, y1, x1 = box
        full = np.zeros(self.image_shape, bool)
        full[y0:y1, x0:x1] = pred
        roi = object_roi(full, clicks, cfg.zoom_refocus_expansion, cfg.zoom_min_crop)
        if max(roi[2] - roi[0], roi[3] - roi[1]) > cfg.zoom_refocus * max(y1 - y0, x1 - x0):
            return None
        return roi

    def _focus_box(self, box: Box, out: np.ndarray, clicks: Clicks, prev_mask: np.ndarray | None) -> Box | None:
        """The focus crop of the latest click (``PredictorConfig.focus``), or None."""
        cfg = self.config
        t = cfg.threshold
        if not cfg.focus or prev_mask is None or len(clicks) < 2 or not (prev_mask > t).any():
            return None
        y0, x0, y1, x1 = box
        last = clicks[-1]
        cy, cx = int(round(last.y)), int(round(last.x))
        if not (y0 <= cy < y1 and x0 <= cx < x1):
            return None
        changed = (out[y0:y1, x0:x1] > t) != (prev_mask[y0:y1, x0:x1] > t)
        ys, xs = np.asarray([cy], float), np.asarray([cx], float)
        if changed[cy - y0, cx - x0]:
            parts, _ = ndimage.label(changed, structure=np.ones((3, 3), bool))
            py, px = np.nonzero(parts == parts[cy - y0, cx - x0])
            ys, xs = np.concatenate([ys, py + y0]), np.concatenate([xs, px + x0])
        local = expanded_box(ys, xs, self.image_shape, cfg.focus_expansion, cfg.focus_min_crop)
        if max(local[2] - local[0], local[3] - local[1]) > cfg.focus_max_share * max(y1 - y0, x1 - x0):
            return None
        return local

    def _apply_focus(self, local: Box, out: np.ndarray, clicks: Clicks) -> None:
        """Run the network on the focus crop (uncached: it moves with every click) with the
        current probability as its previous mask, and blend it into ``out`` in place."""
        y0, x0, y1, x1 = local
        prob = self._network(local, clicks, out, use_cache=False)
        h, w = self.image_shape
        feather = self.config.focus_feather

        def ramp(n: int, open_start: bool, open_end: bool) -> np.ndarray:
            # 0 at the crop's edge, 1 from feather × half-side inwards; a side on the image's
            # border has nothing outside to blend with and stays 1
            if feather <= 0:
                return np.ones(n, np.float32)
            d = np.arange(n) + 0.5
            width = feather * n / 2
            start = np.ones(n) if open_start else np.clip(d / width, 0, 1)
            end = np.ones(n) if open_end else np.clip((n - d) / width, 0, 1)
            return np.minimum(start, end).astype(np.float32)

        weight = np.minimum(ramp(y1 - y0, y0 == 0, y1 == h)[:, None], ramp(x1 - x0, x0 == 0, x1 == w)[None, :])
        out[y0:y1, x0:x1] = weight * prob + (1 - weight) * out[y0:y1, x0:x1]
        self.stats["focus"] = self.stats.get("focus", 0) + 1

    def refine_view(self, box: Box, prob: np.ndarray, clicks: Clicks) -> np.ndarray:
        """The graph-cut result inside the view, as a probability whose decision at the
        threshold is the cut's: pixels the cut keeps agree with the network; pixels it flips
        are set halfway between the threshold and certainty (the view's outside is untouched)."""
        assert self._image is not None
        y0, x0, y1, x1 = box
        image = self._image[0, :, y0:y1, x0:x1].permute(1, 2, 0).float().cpu().numpy()
        t = self.config.threshold
        gc = self.config.graphcut
        side = max(y1 - y0, x1 - x0)
        band_px = gc.band * side / self.size  # network px -> image px
        scale = min(1.0, gc.resolution * self.size / side)
        cut = graphcut_refine(image, prob, clicks.map(1.0, 1.0, y0, x0), t, gc, band_px, scale)
        return cut_as_probability(prob, cut, t)

    def predict_mask(self, clicks: Clicks, prev_mask: np.ndarray | None = None) -> np.ndarray:
        """Boolean mask at the configured threshold."""
        return self.predict(clicks, prev_mask) > self.config.threshold
