"""Tiled recall on large images: the layout, the pasted exemplar, caching, the whole-image mosaic."""

import numpy as np
import pytest
from PIL import Image
from skimage.draw import disk

from napari_icmformer.data.readers import DatasetError, FolderDataset, TileMosaic, instance_labels
from napari_icmformer.exemplar import ExemplarPredictor, RecallConfig
from napari_icmformer.recall_views import TilingConfig, clean_coverage, plan_layout
from src_models import Clicks
from tests.test_icmformer_pp import tiny_pp


def _covered(layout):
    seen = np.zeros(layout.padded, int)
    for y, x in layout.origins:
        seen[y:y + layout.view, x:x + layout.view] += 1
    return seen


def test_small_images_are_squeezed_large_ones_tiled_at_native_scale():
    cfg = TilingConfig()
    small = plan_layout((300, 420), 448, (10, 10, 30, 30), cfg)
    assert small.squeezed and small.origins == ((0, 0),) and small.scale == (448 / 300, 448 / 420)
    big = plan_layout((1000, 1400), 448, (100, 100, 120, 118), cfg)
    assert not big.squeezed and big.scale == (1.0, 1.0) and big.shape == (1000, 1400)
    seen = _covered(big)
    assert seen.min() >= 1 and len(big.origins) == 3 * 4
    assert all(y + 448 <= 1000 and x + 448 <= 1400 for y, x in big.origins)
    # neighbouring tiles share at least the configured overlap
    ys = sorted({y for y, _ in big.origins})
    assert all(b - a <= 448 - cfg.overlap for a, b in zip(ys, ys[1:]))
    assert plan_layout((1000, 1400), 448, (100, 100, 120, 118), TilingConfig(enabled=False)).squeezed


def test_a_thin_image_is_upsampled_to_fill_the_view_within_the_cap():
    strip = plan_layout((520, 200), 448, (10, 10, 20, 20), TilingConfig(max_scale=2.0))
    assert strip.scale == (2.0, 2.0) and strip.shape == (1040, 400)
    assert strip.padded == (1040, 448)  # the short side is padded up to the view
    assert _covered(strip).min() >= 1
    wide = plan_layout((520, 300), 448, (10, 10, 20, 20), TilingConfig(max_scale=3.0))
    assert wide.shape == (777, 448) and wide.scale == (777 / 520, 448 / 300)  # the short side fills the view


def test_tile_budget_lowers_the_scale_and_big_exemplars_are_squeezed():
    huge = plan_layout((8000, 8000), 448, (100, 100, 120, 120), TilingConfig(max_tiles=16))
    assert len(huge.origins) <= 16 and huge.scale[0] < 1 and _covered(huge).min() >= 1
    # a person-sized exemplar would not fit as a patch in a tile corner: squeeze instead
    assert plan_layout((600, 800), 448, (100, 100, 400, 250), TilingConfig()).squeezed
    assert plan_layout((4000, 4000), 448, (100, 100, 1500, 1500), TilingConfig()).squeezed
    with pytest.raises(ValueError, match="overlap"):
        plan_layout((1000, 1000), 448, (10, 10, 20, 20), TilingConfig(overlap=448))


@pytest.mark.parametrize("shape", [(1000, 1000), (1200, 1200), (1600, 300), (800, 800), (2000, 2000), (520, 696)])
def test_every_pixel_is_seen_unpasted_by_some_tile(shape):
    tiled_sizes = []
    for side in (6, 10, 20, 40, 60, 80, 110):
        box = (shape[0] // 3, shape[1] // 3, shape[0] // 3 + side, shape[1] // 3 + side)
        layout = plan_layout(shape, 448, box, TilingConfig())
        if layout.squeezed:
            continue
        tiled_sizes.append(side)
        hs, ws = layout.shape
        assert clean_coverage(layout)[:hs, :ws].min() >= 1
        py0, px0, py1, px1 = layout.patch
        for paste in layout.pastes:
            if paste is not None:
                assert 0 <= paste[0] <= 448 - (py1 - py0) and 0 <= paste[1] <= 448 - (px1 - px0)
    assert {6, 10, 20}.issubset(tiled_sizes)  # nuclei-sized exemplars are tiled, not squeezed


def test_invalid_tiling_settings_are_refused():
    for bad in (dict(max_tiles=0), dict(max_patch_fraction=0.9), dict(max_scale=0.5), dict(overlap=-1)):
        with pytest.raises(ValueError, match="tiling"):
            TilingConfig(**bad)


def _scene(h=150, w=200, r=5):
    rng = np.random.default_rng(0)
    img = (rng.random((h, w, 3)) * 60).astype(np.uint8)
    centres = [(25, 25), (30, 150), (110, 60), (120, 170), (75, 110)]
    for cy, cx in centres:
        img[disk((cy, cx), r, shape=(h, w))] = 220
    exemplar = np.zeros((h, w), bool)
    exemplar[disk(centres[0], r, shape=(h, w))] = True
    return img, exemplar


def _tiled_predictor(model=None):
    cfg = RecallConfig(device="cpu", view=128, tiling=TilingConfig(overlap=16, max_patch_fraction=0.5))
    return ExemplarPredictor(model or tiny_pp(), cfg)


@pytest.fixture
def tiled():
    return _tiled_predictor()


def test_tiled_recall_pastes_the_exemplar_into_tiles_without_it(tiled):
    img, exemplar = _scene()
    tiled.set_image(img)
    tiled.set_exemplar(exemplar, Clicks().add(25, 25).add(140, 190, False))
    layout = tiled.layout
    assert not layout.squeezed and layout.scale == (1.0, 1.0) and len(layout.origins) == 4
    tiles = tiled._exemplar_tiles()
    holder = tiles[layout.origins.index((0, 0))]
    assert layout.pastes[layout.origins.index((0, 0))] is None
    np.testing.assert_array_equal(holder.maps[0, 0].numpy() > 0.5, exemplar[:128, :128])
    i = next(k for k, p in enumerate(layout.pastes) if p is not None)
    far, (cy, cx), (py0, px0, _, _) = tiles[i], layout.pastes[i], layout.patch
    pasted = far.maps[0, 0].numpy() > 0.5
    assert pasted.sum() == exemplar.sum()  # the whole exemplar, moved into the tile
    # its positive click moved with it, centred on the same pixel of the exemplar
    pos = np.argwhere(far.maps[0, 1].numpy() > 0).mean(0)
    np.testing.assert_allclose(pos, (25 - py0 + cy, 25 - px0 + cx), atol=1e-6)
    assert far.maps[0, 2].sum() == 0  # the far negative click stayed out of the patch
    ys, xs = np.nonzero(pasted)
    # the exemplar's pixels were copied with it, and its blend weight there is ~0
    np.testing.assert_array_equal(far.image[0, :, ys, xs].numpy(), tiled._image_in_layout()[0][:, exemplar].numpy())
    assert far.weights[ys, xs].max() < 1e-3 and holder.weights.max() == 1


def test_tiled_recall_cached_equals_uncached_and_decodes_only_changed_tiles(tiled):
    img, exemplar = _scene()
    tiled.set_image(img)
    tiled.set_exemplar(exemplar, Clicks().add(25, 25))
    ticks = []
    first = tiled.recall(on_tile=lambda done, total: ticks.append((done, total)))
    assert first.prob.shape == img.shape[:2] and first.instances.shape == img.shape[:2] and first.tiles == 4
    assert ticks == [(1, 4), (2, 4), (3, 4), (4, 4)]  # what the widget's progress bar counts
    n = len(tiled.layout.origins)
    assert tiled.stats["decodes"] == n and tiled.stats["image_encodes"] == n and tiled.stats["exemplar_encodes"] == n
    prev = np.zeros(img.shape[:2], np.float32)
    prev[disk((110, 60), 8, shape=prev.shape)] = 0.9
    clicks = Clicks().add(120, 170)
    tiled.recall(clicks, prev)  # a new previous mask: every tile sees new inputs
    assert tiled.stats["decodes"] == 2 * n
    decoded = tiled.stats["decodes"]
    clicks = clicks.add(5, 5, False)
    c = tiled.recall(clicks, prev)  # only the tile around the new click sees new inputs
    assert tiled.stats["decodes"] - decoded == 1
    d = tiled._reference_recall(clicks, prev)
    np.testing.assert_allclose(c.prob, d.prob, atol=1e-5)
    assert tiled.stats["image_encodes"] == n and tiled.stats["exemplar_encodes"] == n


def test_new_exemplar_or_image_never_reuses_stale_tiles(tiled):
    img, exemplar = _scene()
    other = np.zeros_like(exemplar)
    other[disk((110, 60), 5, shape=other.shape)] = True
    tiled.set_image(img)
    tiled.set_exemplar(exemplar, Clicks().add(25, 25))
    tiled.recall()
    n = tiled.stats["image_encodes"]
    tiled.set_exemplar(other, Clicks().add(110, 60))
    after_exemplar = tiled.recall()
    assert tiled.stats["image_encodes"] == n  # the recall branch's tile features were reused
    fresh = _tiled_predictor(tiled.model)
    fresh.set_image(img)
    fresh.set_exemplar(other, Clicks().add(110, 60))
    np.testing.assert_allclose(after_exemplar.prob, fresh.recall().prob, atol=1e-6)
    img2 = img[::-1, ::-1].copy()  # same shape, other pixels
    tiled.set_image(img2)
    tiled.set_exemplar(other, Clicks().add(110, 60))
    fresh.set_image(img2)
    fresh.set_exemplar(other, Clicks().add(110, 60))
    np.testing.assert_allclose(tiled.recall().prob, fresh.recall().prob, atol=1e-6)


def test_a_strip_is_upsampled_and_padded_to_the_view(tiled):
    img, exemplar = _scene(h=60, w=300, r=4)
    exemplar[:] = False
    exemplar[disk((30, 30), 4, shape=exemplar.shape)] = True
    tiled.set_image(img)
    tiled.set_exemplar(exemplar, Clicks().add(30, 30))
    layout = tiled.layout
    assert layout.scale == (1.5, 1.5) and layout.shape == (90, 450) and layout.padded == (128, 450)
    a = tiled.recall()
    b = tiled._reference_recall()
    assert a.prob.shape == (60, 300)
    np.testing.assert_allclose(a.prob, b.prob, atol=1e-5)


def _write_tiles(root, source, cells, size=(20, 30)):
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(parents=True, exist_ok=True)
    for r, c in cells:
        img = np.full((*size, 3), 10 * (r * 2 + c + 1), np.uint8)
        lab = np.zeros(size, np.uint16)
        lab[2:6, 2:6], lab[10:14, 10:14] = 1, 2
        Image.fromarray(img).save(root / "images" / f"{source}_{r}{c}.png")
        Image.fromarray(lab).save(root / "labels" / f"{source}_{r}{c}.png")


def test_tile_mosaic_puts_whole_images_back_together(tmp_path):
    _write_tiles(tmp_path, "slideA", [(0, 0), (0, 1), (1, 0), (1, 1)])
    mosaic = TileMosaic(FolderDataset(tmp_path / "images", tmp_path / "labels", instance_labels))
    assert len(mosaic) == 1
    s = mosaic[0]
    assert s.name == "slideA" and s.image.shape == (40, 60, 3)
    assert s.image[0, 0, 0] == 10 and s.image[0, 30, 0] == 20 and s.image[20, 0, 0] == 30 and s.image[39, 59, 0] == 40
    assert len(s.masks) == 8 and sorted(np.unique(s.labels))[1:] == list(range(1, 9))
    assert s.labels[22, 32] == 7  # tile (1, 1)'s first object, ids unique across tiles
    _write_tiles(tmp_path / "holes", "slideB", [(0, 0), (1, 1)])
    holes = TileMosaic(FolderDataset(tmp_path / "holes" / "images", tmp_path / "holes" / "labels", instance_labels))
    with pytest.raises(DatasetError, match="do not fill"):
        holes[0]
