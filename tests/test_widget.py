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


@pytest.fixture
def pp_widget(make_napari_viewer, tiny_checkpoint, tmp_path):
    """A viewer with one image and a widget on the tiny iCMFormer / iCMFormer++ models."""
    from napari_icmformer._widget import SegmentationWidget  # noqa: PLC0415
    from napari_icmformer.checkpoints import save_checkpoint  # noqa: PLC0415
    from tests.test_icmformer_pp import tiny_pp  # noqa: PLC0415

    def make(image: np.ndarray, name: str):
        viewer = make_napari_viewer()
        viewer.add_image(image, name=name)
        w = SegmentationWidget(viewer)
        w.checkpoint.value = tiny_checkpoint
        w.device.value = "cpu"
        w.mois_checkpoint.value = save_checkpoint(tmp_path / "pp.pt", tiny_pp())
        return viewer, w

    return make


def _wait(qtbot, widget):
    qtbot.waitUntil(lambda: widget.pending == 0, timeout=60000)


def _recall_reported(status: str) -> bool:
    """Find similar finished and said so: with proposals, or that it found none."""
    return "proposals in" in status or status.startswith("no other object like the exemplar")


def _known_mask(w, box):
    """Set a known live probability (a rectangle) without running the network."""
    y0, x0, y1, x1 = box
    w.annotator.prob = np.zeros(w.annotator.shape, np.float32)
    w.annotator.prob[y0:y1, x0:x1] = 1


def test_widget_docks_and_creates_layers_named_after_the_image(widget):
    viewer, w = widget
    assert "coins: objects" in viewer.layers
    names = [layer.name for layer in viewer.layers]
    assert names[0] == "coins" and names[1] == "coins: objects"  # our layers sit above their image
    for role in ("positive clicks", "negative clicks", "current object"):
        w.layer(role)
    names = [layer.name for layer in viewer.layers]
    assert names[0] == "coins" and all(n.startswith("coins: ") for n in names[1:])


@pytest.mark.skipif(not DEFAULTS["sois"].is_file(), reason="needs the shipped default model")
def test_positive_click_segments_near_the_click(widget, qtbot):
    viewer, w = widget
    w.click(54, 44)
    _wait(qtbot, w)
    mask = w.layer("current object").data
    assert mask[54, 44] and mask.sum() < 0.2 * mask.size
    ys, xs = np.nonzero(mask)
    assert abs(ys.mean() - 54) < 20 and abs(xs.mean() - 44) < 20


def test_commit_undo_and_stale_results(widget, qtbot):
    viewer, w = widget
    objects = w.layer("objects")
    objects.data[0:5, 0:5] = 9  # the user's earlier work
    w.click(54, 44)
    w.click(150, 200)  # supersedes the first
    _wait(qtbot, w)
    assert len(w.annotator.clicks) == 2
    _known_mask(w, (50, 40, 60, 50))
    before = objects.data.copy()
    assert w.commit() == 10
    assert (objects.data[0:5, 0:5] == 9).all() and (objects.data[50:60, 40:50] == 10).all()
    w.undo()
    np.testing.assert_array_equal(objects.data, before)
    assert len(w.annotator.clicks) == 2


def test_rgba_and_16bit_images(make_napari_viewer, tiny_checkpoint, qtbot):
    from napari_icmformer._widget import SegmentationWidget  # noqa: PLC0415

    viewer = make_napari_viewer()
    w = SegmentationWidget(viewer)
    w.checkpoint.value = tiny_checkpoint
    w.device.value = "cpu"
    for img in (np.zeros((64, 80, 4), np.uint8), (np.arange(64 * 80).reshape(64, 80) * 9).astype(np.uint16)):
        layer = viewer.add_image(img, rgb=img.ndim == 3)
        w.image_choice.value = layer
        assert w.click(30, 30) is not None
        _wait(qtbot, w)
        assert w.status.value.startswith("last prediction"), w.status.value


def test_ctrl_z_on_the_image_undoes_the_last_click(widget, qtbot):
    viewer, w = widget
    w.click(54, 44)
    w.click(150, 200, positive=False)
    _wait(qtbot, w)
    from app_model.types import KeyBinding  # noqa: PLC0415

    image = viewer.layers["coins"]
    image.keymap[KeyBinding.from_str("Ctrl+Z")](image)  # what napari calls on Ctrl+Z over the image
    assert len(w.annotator.clicks) == 1
    assert len(w.layer("negative clicks").data) == 0
    assert len(w.layer("positive clicks").data) == 1
    objects = w.layer("objects")
    assert KeyBinding.from_str("Ctrl+Z") not in objects.keymap  # napari's paint undo stays there
    w._shortcut.activated.emit()  # Ctrl+Z while the widget has focus
    assert len(w.annotator.clicks) == 0


class _FakeEvent:
    """What napari hands a mouse-drag callback: world ``position``, canvas ``pos``."""

    def __init__(self, kind, position, pos, button=1, modifiers=()):
        self.type, self.position, self.pos = kind, position, pos
        self.button, self.modifiers = button, modifiers


def test_a_drag_adds_no_click_even_when_the_world_point_stays_put(widget, qtbot):
    viewer, w = widget
    layer = viewer.layers["coins"]
    # while napari pans, the world point under the cursor does not change; the screen point does
    events = [_FakeEvent("mouse_press", (50.0, 50.0), (100, 100))]
    events += [_FakeEvent("mouse_move", (50.0, 50.0), (100 + 5 * k, 100)) for k in range(1, 6)]
    events += [_FakeEvent("mouse_release", (50.0, 50.0), (125, 100))]
    gen = w._mouse(layer, events[0])
    next(gen)
    for ev in events[1:]:
        gen.gi_frame.f_locals["event"].__dict__.update(ev.__dict__)
        try:
            next(gen)
        except StopIteration:
            break
    assert len(w.annotator.clicks) == 0
    # a press and release on the same screen pixel is a click
    press = _FakeEvent("mouse_press", (50.0, 50.0), (100, 100))
    gen = w._mouse(layer, press)
    next(gen)
    press.__dict__.update(_FakeEvent("mouse_release", (50.0, 50.0), (101, 100)).__dict__)
    with pytest.raises(StopIteration):
        next(gen)
    _wait(qtbot, w)
    assert len(w.annotator.clicks) == 1


def test_a_long_message_wraps_instead_of_widening_the_dock(widget, qtbot):
    viewer, w = widget
    w.status.value = "error: " + "a-very-long-path-component/" * 80
    qtbot.wait(10)
    assert w.status.native.wordWrap()
    assert w.native.sizeHint().width() < 800


def test_the_dock_fits_a_laptop_screen_and_its_sections_unfold(widget, qtbot):
    viewer, w = widget
    def shown(part):  # the viewer's window is not on screen in tests: shown within the widget
        return part.native.isVisibleTo(w.native)

    # napari's dock cannot scroll: folded, the widget must fit a 768 px screen's dock, and narrow
    assert not shown(w.series_section.container) and not shown(w.adapt) and not shown(w.help)
    assert w.native.minimumSizeHint().height() < 700 and w.native.sizeHint().width() < 600
    w.series_toggle.value = True
    w.adapt_toggle.value = True
    w.show_help.value = True
    qtbot.wait(10)
    assert shown(w.series_section.container) and shown(w.adapt) and shown(w.help)
    assert "split off the clicked one" in w.help.value and w.find_btn.tooltip.startswith("Fixing proposals")
    w.series_toggle.value = False
    assert not shown(w.series_section.container)


def test_two_images_each_get_their_own_layers_and_foreign_layers_are_left_alone(widget, qtbot):
    viewer, w = widget
    # the user's own layers with our old fixed names
    foreign_image = viewer.add_image(np.full((40, 40), 7, np.uint8), name="current object")
    foreign_labels = viewer.add_labels(np.zeros((303, 384), np.int32), name="objects")
    second = viewer.add_image(data.camera()[:200, :300], name="camera")
    assert w.click(100, 150) is not None  # the newly opened image, not yet chosen in the combo box
    _wait(qtbot, w)
    assert w.image_choice.value is second  # the click went to the image it was made on
    # clicking a layer of the new image (its mouse callback) segments that image
    _known_mask(w, (90, 140, 110, 160))
    assert w.commit() == 1
    assert "camera: objects" in viewer.layers and w.layer("objects").data.shape == (200, 300)
    assert (foreign_image.data == 7).all() and not foreign_labels.data.any()
    assert foreign_labels is not w.layer("objects")
    names = [layer.name for layer in viewer.layers]
    assert names.index("camera: objects") == names.index("camera") + 1
    # a click on the first image (its mouse callback) switches back to it; its state is intact
    coins = viewer.layers["coins"]
    event = _FakeEvent("mouse_press", (20.0, 20.0), (10, 10))
    gen = w._mouse(coins, event)
    next(gen)
    event.type = "mouse_release"
    with pytest.raises(StopIteration):
        next(gen)
    _wait(qtbot, w)
    assert w.image_choice.value is coins and len(w.annotator.clicks) == 1
    assert w.layer("objects").data.shape == (303, 384) and not w.layer("objects").data.any()


def test_threshold_updates_the_live_mask_and_the_predictors(widget, qtbot):
    viewer, w = widget
    w.click(54, 44)
    _wait(qtbot, w)
    w.annotator.prob = np.zeros(w.annotator.shape, np.float32)
    w.annotator.prob[10:20, 10:20] = 0.3
    w.annotator.prob[30:40, 30:40] = 0.8
    w._refresh()
    assert w.layer("current object").data.sum() == 100
    w.threshold.value = 0.2
    assert w.layer("current object").data.sum() == 200  # at once, without another click
    assert w._predictor.config.threshold == pytest.approx(0.2)


def test_export_png_tif_and_coco_named_after_the_image_never_overwriting(widget, qtbot, tmp_path):
    from pycocotools.coco import COCO  # noqa: PLC0415
    from skimage.io import imread  # noqa: PLC0415

    viewer, w = widget
    objects = w.layer("objects")
    objects.data[10:20, 10:30] = 1
    objects.data[40:50, 60:70] = 2
    asked = []
    w.confirm_overwrite = lambda path: asked.append(path) or False
    for name in ("coins.json", "coins_labels.tif", "coins_labels.png"):
        assert w.export(tmp_path / name) is not None
        _wait(qtbot, w)
    coco = COCO(str(tmp_path / "coins.json"))
    assert [img["file_name"] for img in coco.dataset["images"]] == ["coins"]
    for ann in coco.loadAnns(coco.getAnnIds()):
        np.testing.assert_array_equal(coco.annToMask(ann).astype(bool), objects.data == ann["label_id"])
    np.testing.assert_array_equal(imread(tmp_path / "coins_labels.tif"), objects.data)
    np.testing.assert_array_equal(imread(tmp_path / "coins_labels.png"), objects.data)
    # an existing file is replaced only after asking; a refusal keeps it byte for byte
    before = (tmp_path / "coins.json").read_bytes()
    objects.data[70:80, 70:80] = 3
    assert w.export(tmp_path / "coins.json") is None and asked == [tmp_path / "coins.json"]
    assert (tmp_path / "coins.json").read_bytes() == before and "kept" in w.status.value
    # a missing folder is an error, not created
    assert w.export(tmp_path / "missing" / "x.json") is None
    assert not (tmp_path / "missing").exists() and "does not exist" in w.status.value


def test_stack_ids_are_unique_across_slices(make_napari_viewer, tiny_checkpoint, qtbot):
    from napari_icmformer._widget import SegmentationWidget  # noqa: PLC0415

    viewer = make_napari_viewer()
    rng = np.random.default_rng(0)
    layer = viewer.add_image((rng.random((4, 60, 70)) * 255).astype(np.uint8), name="stack")
    w = SegmentationWidget(viewer)
    w.checkpoint.value = tiny_checkpoint
    w.device.value = "cpu"
    assert w.layer("objects").data.shape == (4, 60, 70)
    viewer.dims.set_current_step(0, 2)
    assert w.current_slice() == (2,)
    w.click(30, 30)
    _wait(qtbot, w)
    assert w.status.value.startswith("last prediction"), w.status.value
    assert w.layer("positive clicks").data.tolist() == [[2, 30, 30]]
    _known_mask(w, (10, 10, 20, 20))
    assert w.commit() == 1
    objects = w.layer("objects").data
    assert (objects[2, 10:20, 10:20] == 1).all() and objects.sum() == 100  # only slice 2
    # another slice has its own clicks, and its objects continue the stack's ids
    viewer.dims.set_current_step(0, 0)
    assert len(w.annotator.clicks) == 0 and len(w.layer("positive clicks").data) == 0
    _known_mask(w, (30, 30, 40, 40))
    assert w.commit() == 2
    viewer.dims.set_current_step(0, 2)
    assert w.annotator.undo() == "commit" and (objects[2] == 0).all() and (objects[0] == 2).sum() == 100
    assert layer.data.shape == (4, 60, 70)


def test_current_object_colour_and_marker_size_are_visible(widget):
    from napari_icmformer._widget import CURRENT_COLOUR, MARKER_SCREEN_PX  # noqa: PLC0415

    viewer, w = widget
    current, objects = w.layer("current object"), w.layer("objects")
    live = np.asarray(current.colormap.map(np.array([1])))[0]
    first = np.asarray(objects.colormap.map(np.array([1])))[0]
    np.testing.assert_allclose(live, CURRENT_COLOUR, atol=1e-3)
    assert np.abs(live[:3] - first[:3]).max() > 0.2
    assert current.contour > 0 and objects.contour == 0  # an outline, unlike any committed object
    assert tuple(w.layer("positive clicks").canvas_size_limits) == MARKER_SCREEN_PX


def test_status_follows_clear_and_image_switch(widget, qtbot):
    viewer, w = widget
    w.click(54, 44)
    _wait(qtbot, w)
    w.clear()
    assert w.status.value == "cleared the current object"
    second = viewer.add_image(data.camera()[:64, :64], name="camera")
    w.image_choice.value = second
    assert w.status.value.startswith("camera")


def test_deleting_our_layers_keeps_undo_and_committed_objects(widget, qtbot):
    viewer, w = widget
    _known_mask(w, (10, 10, 30, 30))
    assert w.commit() == 1
    viewer.layers.remove("coins: current object")
    viewer.layers.remove("coins: objects")
    viewer.layers.remove("coins: positive clicks")
    assert w.click(54, 44) is not None
    _wait(qtbot, w)
    assert "coins: current object" in viewer.layers and len(w.layer("positive clicks").data) == 1
    assert (w.layer("objects").data[10:30, 10:30] == 1).all()  # the committed object survived
    assert w.undo() is None and len(w.annotator.clicks) == 0
    w.undo()  # the commit, still in the history
    assert not w.layer("objects").data.any()


def test_find_similar_accept_and_undo(widget, qtbot, tmp_path):
    from napari_icmformer.checkpoints import save_checkpoint  # noqa: PLC0415
    from tests.test_icmformer_pp import tiny_pp  # noqa: PLC0415

    viewer, w = widget
    objects = w.layer("objects")
    assert w.find_similar() is None and "Commit an object first" in w.status.value
    _known_mask(w, (30, 25, 70, 65))  # the exemplar coin
    assert w.commit() == 1
    objects.data[0:5, 0:5] = 7  # other earlier work
    before = objects.data.copy()
    w.mois_checkpoint.value = save_checkpoint(tmp_path / "pp.pt", tiny_pp())
    assert w.find_similar() is not None
    _wait(qtbot, w)
    assert _recall_reported(w.status.value), w.status.value
    assert w.layer("proposals").data.shape == objects.data.shape
    # a recall click runs iCMFormer++ again and is shown; undo steps back
    w.click(150, 200)
    _wait(qtbot, w)
    assert len(w.layer("positive clicks").data) == 1 and len(w.recall.clicks) == 1
    w.undo()
    assert len(w.recall.clicks) == 0 and len(w.layer("positive clicks").data) == 0
    # known proposals: one new coin, one overlapping the exemplar (dropped), one on earlier work
    inst = np.zeros(objects.data.shape, np.int32)
    inst[100:140, 100:140] = 1
    inst[32:68, 27:63] = 2
    inst[0:6, 0:6] = 3
    w.recall.result.instances = inst
    props = w.proposals()
    assert set(np.unique(props)) == {0, 1} and (props[100:140, 100:140] == 1).all()
    ids = w.accept()
    assert ids == [8] and not w.recall.active
    assert (objects.data[100:140, 100:140] == 8).all()
    np.testing.assert_array_equal(objects.data[before > 0], before[before > 0])  # nothing overwritten
    w.undo()
    np.testing.assert_array_equal(objects.data, before)


def test_proposals_wait_on_their_slice(pp_widget, qtbot):
    viewer, w = pp_widget(np.stack([data.coins()] * 2), "stack")
    _known_mask(w, (30, 25, 70, 65))
    assert w.commit() == 1
    assert w.find_similar() is not None
    _wait(qtbot, w)
    rec = w.recall
    viewer.dims.set_current_step(0, 1)
    assert not w.recall.active and "waiting" in w.status.value
    viewer.dims.set_current_step(0, 0)
    assert w.recall is rec and rec.active and rec.result is not None  # nothing was dropped


@pytest.mark.skipif(not DEFAULTS["mois"].is_file(), reason="needs the shipped iCMFormer++ default")
def test_find_similar_runs_on_the_shipped_default(widget, qtbot):
    viewer, w = widget
    _known_mask(w, (30, 22, 75, 66))  # the left-most coin of the top row
    assert w.commit() == 1
    assert w.find_similar() is not None
    _wait(qtbot, w)
    assert _recall_reported(w.status.value), w.status.value
    props = w.layer("proposals").data
    assert not (props[w.layer("objects").data > 0]).any()  # never on committed objects


def test_find_similar_tiles_a_large_image(pp_widget, qtbot):
    from napari_icmformer.recall_views import TilingConfig, plan_layout  # noqa: PLC0415

    image = np.tile(data.coins(), (2, 2))  # 606 x 768: larger than the 448 px recall view
    viewer, w = pp_widget(image, "coins x4")
    _known_mask(w, (30, 22, 75, 66))
    assert w.commit() == 1
    assert w.find_similar() is not None
    _wait(qtbot, w)
    layout = plan_layout(image.shape, 448, (30, 22, 75, 66), TilingConfig())
    assert not layout.squeezed
    assert f"({len(layout.origins)} tiles)" in w.status.value, w.status.value
    qtbot.waitUntil(lambda: w._tile_bar is None, timeout=10000)  # the tiles' progress bar closed
    assert w.layer("proposals").data.shape == image.shape
    # a second exemplar of the same size in the same image reuses every tile's image features
    encodes = w._recaller.stats["image_encodes"]
    w.clear()
    w.clear()
    _known_mask(w, (333, 22, 378, 66))  # the same coin in the lower copy
    assert w.commit() == 2
    assert w.find_similar() is not None
    _wait(qtbot, w)
    assert _recall_reported(w.status.value), w.status.value
    assert w._recaller.stats["image_encodes"] == encodes and w._recaller.stats["exemplar_encodes"] > 0
    assert w.layer("proposals").data.shape == image.shape


def test_find_similar_says_when_it_shrinks_the_image(pp_widget, qtbot):
    image = np.zeros((900, 900), np.uint8)
    image[100:500, 100:500] = 200  # an exemplar big enough that its patch cannot be pasted: squeezed
    viewer, w = pp_widget(image, "big")
    _known_mask(w, (100, 100, 500, 500))
    assert w.commit() == 1
    assert w.find_similar() is not None
    _wait(qtbot, w)
    assert "shrunk" in w.status.value, w.status.value
