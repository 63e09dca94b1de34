"""Tiled recall on large images: the layout, the pasted exemplar, caching, the whole-image mosaic."""

import numpy as np
import pytest
from PIL import Image
from skimage.draw import disk

from napari_icmformer.data.readers import DatasetError, FolderDataset, TileMosaic, instance_labels
from napari_icmformer.engine import PredictorConfig
from napari_icmformer.exemplar import ExemplarPredictor
from napari_icmformer.recall_views import TilingConfig, plan_layout
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
    assert wide.scale[0] == pytest.approx(448 / 300)


def test_tile_budget_lowers_the_scale_and_big_exemplars_are_squeezed():
    huge = plan_layout((8000, 8000), 448, (100, 100, 120, 120), TilingConfig(max_tiles=16))
    assert len(huge.origins) <= 16 and huge.scale[0] < 1 and _covered(huge).min() >= 1
    # a person-sized exemplar would not fit as a patch in a tile corner: squeeze instead
    assert plan_layout((600, 800), 448, (100, 100, 400, 250), TilingConfig()).squeezed


def _scene(h=150, w=200):
    rng = np.random.default_rng(0)
    img = (rng.random((h, w, 3)) * 60).astype(np.uint8)
    centres = [(25, 25), (30, 150), (110, 60), (120, 170), (75, 110)]
    for cy, cx in centres:
        img[disk((cy, cx), 8, shape=(h, w))] = 220
    exemplar = np.zeros((h, w), bool)
    exemplar[disk(centres[0], 8, shape=(h, w))] = True
    return img, exemplar


@pytest.fixture
def tiled():
    cfg = PredictorConfig(device="cpu", recall_view=64, recall_tiling=TilingConfig(overlap=16, max_patch_fraction=0.6))
    return ExemplarPredictor(tiny_pp(), cfg)


def test_tiled_recall_pastes_the_exemplar_into_tiles_without_it(tiled):
    img, exemplar = _scene()
    tiled.set_image(img)
    tiled.set_exemplar(exemplar, Clicks().add(25, 25).add(140, 190, False))
    layout = tiled.layout
    assert not layout.squeezed and layout.scale == (1.0, 1.0) and len(layout.origins) == 12
    tiles = tiled._exemplar_tiles()
    holder = [t for t in tiles if t.origin == (0, 0)][0]
    np.testing.assert_array_equal(holder.maps[0, 0].numpy() > 0.5, exemplar[:64, :64])
    far = [t for t in tiles if t.origin[0] > 40 and t.origin[1] > 40][0]
    pasted = far.maps[0, 0].numpy() > 0.5
    assert pasted.sum() == exemplar.sum()  # the whole exemplar, moved into the tile
    assert far.maps[0, 1].sum() > 0  # with its positive click
    ys, xs = np.nonzero(pasted)
    # the exemplar's pixels were copied with it, and its blend weight there is ~0
    np.testing.assert_array_equal(far.image[0, :, ys, xs].numpy(), tiled._image_in_layout()[0][:, exemplar].numpy())
    assert far.weights[ys, xs].max() < 1e-3 and holder.weights.max() == 1


def test_tiled_recall_cached_equals_uncached_and_decodes_only_changed_tiles(tiled):
    img, exemplar = _scene()
    tiled.set_image(img)
    tiled.set_exemplar(exemplar, Clicks().add(25, 25))
    first = tiled.recall()
    assert first.prob.shape == img.shape[:2] and first.instances.shape == img.shape[:2]
    n = len(tiled.layout.origins)
    assert tiled.stats["decodes"] == n and tiled.stats["image_encodes"] == n and tiled.stats["exemplar_encodes"] == n
    prev = np.zeros(img.shape[:2], np.float32)
    prev[disk((110, 60), 8, shape=prev.shape)] = 0.9
    clicks = Clicks().add(120, 170)
    tiled.recall(clicks, prev)  # tiles without the new object or click keep their output
    assert n < tiled.stats["decodes"] < 2 * n
    decoded = tiled.stats["decodes"]
    clicks = clicks.add(20, 190, False)
    c = tiled.recall(clicks, prev)  # only the tiles around the new click see new inputs
    assert 0 < tiled.stats["decodes"] - decoded <= 2
    d = tiled.recall(clicks, prev, use_cache=False)
    np.testing.assert_allclose(c.prob, d.prob, atol=1e-5)
    assert tiled.stats["image_encodes"] == n and tiled.stats["exemplar_encodes"] == n


def test_same_size_exemplar_keeps_the_layout_and_image_features(tiled):
    img, exemplar = _scene()
    tiled.set_image(img)
    tiled.set_exemplar(exemplar, Clicks().add(25, 25))
    tiled.recall()
    n = tiled.stats["image_encodes"]
    other = np.zeros_like(exemplar)
    other[disk((110, 60), 8, shape=other.shape)] = True
    tiled.set_exemplar(other, Clicks().add(110, 60))
    tiled.recall()
    assert tiled.stats["image_encodes"] == n  # the recall branch's tile features were reused


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
