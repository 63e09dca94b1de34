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


def test_ctrl_z_on_the_image_undoes_the_last_click(widget, qtbot):
    viewer, w = widget
    w.click(54, 44)
    w.click(150, 200, positive=False)
    _wait(qtbot, w)
    from app_model.types import KeyBinding  # noqa: PLC0415

    image = viewer.layers["coins"]
    image.keymap[KeyBinding.from_str("Ctrl+Z")](image)  # what napari calls on Ctrl+Z over the image
    assert len(w.annotator.clicks) == 1
    assert len(viewer.layers["negative clicks"].data) == 0
    assert len(viewer.layers["positive clicks"].data) == 1
    objects = viewer.layers["objects"]
    assert KeyBinding.from_str("Ctrl+Z") not in objects.keymap  # napari's paint undo stays there
    w._shortcut.activated.emit()  # Ctrl+Z while the widget has focus
    assert len(w.annotator.clicks) == 0


def test_stack_segments_the_slice_on_screen(make_napari_viewer, tiny_checkpoint, qtbot):
    from napari_icmformer._widget import SegmentationWidget  # noqa: PLC0415

    viewer = make_napari_viewer()
    rng = np.random.default_rng(0)
    layer = viewer.add_image((rng.random((4, 60, 70)) * 255).astype(np.uint8), name="stack")
    w = SegmentationWidget(viewer)
    w.checkpoint.value = tiny_checkpoint
    w.device.value = "cpu"
    assert viewer.layers["objects"].data.shape == (4, 60, 70)
    viewer.dims.set_current_step(0, 2)
    assert w.current_slice() == (2,)
    w.click(30, 30)
    _wait(qtbot, w)
    assert w.status.value.startswith("last prediction"), w.status.value
    assert viewer.layers["positive clicks"].data.tolist() == [[2, 30, 30]]
    w.annotator.prob = np.zeros((60, 70), np.float32)
    w.annotator.prob[10:20, 10:20] = 1
    assert w.commit() == 1
    objects = viewer.layers["objects"].data
    assert (objects[2, 10:20, 10:20] == 1).all() and objects.sum() == 100  # only slice 2
    # another slice has its own clicks; coming back restores slice 2's state
    viewer.dims.set_current_step(0, 0)
    assert len(w.annotator.clicks) == 0 and len(viewer.layers["positive clicks"].data) == 0
    w.click(5, 5)
    _wait(qtbot, w)
    viewer.dims.set_current_step(0, 2)
    assert w.annotator.undo() == "commit" and objects.sum() == 0
    assert layer.data.shape == (4, 60, 70)


def test_export_coco_and_label_image(widget, tmp_path):
    from pycocotools.coco import COCO  # noqa: PLC0415

    viewer, w = widget
    objects = viewer.layers["objects"]
    objects.data[10:20, 10:30] = 1
    objects.data[40:50, 60:70] = 2
    path = w.export(tmp_path / "coins.json")
    coco = COCO(str(path))
    for ann in coco.loadAnns(coco.getAnnIds()):
        np.testing.assert_array_equal(coco.annToMask(ann).astype(bool), objects.data == ann["label_id"])
    tif = w.export(tmp_path / "coins_labels.tif")
    from skimage.io import imread  # noqa: PLC0415

    np.testing.assert_array_equal(imread(tif), objects.data)


def test_deleting_our_layers_does_not_break_clicking(widget, qtbot):
    viewer, w = widget
    viewer.layers.remove("current object")
    viewer.layers.remove("positive clicks")
    assert w.click(54, 44) is not None
    _wait(qtbot, w)
    assert "current object" in viewer.layers and len(viewer.layers["positive clicks"].data) == 1


def test_find_similar_accept_and_undo(widget, qtbot, tmp_path):
    from napari_icmformer.checkpoints import save_checkpoint  # noqa: PLC0415
    from tests.test_icmformer_pp import tiny_pp  # noqa: PLC0415

    viewer, w = widget
    objects = viewer.layers["objects"]
    assert w.find_similar() is None and "Commit an object first" in w.status.value
    w.annotator.prob = np.zeros(objects.data.shape, np.float32)
    w.annotator.prob[30:70, 25:65] = 1  # the exemplar coin
    assert w.commit() == 1
    objects.data[0:5, 0:5] = 7  # other earlier work
    before = objects.data.copy()
    w.mois_checkpoint.value = save_checkpoint(tmp_path / "pp.pt", tiny_pp())
    assert w.find_similar() is not None
    _wait(qtbot, w)
    assert "proposals" in w.status.value, w.status.value
    assert viewer.layers["proposals"].data.shape == objects.data.shape
    # a recall click runs iCMFormer++ again and is shown; undo steps back
    w.click(150, 200)
    _wait(qtbot, w)
    assert len(viewer.layers["positive clicks"].data) == 1 and len(w.recall_session.clicks) == 1
    w.undo()
    assert len(w.recall_session.clicks) == 0 and len(viewer.layers["positive clicks"].data) == 0
    # known proposals: one new coin, one overlapping the exemplar (dropped), one on earlier work
    inst = np.zeros(objects.data.shape, np.int32)
    inst[100:140, 100:140] = 1
    inst[32:68, 27:63] = 2
    inst[0:6, 0:6] = 3
    w.recall_session.result.instances = inst
    props = w.proposals()
    assert set(np.unique(props)) == {0, 1} and (props[100:140, 100:140] == 1).all()
    ids = w.accept()
    assert ids == [8] and w.recall_session is None
    assert (objects.data[100:140, 100:140] == 8).all()
    np.testing.assert_array_equal(objects.data[before > 0], before[before > 0])  # nothing overwritten
    w.undo()
    np.testing.assert_array_equal(objects.data, before)


@pytest.mark.skipif(not DEFAULTS["mois"].is_file(), reason="needs the shipped iCMFormer++ default")
def test_find_similar_runs_on_the_shipped_default(widget, qtbot):
    viewer, w = widget
    w.annotator.prob = np.zeros(viewer.layers["objects"].data.shape, np.float32)
    w.annotator.prob[30:75, 22:66] = 1  # the left-most coin of the top row
    assert w.commit() == 1
    assert w.find_similar() is not None
    _wait(qtbot, w)
    assert "proposals in" in w.status.value, w.status.value
    props = viewer.layers["proposals"].data
    assert not (props[viewer.layers["objects"].data > 0]).any()  # never on committed objects


def test_find_similar_tiles_a_large_image(make_napari_viewer, tiny_checkpoint, qtbot, tmp_path):
    from napari_icmformer._widget import SegmentationWidget  # noqa: PLC0415
    from napari_icmformer.checkpoints import save_checkpoint  # noqa: PLC0415
    from napari_icmformer.recall_views import TilingConfig, plan_layout  # noqa: PLC0415
    from tests.test_icmformer_pp import tiny_pp  # noqa: PLC0415

    viewer = make_napari_viewer()
    image = np.tile(data.coins(), (2, 2))  # 606 x 768: larger than the 448 px recall view
    viewer.add_image(image, name="coins x4")
    w = SegmentationWidget(viewer)
    w.checkpoint.value = tiny_checkpoint
    w.device.value = "cpu"
    w.mois_checkpoint.value = save_checkpoint(tmp_path / "pp.pt", tiny_pp())
    w.annotator.prob = np.zeros(image.shape, np.float32)
    w.annotator.prob[30:75, 22:66] = 1
    assert w.commit() == 1
    assert w.find_similar() is not None
    _wait(qtbot, w)
    layout = plan_layout(image.shape, 448, (30, 22, 75, 66), TilingConfig())
    assert not layout.squeezed
    assert f"({len(layout.origins)} tiles)" in w.status.value, w.status.value
    qtbot.waitUntil(lambda: w._tile_bar is None, timeout=10000)  # the tiles' progress bar closed
    assert viewer.layers["proposals"].data.shape == image.shape
    # a second exemplar of the same size in the same image reuses every tile's image features
    encodes = w._recaller.stats["image_encodes"]
    w.clear()
    w.annotator.prob = np.zeros(image.shape, np.float32)
    w.annotator.prob[333:378, 22:66] = 1  # the same coin in the lower copy
    assert w.commit() == 2
    assert w.find_similar() is not None
    _wait(qtbot, w)
    assert "proposals in" in w.status.value, w.status.value
    assert w._recaller.stats["image_encodes"] == encodes and w._recaller.stats["exemplar_encodes"] > 0
    assert viewer.layers["proposals"].data.shape == image.shape
