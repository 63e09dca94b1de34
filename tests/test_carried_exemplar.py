"""An exemplar from another image (carried forward): proposals of the right shape, the
exemplar's patch pasted into every view, and its clicks kept off the recall branch."""

import numpy as np
import pytest
from skimage.draw import disk

from napari_icmformer.exemplar import ExemplarPredictor, RecallConfig
from napari_icmformer.recall_views import TilingConfig, carried_layout, clean_coverage, plan_layout
from src_models import Clicks
from tests.test_exemplar import _exemplar, _image
from tests.test_icmformer_pp import tiny_pp


@pytest.fixture
def recaller():
    return ExemplarPredictor(tiny_pp(), RecallConfig(device="cpu"))


def _other(shape=(120, 140)):
    img = np.zeros((*shape, 3), np.uint8)
    for cy, cx in ((30, 30), (60, 100), (90, 50)):
        img[disk((cy, cx), 9, shape=shape)] = 210
    return img


def test_carried_recall_gives_proposals_of_the_new_image(recaller):
    recaller.set_image(_other())
    recaller.set_exemplar_from(_image(), _exemplar(), Clicks().add(25, 25).add(60, 100, False))
    lay = recaller.layout
    assert all(p is not None for p in lay.pastes)  # no view holds the exemplar: all pasted
    assert clean_coverage(lay)[: lay.shape[0], : lay.shape[1]].min() >= 1
    res = recaller.recall()
    assert res.prob.shape == res.instances.shape == (120, 140) and res.instances.dtype == np.int32
    assert res.tiles == len(lay.origins) == 2  # one view, seen twice (patch at opposite corners)
    assert recaller.stats["image_encodes"] == 1  # the same view's features are encoded once
    # the exemplar's clicks are on another image: none reaches the recall branch
    assert len(recaller.last_recall_clicks) == 0
    fixed = recaller.recall(Clicks().add(60, 100), res.prob)
    uncached = recaller._reference_recall(Clicks().add(60, 100), res.prob)
    assert np.abs(fixed.prob - uncached.prob).max() <= 1e-5
    assert [(c.y, c.x) for c in recaller.last_recall_clicks] == [(60, 100)]


def test_carried_exemplar_on_a_large_image_is_tiled(recaller):
    recaller.set_image(np.zeros((700, 900, 3), np.uint8))
    recaller.set_exemplar_from(_image(), _exemplar())
    lay = recaller.layout
    assert len(set(lay.origins)) > 1 and all(p is not None for p in lay.pastes)
    res = recaller.recall()
    assert res.instances.shape == (700, 900) and res.tiles == len(lay.origins)


def test_same_key_keeps_the_carried_exemplar_and_set_exemplar_replaces_it(recaller):
    recaller.set_image(_other(), key="b")
    recaller.set_exemplar_from(_image(), _exemplar(), key="a:1")
    recaller.recall()
    recaller.set_exemplar_from(_image(), _exemplar(), key="a:1")
    recaller.recall()
    assert recaller.stats["exemplar_encodes"] == 2  # one carried view pair, encoded once
    mask = np.zeros((120, 140), bool)
    mask[disk((30, 30), 9, shape=mask.shape)] = True
    recaller.set_exemplar(mask)  # a same-image exemplar: plain layout, nothing pasted
    assert recaller.layout.pastes == (None,)
    assert recaller.recall().instances.shape == (120, 140)


def test_bad_carried_exemplars(recaller):
    with pytest.raises(RuntimeError, match="set_image"):
        recaller.set_exemplar_from(_image(), _exemplar())
    recaller.set_image(_other())
    with pytest.raises(ValueError, match="does not match its image"):
        recaller.set_exemplar_from(_image(), np.ones((10, 10), bool))
    with pytest.raises(ValueError, match="empty"):
        recaller.set_exemplar_from(_image(), np.zeros((90, 110), bool))
    with pytest.raises(ValueError, match="outside"):
        recaller.set_exemplar_from(_image(), _exemplar(), Clicks().add(500, 5))


def test_carried_layout_checks_the_patch():
    lay = plan_layout((300, 300), 448, (0, 0, 20, 20), TilingConfig())
    with pytest.raises(ValueError, match="half"):
        carried_layout(lay, (300, 20))
    out = carried_layout(lay, (40, 40))
    assert out.pastes == ((408, 408), (0, 0)) and out.origins == ((0, 0), (0, 0))
