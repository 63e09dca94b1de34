from dataclasses import replace

import numpy as np
import pytest
from scipy import ndimage
from skimage.draw import disk, ellipse

from napari_icmformer.checkpoints import CheckpointError, save_checkpoint
from napari_icmformer.exemplar import ExemplarPredictor, RecallConfig
from napari_icmformer.postprocess import local_update, split_height, split_instances
from napari_icmformer.weights import DEFAULTS
from src_models import Clicks
from tests.test_icmformer_pp import tiny_pp


def test_split_instances_separates_touching_and_drops_specks():
    mask = np.zeros((80, 120), bool)
    mask[disk((40, 35), 18, shape=mask.shape)] = True
    mask[disk((40, 66), 16, shape=mask.shape)] = True  # touches the first disk
    mask[5:15, 100:112] = True  # a separate square
    mask[70, 5] = True  # a speck
    labels = split_instances(mask, min_size=16)
    assert labels.max() == 3
    assert labels[40, 35] != labels[40, 66] and labels[40, 35] and labels[40, 66]
    assert labels[70, 5] == 0
    assert set(np.unique(labels[mask & (labels > 0)])) == {1, 2, 3}
    assert not labels[~mask].any()
    assert split_instances(np.zeros((10, 10), bool)).max() == 0
    with pytest.raises(ValueError, match="2-D"):
        split_instances(np.zeros((2, 10, 10), bool))


def test_split_instances_keeps_an_elongated_object_whole():
    # a 20 x 30 box: its distance transform has a flat ridge whose local maxima are > 5 px apart;
    # one object, not several (the extended-maxima markers merge the ridge)
    mask = np.zeros((60, 80), bool)
    mask[20:40, 20:50] = True
    assert split_instances(mask).max() == 1
    mask[5:15, 60:78] = True  # a second, separate bar
    labels = split_instances(mask)
    assert labels.max() == 2 and labels[30, 30] != labels[10, 70]
    for angle in (10, 30, 45, 60):  # tilted ridges too (an elongated nucleus at any angle)
        tilted = np.zeros((120, 120), bool)
        tilted[ellipse(60, 60, 12, 40, rotation=np.deg2rad(angle), shape=tilted.shape)] = True
        assert split_instances(tilted).max() == 1, angle
    with pytest.raises(ValueError, match="h must be"):
        split_instances(mask, h=0)


def test_split_height_follows_the_exemplar_size():
    big, small = np.zeros((200, 200), bool), np.zeros((200, 200), bool)
    big[disk((100, 100), 50)] = True
    small[disk((100, 100), 3)] = True
    assert split_height(big, 0.2) == pytest.approx(10, rel=0.02)
    assert split_height(small, 0.2) == 1.0  # never below 1 px
    # a large object with a shallow waist (two r=30 discs 30 px apart: 4 px deep) is one
    # object for a large exemplar (h = 6 px), while h = 1 px would cut it in two
    blob = np.zeros((120, 160), bool)
    blob[disk((60, 65), 30, shape=blob.shape)] = True
    blob[disk((60, 95), 30, shape=blob.shape)] = True
    assert split_instances(blob, h=1.0).max() == 2
    assert split_instances(blob, h=split_height(big, 0.12)).max() == 1


@pytest.fixture
def recaller():
    return ExemplarPredictor(tiny_pp(), RecallConfig(device="cpu"))


def _image():
    rng = np.random.default_rng(0)
    img = (rng.random((90, 110, 3)) * 60).astype(np.uint8)
    for cy, cx in ((25, 25), (25, 80), (65, 50)):
        img[disk((cy, cx), 10, shape=img.shape[:2])] = 220
    return img


def _exemplar():
    m = np.zeros((90, 110), bool)
    m[disk((25, 25), 10, shape=m.shape)] = True
    return m


def test_cached_recall_equals_uncached_and_caches_the_exemplar(recaller):
    recaller.set_image(_image())
    recaller.set_exemplar(_exemplar(), Clicks().add(25, 25).add(60, 100, False))
    first = recaller.recall()
    assert first.prob.shape == (90, 110) and first.instances.shape == (90, 110)
    clicks = Clicks().add(65, 50)
    a = recaller.recall(clicks, first.prob)
    b = recaller._reference_recall(clicks, first.prob)
    assert np.abs(a.prob - b.prob).max() <= 1e-5
    recaller.recall(clicks.add(10, 100, False), a.prob)
    assert recaller.stats["image_encodes"] == 1
    assert recaller.stats["exemplar_encodes"] == 1


def test_exemplar_negative_on_a_recalled_object_is_pseudo(recaller):
    recaller.set_image(_image())
    recaller.set_exemplar(_exemplar(), Clicks().add(25, 25).add(25, 80, False))
    prev = np.zeros((90, 110), np.float32)
    prev[15:36, 70:91] = 1  # the current recall prediction covers the other coin
    res = recaller.recall(Clicks().add(65, 50), prev)
    assert [(c.y, c.x) for c in res.pseudo_negatives] == [(25.0, 80.0)]
    # the recall branch gets the user's click, not the pseudo negative
    assert [(c.y, c.x, c.positive) for c in recaller.last_recall_clicks] == [(65, 50, True)]
    res = recaller.recall(Clicks().add(65, 50), np.zeros((90, 110), np.float32))
    assert len(res.pseudo_negatives) == 0  # nothing recalled there: a true negative, fed as one
    assert [(c.y, c.x, c.positive) for c in recaller.last_recall_clicks] == [(65, 50, True), (25, 80, False)]
    assert recaller.stats["exemplar_encodes"] == 1  # the exemplar branch always sees all its clicks


def test_exemplar_without_clicks_gets_its_first_click(recaller):
    recaller.set_image(_image())
    recaller.set_exemplar(_exemplar())
    assert [(c.y, c.x, c.positive) for c in recaller._exemplar[1]] == [(25, 25, True)]


def test_bad_exemplar_inputs(recaller):
    with pytest.raises(RuntimeError, match="set_image"):
        recaller.set_exemplar(_exemplar())
    recaller.set_image(_image())
    with pytest.raises(RuntimeError, match="exemplar"):
        recaller.recall()
    with pytest.raises(ValueError, match="empty"):
        recaller.set_exemplar(np.zeros((90, 110), bool))
    with pytest.raises(ValueError, match="whole image"):
        recaller.set_exemplar(np.ones((90, 110), bool))
    with pytest.raises(ValueError, match="does not match"):
        recaller.set_exemplar(np.ones((10, 10), bool))
    recaller.set_exemplar(_exemplar())
    with pytest.raises(ValueError, match="outside"):
        recaller.recall(Clicks().add(200, 5))


def test_checkpoints_of_the_wrong_kind_are_refused(tmp_path, tiny_checkpoint):
    with pytest.raises(CheckpointError, match="expected icmformer_pp"):
        ExemplarPredictor.from_checkpoint(tiny_checkpoint)
    path = save_checkpoint(tmp_path / "pp.pt", tiny_pp())
    assert isinstance(ExemplarPredictor.from_checkpoint(path, RecallConfig(device="cpu")), ExemplarPredictor)
    if not DEFAULTS["mois"].is_file():
        with pytest.raises(CheckpointError, match="no trained default MOIS"):
            ExemplarPredictor.from_checkpoint()


def test_local_update_changes_only_the_objects_under_the_click():
    prev = np.zeros((40, 60), np.float32)
    prev[5:15, 5:15] = 0.9  # object A, away from the click
    prev[20:30, 30:40] = 0.8  # object B, clicked
    new = np.zeros_like(prev)
    new[22:34, 28:44] = 0.95  # the model's new B (grown)
    new[5:10, 50:55] = 0.9  # and an unrelated new blob: not under the click, ignored
    out = local_update(prev, new, 25, 35)
    np.testing.assert_array_equal(out[5:15, 5:15], prev[5:15, 5:15])  # A kept although new dropped it
    assert (out[22:34, 28:44] == np.float32(0.95)).all()  # B replaced by its new version
    assert not out[5:10, 50:55].any()
    # a negative click on a false object removes exactly that object
    gone = local_update(prev, np.zeros_like(prev), 10, 10)
    assert not gone[5:15, 5:15].any() and (gone[20:30, 30:40] == np.float32(0.8)).all()
    # nothing under the click in either mask: nothing changes
    np.testing.assert_array_equal(local_update(prev, new, 38, 2), prev)


def test_local_recall_click_leaves_far_objects_alone():
    model = tiny_pp()
    img = _image()
    local = ExemplarPredictor(model, RecallConfig(device="cpu", view=None))
    glob = ExemplarPredictor(model, RecallConfig(device="cpu", view=None, update="global"))
    prev = np.zeros((90, 110), np.float32)
    prev[50:80, 35:65] = 0.9  # a recalled object away from the click
    for r in (local, glob):
        r.set_image(img)
        r.set_exemplar(_exemplar(), Clicks().add(25, 25))
    clicks = Clicks().add(25, 80)
    a, b = local.recall(clicks, prev), glob.recall(clicks, prev)
    far = np.ones((90, 110), bool)
    far[ndimage_component(prev > 0.49, 25, 80) | ndimage_component(b.prob > 0.49, 25, 80)] = False
    np.testing.assert_array_equal(a.prob[far], prev[far])
    changed = ~far
    np.testing.assert_allclose(a.prob[changed], b.prob[changed], atol=1e-6)
    with pytest.raises(ValueError, match="RecallConfig.update"):
        ExemplarPredictor(model, RecallConfig(device="cpu", update="everywhere"))


def test_find_similar_settings_have_their_own_config():
    """Find similar's options live in RecallConfig; an iCMFormer PredictorConfig is refused with
    a clear error instead of being read for fields it does not have."""
    from napari_icmformer.engine import PredictorConfig  # noqa: PLC0415

    with pytest.raises(TypeError, match="RecallConfig"):
        ExemplarPredictor(tiny_pp(), PredictorConfig(device="cpu"))
    for bad in ({"threshold": 1.0}, {"min_area": -0.1}, {"tiling": "on"}, {"refine": "crf"},
                {"graphcut": {"pairwise": 1.0}}):
        with pytest.raises(ValueError, match="RecallConfig"):
            RecallConfig(**bad)
    assert not hasattr(PredictorConfig(), "recall_view")
    recaller = ExemplarPredictor(tiny_pp(), RecallConfig(device="cpu", view=64, threshold=0.3))
    assert recaller.size == 64 and recaller.config.threshold == 0.3


def ndimage_component(mask, y, x):
    from scipy import ndimage

    labels, _ = ndimage.label(mask)
    return labels == labels[y, x] if labels[y, x] else np.zeros_like(mask)


class _ShiftedRecaller(ExemplarPredictor):
    """A recaller whose network answer is known: each coin of ``_image`` shifted 3 px right."""

    def _network_prob(self, prev, fed, on_tile, decode):
        h, w = self.image_shape
        prob = np.full((h, w), 0.1, np.float32)
        for cy, cx in ((25, 25), (25, 80), (65, 50)):
            prob[disk((cy, cx + 3), 10, shape=(h, w))] = 0.9
        self.network_prob = prob
        return prob.copy()


def test_recall_outlines_follow_the_image_edges_within_the_band():
    image = _image()
    truth = np.zeros((90, 110), bool)
    for cy, cx in ((25, 25), (25, 80), (65, 50)):
        truth[disk((cy, cx), 10, shape=truth.shape)] = True
    refined = _ShiftedRecaller(tiny_pp(), RecallConfig(device="cpu"))
    refined.set_image(image)
    refined.set_exemplar(_exemplar())
    res = refined.recall()
    net = refined.network_prob > 0.5

    def iou(a, b):
        return (a & b).sum() / (a | b).sum()

    assert iou(res.mask, truth) > iou(net, truth) + 0.1  # the cut snaps onto the coins' edges
    assert int(res.instances.max()) == 3  # still three proposals
    # only a band of 2 px around the network's outline may change
    far = ndimage.distance_transform_edt(~(net ^ ndimage.binary_erosion(net))) > 3
    assert np.array_equal(res.mask[far], net[far])


def test_recall_refine_none_is_the_network_answer():
    plain = _ShiftedRecaller(tiny_pp(), RecallConfig(device="cpu", refine="none"))
    plain.set_image(_image())
    plain.set_exemplar(_exemplar())
    res = plain.recall()
    assert np.array_equal(res.prob, plain.network_prob)


def test_recall_refine_leaves_an_image_over_its_pixel_budget_to_the_network():
    cfg = RecallConfig(device="cpu", graphcut=replace(RecallConfig().graphcut, max_pixels=64 * 64))
    big = _ShiftedRecaller(tiny_pp(), cfg)  # 90 x 110 > 64 x 64: no coarse cut
    big.set_image(_image())
    big.set_exemplar(_exemplar())
    assert np.array_equal(big.recall().prob, big.network_prob)
