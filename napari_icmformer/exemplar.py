"""iCMFormer++ inference: one exemplar object in, every object of its kind out.

Used like :class:`~napari_icmformer.engine.Predictor`::

    recaller = ExemplarPredictor.from_checkpoint("icmformer_pp.pt")
    recaller.set_image(image)                        # recall-branch image features cached
    recaller.set_exemplar(exemplar_mask, clicks)     # exemplar branch + EIM response cached
    result = recaller.recall(Clicks())               # category mask, split into instances
    result = recaller.recall(Clicks().add(40, 300), prev_mask=result.prob)  # fix with clicks

The category objects are spread over the whole image, so MOIS covers the whole image (no
zoom-in window): squeezed into one 448² view when it fits, else in 448² tiles at one scale
(``recall_views``; a tile without the exemplar gets the exemplar's patch pasted into a corner).
The exemplar branch sees the exemplar mask and its clicks (those inside the pasted patch in such
a tile), computed once per exemplar. The recall branch sees the recall clicks plus the exemplar's *true* negatives;
exemplar negatives that land on the current recall prediction are *pseudo* negatives (they sit
on another object of the category, docs/protocols.md §2) and are not fed to the recall branch.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from src_models import Clicks, coord_maps
from src_models.clicks import clicks_to_tensor
from src_models.icmformer_pp import ExemplarFeatures, ICMFormerPP

from .checkpoints import load_model
from .clicking import first_eval_click
from .image import to_rgb01
from .postprocess import click_instances, fix_last_click, local_update, split_height, split_negative_clicks
from .recall_views import (
    RecallLayout,
    TilingConfig,
    blend_weights,
    carried_layout,
    exemplar_patch_box,
    mask_box,
    plan_layout,
)
from .refine import GraphCutConfig, cut_as_probability, graphcut_refine
from .runtime import DEFAULT_THRESHOLD, autocast, check_clicks, check_fields, check_prev_mask, resolve_runtime
from .weights import default_checkpoint

__all__ = ["ExemplarPredictor", "RecallConfig", "RecallResult"]


@dataclass
class RecallConfig:
    """Find-similar (iCMFormer++) inference options; iCMFormer's are ``engine.PredictorConfig``."""

    # iCMFormer++ runs on the whole image (its objects are everywhere) at this square view size;
    # None = the model's training size. 448 beats 224 for the shipped 224² default on held-out
    # nuclei and COCO (BENCHMARKS.md, "MOIS view size"): small objects need the pixels.
    view: int | None = 448
    # what a recall click may change: "local" = only the objects (connected components of the
    # previous or new category mask) under the click, so a click never drops objects elsewhere;
    # "global" = the model's whole new mask (the paper's protocol). BENCHMARKS.md compares them.
    update: str = "local"
    # images larger than the view are cut into view-sized tiles at one scale instead of being
    # squeezed whole (small objects keep their pixels; BENCHMARKS.md, "Large images")
    tiling: TilingConfig = field(default_factory=TilingConfig)
    # instance split of the recall mask: the watershed markers must stand out by
    # h = max(1 px, split_h_per_radius x the exemplar's radius), so big objects (people, cars)
    # are not cut at every bump of their outline while small nuclei still separate
    # (BENCHMARKS.md, "Instances": 0.1 keeps nuclei at the 1 px floor, PennFudanPed GT F1 0.32 -> 0.88)
    split_h_per_radius: float = 0.1
    # size rule: a proposal smaller than this x the exemplar's area is a speck and is not
    # proposed (unless a positive click is on it). Chosen on training splits with
    # benchmarks/bench_size_rule.py (golden exemplar, no click): 0.15 lifts the proposals' object
    # F1 0.640 -> 0.651 (DSB2018[:50]) and 0.442 -> 0.463 (MoNuSeg[56:]); 0.2 and above lose on
    # DSB2018, whose nuclei vary most (4.7 % of its GT nuclei are under 0.15 x a random exemplar)
    min_area: float = 0.15
    # after the network: "graphcut" = the SOIS engine's min-cut (refine.py) over the whole image,
    # so the proposals' outlines follow the image's edges (no click disks: recall clicks act
    # through the fix-click rules; every part kept: the category is everywhere); its band is in
    # image pixels here. Chosen on held-out splits with benchmarks/bench_recall_calibration.py
    # (BENCHMARKS.md, "Find similar's outlines"): pairwise 1, band 2 px, colour model 1 lifts the
    # golden-exemplar proposals' object F1 / mean matched IoU 0.682 / 0.754 -> 0.713 / 0.799
    # (DSB2018[40:50]), 0.512 / 0.658 -> 0.618 / 0.703 (MoNuSeg[16:56]), COCO_Tiny_val[30:] kept
    # (0.321 / 0.537 -> 0.319 / 0.544); a 3 px band gains more on nuclei and loses on COCO.
    # "none" = the network's probability as it is
    refine: str = "graphcut"
    graphcut: GraphCutConfig = field(default_factory=lambda: GraphCutConfig(
        pairwise=1.0, band=2.0, band_min_px=1, color=1.0, drop_unclicked_parts=False, max_pixels=2048 * 2048))
    threshold: float = DEFAULT_THRESHOLD
    device: str = "auto"
    precision: str = "auto"  # "fp32", "fp16", "bf16"; auto = fp32 on CPU, fp16 on CUDA

    def __post_init__(self) -> None:
        check_fields(self, {"update": ("local", "global"), "refine": ("graphcut", "none")},
                     {"tiling": TilingConfig, "graphcut": GraphCutConfig})
        if self.min_area < 0 or self.split_h_per_radius < 0:
            raise ValueError("RecallConfig.min_area and split_h_per_radius must be >= 0")


@dataclass
class RecallResult:
    prob: np.ndarray  # (H, W) float32 probability of "an object of the exemplar's category"
    mask: np.ndarray  # (H, W) bool at the threshold
    instances: np.ndarray  # (H, W) int32 instance labels of ``mask``
    pseudo_negatives: Clicks  # exemplar negatives found on recalled objects (not fed as negatives)
    tiles: int = 1  # network views it took (> 1: a large image seen in tiles)
    # what the last click did: "split" (cut its object out of a proposal), "removed" (a whole
    # proposal), "added" (a positive click off the proposals: the network's answer), or ""
    action: str = ""


class ExemplarPredictor:
    """Holds an iCMFormer++ model, the image and the exemplar; ``recall`` takes the clicks."""

    def __init__(self, model: ICMFormerPP, config: RecallConfig | None = None) -> None:
        if config is not None and not isinstance(config, RecallConfig):
            raise TypeError(f"ExemplarPredictor takes a RecallConfig, got {type(config).__name__}")
        self.config = config or RecallConfig()
        self.device, self.dtype = resolve_runtime(self.config.device, self.config.precision)
        self.model = model.to(self.device).eval()
        self.size = self.config.view or model.cfg.img_size
        if self.size % model.cfg.patch_size or self.size < 2 * model.cfg.patch_size:
            raise ValueError(f"recall view {self.size} must be a multiple of the patch size "
                             f"{model.cfg.patch_size} and at least {2 * model.cfg.patch_size}")
        self._rgb: torch.Tensor | None = None  # (1, 3, H, W) image in [0, 1]
        self._image_key: object | None = None
        self._exemplar_key: object | None = None
        self._shape: tuple[int, int] | None = None
        self._layout: RecallLayout | None = None  # chosen per exemplar (its size decides)
        self._layout_image: torch.Tensor | None = None  # (1, 3, Hp, Wp) the image in the layout
        self._recall_feats: dict[tuple, list] = {}  # per layout grid, per tile
        self._exemplar: tuple[np.ndarray, Clicks] | None = None
        self._tiles: list[_ExemplarTile] = []
        self._tile_probs: dict[int, tuple[bytes, np.ndarray]] = {}  # tile → (input digest, prob)
        self._carried: _CarriedPatch | None = None  # an exemplar from another image (set_exemplar_from)
        self.last_recall_clicks = Clicks()  # what the recall branch saw last (user + true negatives)
        self.stats = {"image_encodes": 0, "exemplar_encodes": 0, "decodes": 0}

    @classmethod
    def from_checkpoint(cls, path: Path | str | None = None,
                        config: RecallConfig | None = None) -> "ExemplarPredictor":
        """Load an iCMFormer++ checkpoint (the shipped MOIS default when None)."""
        model = load_model(path if path is not None else default_checkpoint("mois"), expect_arch="icmformer_pp")
        return cls(model, config)  # type: ignore[arg-type]

    def _autocast(self):
        return autocast(self.device, self.dtype)

    # -- image and exemplar -------------------------------------------------------------------
    def set_image(self, image: object, key: object | None = None) -> None:
        """Convert and keep the image. ``key`` (hashable) names it: the same key again keeps the
        image, its tile features and the exemplar (the caller need not track them)."""
        if key is not None and key == self._image_key and self._rgb is not None:
            return
        self._image_key, self._exemplar_key = key, None
        self._rgb = torch.from_numpy(to_rgb01(image)).permute(2, 0, 1)[None]  # stays on the CPU
        self._shape = (int(self._rgb.shape[2]), int(self._rgb.shape[3]))
        self._layout, self._layout_image, self._recall_feats = None, None, {}
        self._exemplar, self._tiles, self._tile_probs = None, [], {}
        self._carried = None

    @property
    def image_shape(self) -> tuple[int, int]:
        if self._shape is None:
            raise RuntimeError("no image set: call set_image(image) first")
        return self._shape

    @property
    def layout(self) -> RecallLayout:
        """How the image is seen for the current exemplar: squeezed whole, or tiled."""
        if self._layout is None:
            raise RuntimeError("no exemplar: call set_exemplar(mask, clicks) first")
        return self._layout

    def _to_layout(self, array: np.ndarray) -> torch.Tensor:
        """A (H, W) map in the layout (1, 1, Hp, Wp), zero in the padding."""
        lay = self.layout
        t = torch.from_numpy(np.asarray(array, np.float32))[None, None].to(self.device)
        t = F.interpolate(t, size=lay.shape, mode="bilinear", align_corners=False)
        return F.pad(t, (0, lay.padded[1] - lay.shape[1], 0, lay.padded[0] - lay.shape[0]))

    def _layout_clicks(self, clicks: Clicks) -> Clicks:
        sy, sx = self.layout.scale
        return clicks.map(sy, sx, -0.5 + 0.5 / sy, -0.5 + 0.5 / sx)

    def set_exemplar(self, mask: np.ndarray, clicks: Clicks | None = None, key: object | None = None) -> None:
        """The exemplar object (a boolean mask at image size) and the clicks that made it.
        ``key`` names it: the same key again (on the same image) keeps the exemplar features."""
        if key is not None and key == self._exemplar_key and self._exemplar is not None:
            return
        h, w = self.image_shape
        self._carried = None
        mask, clicks = _checked_exemplar(mask, clicks, (h, w), "the image")
        self._exemplar, self._tiles, self._tile_probs = (mask, clicks), [], {}
        layout = plan_layout((h, w), self.size, mask_box(mask), self.config.tiling)
        if self._layout is None or layout.grid != self._layout.grid:
            self._layout_image = None
        self._layout = layout
        # the instance split's marker height depends on the exemplar only: once per exemplar
        self._split_height = split_height(mask, self.config.split_h_per_radius)
        self._exemplar_area = float(np.count_nonzero(mask))
        # a negative click removes the object it is on or the nearest within half the exemplar's radius
        self._negative_reach = max(2.0, 0.5 * float(np.sqrt(self._exemplar_area / np.pi)))
        self._shown = None  # (digest of a result's prob and clicks, its instances)
        self._exemplar_key = key

    def _image_in_layout(self) -> torch.Tensor:
        if self._layout_image is None:
            lay = self.layout
            img = F.interpolate(self._rgb, size=lay.shape, mode="bilinear", align_corners=False,
                                antialias=True).to(self.device)
            pad = (0, lay.padded[1] - lay.shape[1], 0, lay.padded[0] - lay.shape[0])
            self._layout_image = F.pad(img, pad, mode="replicate") if any(pad) else img
        return self._layout_image

    def _tile_image(self, origin: tuple[int, int]) -> torch.Tensor:
        y, x = origin
        return self._image_in_layout()[:, :, y:y + self.size, x:x + self.size]

    def _tile_maps(self, prob: torch.Tensor, clicks: Clicks, origin: tuple[int, int]) -> torch.Tensor:
        """[mask, positive disks, negative disks] of one tile from layout-sized inputs."""
        y, x, v, r = *origin, self.size, self.model.cfg.click_radius
        near = Clicks(c for c in clicks if y - r <= c.y < y + v + r and x - r <= c.x < x + v + r)
        return coord_maps(clicks_to_tensor(near.map(1, 1, y, x), self.device), prob[:, :, y:y + v, x:x + v],
                          (v, v), r)

    def _exemplar_tiles(self) -> list["_ExemplarTile"]:
        """Per tile: the exemplar branch's image and maps (the exemplar pasted in when the tile
        does not hold it) and the blend weights (~0 over a pasted patch)."""
        if self._tiles:
            return self._tiles
        if self._carried is not None:
            return self._carried_tiles()
        lay, v = self.layout, self.size
        mask, clicks = self._exemplar
        ex_prob, ex_clicks = self._to_layout(mask), self._layout_clicks(clicks)
        weights = blend_weights(v, self.config.tiling.overlap // 2) if len(lay.origins) > 1 \
            else np.ones((v, v), np.float32)
        for origin, paste in zip(lay.origins, lay.pastes, strict=True):
            image, maps, w = self._tile_image(origin), self._tile_maps(ex_prob, ex_clicks, origin), weights
            if paste is not None:  # the tile does not hold the exemplar: paste its patch in
                (py0, px0, py1, px1), (cy, cx) = lay.patch, paste
                ph, pw = py1 - py0, px1 - px0
                image = image.clone()
                image[:, :, cy:cy + ph, cx:cx + pw] = self._image_in_layout()[:, :, py0:py1, px0:px1]
                patch = torch.zeros_like(ex_prob[:, :, :v, :v])
                patch[:, :, cy:cy + ph, cx:cx + pw] = ex_prob[:, :, py0:py1, px0:px1]
                # clicks whose pixel centre lies in the patch, moved with it
                inside = Clicks(c for c in ex_clicks if py0 - 0.5 <= c.y < py1 - 0.5 and px0 - 0.5 <= c.x < px1 - 0.5)
                maps = coord_maps(clicks_to_tensor(inside.map(1, 1, py0 - cy, px0 - cx), self.device), patch,
                                  (v, v), self.model.cfg.click_radius)
                w = weights.copy()
                w[cy:cy + ph, cx:cx + pw] *= 1e-4  # a neighbour sees this corner unpasted (plan_layout checks)
            self._tiles.append(_ExemplarTile(origin, image, maps, w))
        return self._tiles

    def set_exemplar_from(self, image: object, mask: np.ndarray, clicks: Clicks | None = None,
                          key: object | None = None) -> None:
        """An exemplar from another image or slice (carried forward to this one): ``image`` is
        the exemplar's own image, ``mask`` and ``clicks`` are on it. The recall branch sees this
        image; the exemplar branch sees each view of it with the exemplar's patch, cut from its
        own image at this image's layout scale (same pixel size assumed), pasted into a corner
        — as a tile that does not hold a same-image exemplar does. Its clicks are not fed to
        the recall branch (they are not on this image). ``key`` names it, as in set_exemplar."""
        if key is not None and key == self._exemplar_key and self._carried is not None:
            return
        h, w = self.image_shape
        rgb = to_rgb01(image)
        mask, clicks = _checked_exemplar(mask, clicks, rgb.shape[:2], "its image")
        box = mask_box(mask)
        by0, bx0, by1, bx1 = box
        # the layout of this image for an object of the exemplar's size (placed at the origin)
        proxy = (0, 0, min(h, by1 - by0), min(w, bx1 - bx0))
        plain = plan_layout((h, w), self.size, proxy, self.config.tiling)
        pb = exemplar_patch_box(box, mask.shape)
        sy, sx = plain.scale
        ph, pw = max(1, round((pb[2] - pb[0]) * sy)), max(1, round((pb[3] - pb[1]) * sx))
        shrink = min(1.0, (self.size // 2) / max(ph, pw))  # a large exemplar: smaller, but pasted
        ph, pw = max(1, int(ph * shrink)), max(1, int(pw * shrink))
        layout = carried_layout(plain, (ph, pw))
        crop = torch.from_numpy(np.ascontiguousarray(rgb[pb[0]:pb[2], pb[1]:pb[3]])).permute(2, 0, 1)[None]
        patch = F.interpolate(crop, size=(ph, pw), mode="bilinear", align_corners=False, antialias=True)
        mcrop = torch.from_numpy(mask[pb[0]:pb[2], pb[1]:pb[3]].astype(np.float32))[None, None]
        pmask = F.interpolate(mcrop, size=(ph, pw), mode="bilinear", align_corners=False)
        fy, fx = ph / (pb[2] - pb[0]), pw / (pb[3] - pb[1])
        pclicks = clicks.map(fy, fx, pb[0] - 0.5 + 0.5 / fy, pb[1] - 0.5 + 0.5 / fx)
        pclicks = Clicks(c for c in pclicks if -0.5 <= c.y < ph - 0.5 and -0.5 <= c.x < pw - 0.5)
        self._exemplar, self._tiles, self._tile_probs = (mask, Clicks()), [], {}  # no exemplar clicks here
        if self._layout is None or layout.grid != self._layout.grid:
            self._layout_image = None
        self._layout = layout
        self._carried = _CarriedPatch(patch.to(self.device), pmask.to(self.device), pclicks)
        self._split_height = split_height(mask, self.config.split_h_per_radius)
        self._exemplar_area = float(np.count_nonzero(mask))
        self._negative_reach = max(2.0, 0.5 * float(np.sqrt(self._exemplar_area / np.pi)))
        self._shown = None
        self._exemplar_key = key

    def _carried_tiles(self) -> list["_ExemplarTile"]:
        """Every tile with the carried exemplar's patch pasted at its corner (see carried_layout)."""
        lay, v, c = self.layout, self.size, self._carried
        ph, pw = c.image.shape[2:]
        weights = blend_weights(v, self.config.tiling.overlap // 2) if len(set(lay.origins)) > 1 \
            else np.ones((v, v), np.float32)
        for origin, (cy, cx) in zip(lay.origins, lay.pastes, strict=True):
            image = self._tile_image(origin).clone()
            image[:, :, cy:cy + ph, cx:cx + pw] = c.image
            patch = torch.zeros((1, 1, v, v), dtype=torch.float32, device=self.device)
            patch[:, :, cy:cy + ph, cx:cx + pw] = c.mask
            maps = coord_maps(clicks_to_tensor(c.clicks.map(1, 1, -cy, -cx), self.device), patch, (v, v),
                              self.model.cfg.click_radius)
            w = weights.copy()
            w[cy:cy + ph, cx:cx + pw] *= 1e-4
            self._tiles.append(_ExemplarTile(origin, image, maps, w))
        return self._tiles

    @torch.no_grad()
    def _exemplar_features(self, tile: "_ExemplarTile") -> ExemplarFeatures:
        if tile.features is None:
            with self._autocast():
                tile.features = self.model.encode_exemplar(tile.image, tile.maps)
            self.stats["exemplar_encodes"] += 1
        return tile.features

    @torch.no_grad()
    def _recall_image_features(self, index: int, origin: tuple[int, int]):
        grid = self.layout.grid
        index = self.layout.origins.index(origin)  # a carried layout sees some tiles twice: one encode
        if grid not in self._recall_feats:
            while len(self._recall_feats) >= 2:  # e.g. the squeezed view and one tiling; not every grid
                self._recall_feats.pop(next(iter(self._recall_feats)))
            self._recall_feats[grid] = [None] * len(self.layout.origins)
        feats = self._recall_feats[grid]
        if feats[index] is None:
            with self._autocast():
                feats[index] = self.model.encode_recall_image(self._tile_image(origin))
            self.stats["image_encodes"] += 1
        return feats[index]

    # -- recall -------------------------------------------------------------------------------
    def recall(self, clicks: Clicks | None = None, prev_mask: np.ndarray | None = None, *,
               min_size: int = 16, on_tile: Callable[[int, int], None] | None = None) -> RecallResult:
        """Every object of the exemplar's category, given recall clicks and the previous result
        (``prev_mask``: the last result's ``prob``). With ``config.update="local"`` the last click
        changes only the objects under it (:func:`~napari_icmformer.postprocess.local_update`).
        The fix-click rules of :mod:`~napari_icmformer.postprocess` follow: a positive click
        inside a proposal splits it, a negative one removes the whole proposal, specks under
        ``config.min_area`` x the exemplar's area (and ``min_size`` px) are not proposed. ``on_tile(done, total)`` is
        called after each tile (a progress bar for large images)."""
        return self._recall(clicks, prev_mask, min_size, on_tile, self._decode_tile)

    def _reference_recall(self, clicks: Clicks | None = None, prev_mask: np.ndarray | None = None, *,
                          min_size: int = 16) -> RecallResult:
        """``recall`` through plain uncached forward passes: the reference tests hold the cached
        path to (same clicks, same result)."""
        return self._recall(clicks, prev_mask, min_size, None, self._forward_tile)

    @torch.no_grad()
    def _recall(self, clicks: Clicks | None, prev_mask: np.ndarray | None, min_size: int,
                on_tile: Callable[[int, int], None] | None,
                decode: Callable[[int, "_ExemplarTile", torch.Tensor], np.ndarray]) -> RecallResult:
        h, w = self.image_shape  # "no image set" before "no exemplar": the first step comes first
        if self._exemplar is None:
            raise RuntimeError("no exemplar: call set_exemplar(mask, clicks) first")
        clicks = clicks if clicks is not None else Clicks()
        check_clicks(clicks, (h, w))
        checked = check_prev_mask(prev_mask, (h, w))
        prev = np.zeros((h, w), np.float32) if checked is None else checked
        _, ex_clicks = self._exemplar
        true_neg, pseudo = split_negative_clicks(Clicks(ex_clicks.negatives), prev > self.config.threshold)
        fed = Clicks.from_points([(c.y, c.x) for c in clicks.positives],
                                 [(c.y, c.x) for c in [*clicks.negatives, *true_neg]])
        self.last_recall_clicks = fed
        prob = self._network_prob(prev, fed, on_tile, decode)
        if self.config.refine == "graphcut":
            prob = self._refined(prob)
        min_area = max(float(min_size), self.config.min_area * self._exemplar_area)
        action = ""
        if prev_mask is not None and len(clicks):
            shown = self._instances_shown(prev, clicks[:-1], min_area)
            if self.config.update == "local":
                prob = local_update(prev, prob, clicks[-1].y, clicks[-1].x, self.config.threshold)
            prob, action = fix_last_click(prob, shown, clicks[-1], self._split_height, self._exemplar_area,
                                          self.config.threshold)
        instances, removed = click_instances(prob > self.config.threshold, clicks, self._split_height, min_area,
                                             self._negative_reach)
        if removed.any():  # written into the probability, so it stays removed after later clicks
            prob = np.where(removed, np.float32(0), prob).astype(np.float32)
        self._shown = (_digest(prob, clicks, min_area, self.config.threshold), instances)
        return RecallResult(prob, prob > self.config.threshold, instances, pseudo, len(self.layout.origins), action)

    def _network_prob(self, prev: np.ndarray, fed: Clicks, on_tile: Callable[[int, int], None] | None,
                      decode: Callable[[int, "_ExemplarTile", torch.Tensor], np.ndarray]) -> np.ndarray:
        """The network's category probability at image size: every tile decoded, blended, resized."""
        h, w = self.image_shape
        lay, v = self.layout, self.size
        prev_l, fed_l = self._to_layout(prev), self._layout_clicks(fed)
        acc = np.zeros(lay.padded, np.float32)
        weight = np.zeros(lay.padded, np.float32)
        for i, tile in enumerate(self._exemplar_tiles()):
            maps = self._tile_maps(prev_l, fed_l, tile.origin)
            prob = decode(i, tile, maps)
            (y, x) = tile.origin
            acc[y:y + v, x:x + v] += prob * tile.weights
            weight[y:y + v, x:x + v] += tile.weights
            if on_tile is not None:
                on_tile(i + 1, len(lay.origins))
        prob_l = torch.from_numpy(acc / weight)[: lay.shape[0], : lay.shape[1]][None, None]
        return F.interpolate(prob_l, size=(h, w), mode="bilinear", align_corners=False)[0, 0].numpy()

    def _refined(self, prob: np.ndarray) -> np.ndarray:
        """The network's probability with the min-cut's decision written in (``RecallConfig.refine``).
        An image over ``graphcut.max_pixels`` keeps the network's outlines: a cut at a reduced
        scale would be coarser than the network's own tiles, which see the image at full size."""
        assert self._rgb is not None
        gc, t = self.config.graphcut, self.config.threshold
        if prob.size > gc.max_pixels:
            return prob
        image = self._rgb[0].permute(1, 2, 0).numpy()  # a view of the kept image, no copy
        return cut_as_probability(prob, graphcut_refine(image, prob, Clicks(), t, gc, band_px=gc.band), t)

    def _instances_shown(self, prob: np.ndarray, clicks: Clicks, min_area: float) -> np.ndarray:
        """The proposals a previous result showed (the last result's, without recomputing)."""
        if self._shown is not None and self._shown[0] == _digest(prob, clicks, min_area, self.config.threshold):
            return self._shown[1]
        return click_instances(prob > self.config.threshold, clicks, self._split_height, min_area,
                               self._negative_reach)[0]

    def _decode_tile(self, index: int, tile: "_ExemplarTile", maps: torch.Tensor) -> np.ndarray:
        """One tile's probability from the cached features; a tile whose inputs did not change
        since the last recall (clicks and their objects are elsewhere) is not decoded again."""
        digest = hashlib.blake2b(maps.cpu().numpy().tobytes(), digest_size=16).digest()
        hit = self._tile_probs.get(index)
        if hit is not None and hit[0] == digest:
            return hit[1]
        with self._autocast():
            logits = self.model.decode(self._exemplar_features(tile),
                                       self._recall_image_features(index, tile.origin), maps, (self.size,) * 2)
        prob = self._tile_prob(logits)
        self._tile_probs[index] = (digest, prob)
        return prob

    def _forward_tile(self, index: int, tile: "_ExemplarTile", maps: torch.Tensor) -> np.ndarray:
        """One tile's probability from a full forward pass, nothing cached (the reference)."""
        with self._autocast():
            recall_image = self._tile_image(tile.origin)
            if self.layout.pastes[index] is None:  # both branches see the same tile
                logits = self.model(recall_image, tile.maps, maps)
            else:  # the exemplar branch sees the pasted exemplar, the recall branch the tile
                logits = self.model.decode(self.model.encode_exemplar(tile.image, tile.maps),
                                           self.model.encode_recall_image(recall_image), maps, (self.size,) * 2)
        return self._tile_prob(logits)

    def _tile_prob(self, logits: torch.Tensor) -> np.ndarray:
        self.stats["decodes"] += 1
        return torch.sigmoid(logits.float())[0, 0].cpu().numpy()


@dataclass
class _CarriedPatch:
    image: torch.Tensor  # (1, 3, ph, pw) the exemplar's patch at this image's layout scale
    mask: torch.Tensor  # (1, 1, ph, pw)
    clicks: Clicks  # the exemplar's clicks in patch pixels


@dataclass
class _ExemplarTile:
    origin: tuple[int, int]
    image: torch.Tensor  # (1, 3, v, v) what the exemplar branch sees
    maps: torch.Tensor  # (1, 3, v, v) exemplar mask + its clicks in this tile
    weights: np.ndarray  # (v, v) blend weights
    features: ExemplarFeatures | None = None


def _checked_exemplar(mask: np.ndarray, clicks: Clicks | None, shape: tuple[int, int],
                      what: str) -> tuple[np.ndarray, Clicks]:
    """A boolean exemplar mask of ``shape`` that is one object, and its clicks (its first click
    added when none is positive, e.g. a hand-painted exemplar, as a user would click)."""
    mask = np.asarray(mask)
    if mask.shape != tuple(shape):
        raise ValueError(f"exemplar mask shape {mask.shape} does not match {what} {tuple(shape)}")
    mask = mask.astype(bool)
    if not mask.any():
        raise ValueError("the exemplar mask is empty: segment and commit an object first")
    if mask.all():
        raise ValueError("the exemplar mask covers the whole image: it cannot be one object")
    clicks = clicks if clicks is not None else Clicks()
    check_clicks(clicks, tuple(shape))
    if not clicks.positives:
        first = first_eval_click(mask)
        clicks = clicks.add(first.y, first.x, True)
    return mask, clicks


def _digest(prob: np.ndarray, clicks: Clicks, *settings: float) -> bytes:
    h = hashlib.blake2b(np.ascontiguousarray(prob, np.float32).tobytes(), digest_size=16)
    h.update(repr((tuple(clicks), settings)).encode())
    return h.digest()


