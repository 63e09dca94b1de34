import numpy as np
import pytest
from skimage import data

from napari_icmformer.weights import DEFAULTS

pytest.importorskip("napari")
pytestmark = pytest.mark.napari


@pytest.fixture
def widget(make_napari_viewer, tiny_checkpoint):
    from napari_icmformer._widget import SegmentationWidget  # noqa: PLC0415

    viewer = make_napari_viewer()
    viewer.add_image(data.coins(), name="coins")
    w = SegmentationWidget(viewer)
    viewer.window.add_dock_widget(w, name="iCMFormer")
    if not DEFAULTS["sois"].is_file():
        w.checkpoint.value = tiny_checkpoint
    w.device.value = "cpu"
    return viewer, w


def _wait(qtbot, widget):
    qtbot.waitUntil(lambda: widget.pending == 0, timeout=60000)


def test_widget_docks_and_creates_layers(widget):
    viewer, w = widget
    for name in ("positive clicks", "negative clicks", "current object", "objects"):
        assert name in viewer.layers


@pytest.mark.skipif(not DEFAULTS["sois"].is_file(), reason="needs the shipped default model")
def test_positive_click_segments_near_the_click(widget, qtbot):
    viewer, w = widget
    w.click(54, 44)
    _wait(qtbot, w)
    mask = viewer.layers["current object"].data
    assert mask[54, 44] and mask.sum() < 0.2 * mask.size
    ys, xs = np.nonzero(mask)
    assert abs(ys.mean() - 54) < 20 and abs(xs.mean() - 44) < 20


def test_commit_undo_and_stale_results(widget, qtbot):
    viewer, w = widget
    objects = viewer.layers["objects"]
    objects.data[0:5, 0:5] = 9  # the user's earlier work
    w.click(54, 44)
    w.click(150, 200)  # supersedes the first
    _wait(qtbot, w)
    assert len(w.annotator.clicks) == 2
    w.annotator.prob = np.zeros(objects.data.shape, np.float32)
    w.annotator.prob[50:60, 40:50] = 1  # a known current object
    before = objects.data.copy()
    assert w.commit() == 10
    assert (objects.data[0:5, 0:5] == 9).all() and (objects.data[50:60, 40:50] == 10).all()
    w.undo()
    np.testing.assert_array_equal(objects.data, before)
    assert len(w.annotator.clicks) == 2


def test_rgba_and_16bit_images(make_napari_viewer, tiny_checkpoint, qtbot):
    from napari_icmformer._widget import SegmentationWidget  # noqa: PLC0415

    viewer = make_napari_viewer()
    for img in (np.zeros((64, 80, 4), np.uint8), (np.arange(64 * 80).reshape(64, 80) * 9).astype(np.uint16)):
        layer = viewer.add_image(img, rgb=img.ndim == 3)
        w = SegmentationWidget(viewer)
        w.checkpoint.value = tiny_checkpoint
        w.image_choice.value = layer
        assert w.click(30, 30) is not None
        _wait(qtbot, w)
        assert w.status.value.startswith("last prediction"), w.status.value
        for name in ("current object", "objects", "positive clicks", "negative clicks"):
            viewer.layers.remove(name)
