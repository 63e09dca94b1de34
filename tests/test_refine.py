"""Graph-cut refinement: clicks are hard constraints, edges are followed, 'none' is untouched."""

from __future__ import annotations

import numpy as np
import pytest

from napari_icmformer.engine import Predictor, PredictorConfig
from napari_icmformer.metrics import iou
from napari_icmformer.refine import GraphCutConfig, graphcut_refine
from src_models import Clicks


def _square_scene(size: int = 96):
    """A bright square on a dark, slightly noisy background, and a blurry, shifted 'network'
    probability that leaks past the square's right edge."""
    rng = np.random.default_rng(0)
    image = np.full((size, size, 3), 0.2) + rng.normal(0, 0.02, (size, size, 3))
    gt = np.zeros((size, size), bool)
    gt[30:66, 30:66] = True
    image[gt] = 0.8
    yy, xx = np.mgrid[:size, :size]
    d = np.maximum(np.abs(yy - 48), np.abs(xx - 54)) / 20.0  # centred 6 px right, 2 px too big
    prob = 1 / (1 + np.exp((d - 1) * 6))
    return np.clip(image, 0, 1).astype(np.float32), prob.astype(np.float32), gt


def test_cut_follows_the_image_edge():
    image, prob, gt = _square_scene()
    clicks = Clicks().add(48, 48)
    cut = graphcut_refine(image, prob, clicks, 0.49, GraphCutConfig(pairwise=10.0, band=10))
    assert iou(cut, gt) > iou(prob > 0.49, gt) + 0.1
    assert iou(cut, gt) > 0.95


def test_colour_model_recovers_a_part_the_network_missed():
    """A red disk on a textured blue-grey background: the network's probability covers only the
    disk's left two thirds, with a smooth (edge-free) fall-off. The pairwise term alone cannot
    move the boundary across the uniform red; the colour model, learnt from the sure pixels,
    pulls the rest of the disk in and stops at the red/blue edge."""
    rng = np.random.default_rng(1)
    size = 96
    yy, xx = np.mgrid[:size, :size]
    gt = (yy - 48) ** 2 + (xx - 48) ** 2 <= 24 ** 2
    image = np.empty((size, size, 3), np.float32)
    image[..., 0] = np.where(gt, 0.85, 0.2)
    image[..., 1] = np.where(gt, 0.15, 0.3)
    image[..., 2] = np.where(gt, 0.15, 0.7)
    image += rng.normal(0, 0.03, image.shape).astype(np.float32)
    image = np.clip(image, 0, 1)
    prob = (1 / (1 + np.exp((xx - 56) / 3.0))) * gt + 0.02 * ~gt  # the right third is missed
    prob = prob.astype(np.float32)
    clicks = Clicks().add(48, 40)
    plain = graphcut_refine(image, prob, clicks, 0.49, GraphCutConfig(pairwise=3.0, band=16))
    coloured = graphcut_refine(image, prob, clicks, 0.49, GraphCutConfig(pairwise=3.0, band=16, color=1.0))
    assert iou(coloured, gt) > iou(plain, gt) + 0.05
    assert iou(coloured, gt) > 0.95
    assert not coloured[~gt & ((yy - 48) ** 2 + (xx - 48) ** 2 > 28 ** 2)].any()  # stops at the edge


def test_clicks_are_hard_constraints_even_against_the_network():
    image, prob, gt = _square_scene()
    # a positive click where the network says 'background', a negative one deep inside its object
    clicks = Clicks().add(10, 10).add(48, 54, positive=False)
    cfg = GraphCutConfig(pairwise=50.0, click_radius=3.0)
    cut = graphcut_refine(image, prob, clicks, 0.49, cfg)
    yy, xx = np.mgrid[:96, :96]
    assert cut[(yy - 10) ** 2 + (xx - 10) ** 2 <= 9].all()
    assert not cut[(yy - 48) ** 2 + (xx - 54) ** 2 <= 9].any()


def test_a_negative_click_inside_a_positive_disk_still_removes_its_pixels():
    """A small object: the negative click lands 2 px from the positive one, inside its disk.
    Before, the positive disk won everywhere and the negative click changed nothing (the
    benchmark clicker then clicked the same place over and over)."""
    image, prob, gt = _square_scene()
    cfg = GraphCutConfig(pairwise=3.0, click_radius=3.0)
    before = graphcut_refine(image, prob, Clicks().add(40, 64), 0.49, cfg)
    clicks = Clicks().add(40, 64).add(40, 66, positive=False)
    cut = graphcut_refine(image, prob, clicks, 0.49, cfg)
    assert before[40, 66] and not cut[40, 66]  # the negative click's own pixel goes out
    assert cut[40, 64] and cut[40, 63]  # the positive click's pixel and its nearer side stay in
    assert not cut[40, 67]  # the negative side of the overlap goes out with it


def test_click_disks_shrink_with_a_small_object():
    """With click_radius_per_size the disk is a share of the network's object's radius: a
    negative click on the rim of a 6 px object takes a 1 px bite, not a 3 px one."""
    size = 48
    yy, xx = np.mgrid[:size, :size]
    gt = (yy - 24) ** 2 + (xx - 24) ** 2 <= 36
    image = np.where(gt[..., None], 0.7, 0.3).astype(np.float32) * np.ones(3, np.float32)
    prob = gt.astype(np.float32) * 0.9 + 0.05
    clicks = Clicks().add(24, 24).add(24, 29, positive=False)
    fixed = graphcut_refine(image, prob, clicks, 0.49,
                            GraphCutConfig(pairwise=0.0, click_radius=3.0, click_radius_per_size=0.0))
    scaled = graphcut_refine(image, prob, clicks, 0.49,
                             GraphCutConfig(pairwise=0.0, click_radius=3.0, click_radius_per_size=0.25))
    assert not fixed[24, 29] and not scaled[24, 29]
    assert (gt & ~scaled).sum() < (gt & ~fixed).sum() / 2  # the bite shrank with the disk
    assert not fixed[24, 27] and scaled[24, 27]


@pytest.mark.parametrize("bad", [dict(pairwise=-1.0), dict(pairwise=float("nan")), dict(band=float("inf")),
                                 dict(click_radius=-2.0), dict(click_radius_per_size=-1.0), dict(max_pixels=0),
                                 dict(feedback="both"),
                                 dict(band_min_px=-1), dict(color=-0.5), dict(color=float("nan")),
                                 dict(color_bins=1), dict(color_bins=256)])
def test_bad_weights_are_refused(bad):
    with pytest.raises(ValueError, match="GraphCutConfig"):
        GraphCutConfig(**bad)


def test_bad_refine_mode_is_refused():
    with pytest.raises(ValueError, match="refine"):
        PredictorConfig(refine="crf")


def _synthetic_image(size: int) -> np.ndarray:
    img = np.zeros((size, size, 3), np.uint8)
    img[size // 4: size // 2, size // 4: size // 2] = 220
    return img


def test_every_click_is_honoured_through_the_engine(tiny):
    """A random tiny network ignores clicks; with refinement the mask still obeys every one."""
    predictor = Predictor(tiny, PredictorConfig(device="cpu"))
    predictor.set_image(_synthetic_image(128))
    clicks = Clicks().add(40, 40).add(100, 20).add(45, 45, positive=False).add(70, 110)
    prob = None
    for k in range(1, len(clicks) + 1):
        prob = predictor.predict(Clicks(list(clicks)[:k]), prob)
        mask = prob > predictor.config.threshold
        for c in list(clicks)[:k]:
            assert mask[int(c.y), int(c.x)] == c.positive, (k, c)


def test_refine_none_is_the_network_output_unchanged(tiny):
    """refine='none' returns exactly the network's probability (the graph-cut predictor
    records the same network output before it refines it)."""
    image = _synthetic_image(128)
    clicks = Clicks().add(40, 40).add(90, 90, positive=False)
    plain = Predictor(tiny, PredictorConfig(device="cpu", refine="none"))
    refined = Predictor(tiny, PredictorConfig(device="cpu", graphcut=GraphCutConfig(feedback="network")))
    prev_plain = prev_ref = None
    for k in (1, 2):
        c = Clicks(list(clicks)[:k])
        plain.set_image(image)
        refined.set_image(image)
        out_plain = plain.predict(c, prev_plain)
        out_ref = refined.predict(c, prev_ref)
        np.testing.assert_array_equal(out_plain, refined._last_net)
        prev_plain, prev_ref = out_plain, out_ref


def test_refinement_on_a_2000_px_image_stays_inside_the_view(tiny):
    image = np.zeros((2000, 2000, 3), np.uint8)
    image[900:1100, 900:1100] = 200
    predictor = Predictor(tiny, PredictorConfig(device="cpu"))
    predictor.set_image(image)
    out = predictor.predict(Clicks().add(1000, 1000))
    y0, x0, y1, x1 = predictor._roi  # the 1024 px window around the click (max_view)
    assert (y1 - y0) < 2000
    changed = out != predictor._last_net
    outside = np.ones_like(changed)
    outside[y0:y1, x0:x1] = False
    assert not changed[outside].any()
    assert out[1000, 1000] > predictor.config.threshold


def test_parts_without_a_positive_click_are_dropped():
    image, prob, gt = _square_scene()
    prob = prob.copy()
    prob[80:90, 5:15] = 0.95  # the network also fires on something far away
    clicks = Clicks().add(48, 48)
    cfg = GraphCutConfig(pairwise=1.0, drop_unclicked_parts=True)
    cut = graphcut_refine(image, prob, clicks, 0.49, cfg)
    assert not cut[80:90, 5:15].any() and cut[48, 48]
    kept = graphcut_refine(image, prob, clicks.add(85, 10), 0.49, cfg)
    assert kept[85, 10] and kept[48, 48]  # a positive click on the piece keeps it
    every = graphcut_refine(image, prob, clicks, 0.49, GraphCutConfig(pairwise=1.0, drop_unclicked_parts=False))
    assert every[85, 10]
