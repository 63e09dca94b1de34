"""The widget's Many-images section: a folder navigated with Next / Previous, objects kept and
autosaved, the exemplar carried forward (here, on all images, on all slices), Cancel."""

import numpy as np
import pytest
import tifffile
from PIL import Image
from skimage.draw import disk

from tests.test_widget import _known_mask, _wait, pp_widget  # noqa: F401 - pp_widget is a fixture

pytest.importorskip("napari")
pytestmark = pytest.mark.napari


def _nuclei(seed, shape=(90, 110)):
    rng = np.random.default_rng(seed)
    img = (rng.random(shape) * 40).astype(np.uint8)
    for cy, cx in ((25, 25), (25, 80), (65, 50)):
        img[disk((cy + seed, cx), 10, shape=shape)] = 210
    return img


@pytest.fixture
def folder(tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    for i in range(3):
        Image.fromarray(_nuclei(i)).save(d / f"img_{i}.png")
    return d


def _open(pp_widget, folder, tmp_path):  # noqa: F811
    viewer, w = pp_widget(np.zeros((10, 10), np.uint8), "placeholder")
    series = w.series_section.open(folder, tmp_path / "save")
    assert series is not None, w.status.value
    return viewer, w, w.series_section


def test_navigation_keeps_objects_and_autosaves_every_change(pp_widget, folder, tmp_path, qtbot):  # noqa: F811
    viewer, w, sec = _open(pp_widget, folder, tmp_path)
    assert w.image_choice.value.name == "img_0.png"
    assert sec.line.value.startswith("image 1 of 3, 0 objects")
    _known_mask(w, (15, 15, 36, 36))
    assert w.commit() == 1
    store = sec.series.store
    assert np.array_equal(store.load(0), w.layer("objects").data)  # on disk at once
    _known_mask(w, (55, 40, 76, 61))
    assert w.commit() == 2
    w.undo()  # the undo is saved too
    saved = store.load(0)
    assert saved.max() == 1 and np.array_equal(saved, w.layer("objects").data)
    _known_mask(w, (55, 40, 76, 61))
    assert w.commit() == 2
    first = w.layer("objects").data.copy()
    assert sec.line.value.startswith("image 1 of 3, 2 objects")
    layer = w.image_choice.value
    assert any("PageDown" in str(k) for k in layer.keymap) and any("PageUp" in str(k) for k in layer.keymap)
    assert sec.next()
    assert w.image_choice.value.name == "img_1.png" and not w.layer("objects").data.any()
    assert [lay.name for lay in viewer.layers if lay.name.startswith("img_0")] == []  # the old image closed
    _known_mask(w, (16, 15, 37, 36))
    assert w.commit() == 1
    second = w.layer("objects").data.copy()
    assert sec.previous()
    assert np.array_equal(w.layer("objects").data, first)  # exactly as left
    assert sec.line.value.startswith("image 1 of 3, 2 objects")
    assert not sec.previous() and "first image" in w.status.value
    sec.go(1)
    assert np.array_equal(w.layer("objects").data, second)
    # resumed in a new viewer from the save folder alone: same image, same objects
    viewer2, w2 = pp_widget(np.zeros((10, 10), np.uint8), "placeholder")
    assert w2.series_section.open(tmp_path / "save") is not None
    assert w2.image_choice.value.name == "img_1.png"
    assert np.array_equal(w2.layer("objects").data, second)
    w2.series_section.go(0)
    assert np.array_equal(w2.layer("objects").data, first)


def test_a_folder_with_the_users_files_is_refused(pp_widget, folder, tmp_path):  # noqa: F811
    viewer, w = pp_widget(np.zeros((10, 10), np.uint8), "placeholder")
    assert w.series_section.open(folder, folder) is None  # the images' own folder
    assert "not a napari-icmformer series" in w.status.value
    assert w.series_section.series is None
    assert sorted(p.name for p in folder.iterdir()) == ["img_0.png", "img_1.png", "img_2.png"]


def test_find_similar_here_with_the_last_exemplar(pp_widget, folder, tmp_path, qtbot):  # noqa: F811
    viewer, w, sec = _open(pp_widget, folder, tmp_path)
    assert sec.find_here() is None and "No exemplar yet" in w.status.value
    _known_mask(w, (15, 15, 36, 36))
    assert w.commit() == 1
    assert w.find_similar() is not None
    _wait(qtbot, w)
    assert sec.exemplar is not None and "img_0.png, object 1" in sec.exemplar.source
    w.clear()
    sec.next()
    assert sec.find_here() is not None
    _wait(qtbot, w)
    rec = w.recall
    assert rec.active and rec.carried is sec.exemplar and rec.result.instances.shape == (90, 110)
    assert w.layer("proposals").data.shape == (90, 110)
    ids = w.accept()
    assert np.array_equal(sec.series.store.load(1), w.layer("objects").data)  # the accept was saved
    assert w.layer("objects").data.max() == len(ids)


def test_find_similar_on_all_images_then_review(pp_widget, folder, tmp_path, qtbot):  # noqa: F811
    viewer, w, sec = _open(pp_widget, folder, tmp_path)
    _known_mask(w, (15, 15, 36, 36))
    assert w.commit() == 1
    assert w.find_similar() is not None
    _wait(qtbot, w)
    w.clear()
    assert sec.find_all() is not None
    assert sec.cancel_btn.enabled
    _wait(qtbot, w)
    assert "proposals on 3 images" in w.status.value, w.status.value
    assert not sec.cancel_btn.enabled
    assert sorted(sec.waiting) == [1, 2]  # waiting on the images not on screen
    assert w.recall.active and w.recall.result is not None  # and shown on this one
    sec.next()
    rec = w.recall
    assert rec.active and rec.result.instances.shape == (90, 110)
    assert "waiting on image(s) 1, 3" in sec.line.value  # the one left unreviewed waits too
    w.accept()
    assert np.array_equal(sec.series.store.load(1), w.layer("objects").data)
    sec.previous()
    sec.next()
    assert not w.recall.active  # accepted proposals do not come back


def test_find_similar_on_all_slices_of_a_stack_and_cancel(pp_widget, tmp_path, qtbot):  # noqa: F811
    stack = np.stack([_nuclei(i) for i in range(4)])
    viewer, w = pp_widget(stack, "stack")
    _known_mask(w, (15, 15, 36, 36))
    assert w.commit() == 1
    assert w.find_similar() is not None
    _wait(qtbot, w)
    w.clear()
    session = w.session
    assert w.series_section.find_all() is not None
    _wait(qtbot, w)
    assert "proposals on 4 slices" in w.status.value, w.status.value
    for k in range(4):
        rec = session.recalls[(k,)]
        assert rec.active and rec.result.instances.shape == (90, 110)
    viewer.dims.set_current_step(0, 2)
    assert w.recall is session.recalls[(2,)]
    # Cancel stops between slices: what is done stays, the rest is not run
    big = np.stack([_nuclei(i % 3) for i in range(40)])
    viewer2, w2 = pp_widget(big, "long stack")
    _known_mask(w2, (15, 15, 36, 36))
    assert w2.commit() == 1
    w2.find_similar()
    _wait(qtbot, w2)
    w2.clear()
    w2.series_section.find_all()
    w2.series_section.cancel()
    _wait(qtbot, w2)
    assert w2.status.value.startswith("cancelled after"), w2.status.value
    done = sum(1 for r in w2.session.recalls.values() if getattr(r, "carried", None) is not None)
    assert done < 40


def test_saved_labels_of_a_stack_image_in_a_series(pp_widget, tmp_path, qtbot):  # noqa: F811
    d = tmp_path / "stacks"
    d.mkdir()
    tifffile.imwrite(d / "s.tif", np.stack([_nuclei(0), _nuclei(1)]))
    viewer, w = pp_widget(np.zeros((10, 10), np.uint8), "placeholder")
    sec = w.series_section
    assert sec.open(d, tmp_path / "save") is not None
    viewer.dims.set_current_step(0, 1)
    _known_mask(w, (16, 15, 37, 36))
    assert w.commit() == 1
    saved = sec.series.store.load(0)
    assert saved.shape == (2, 90, 110) and saved[1].max() == 1 and not saved[0].any()


def test_series_through_the_plugin_entry(make_napari_viewer, folder, tmp_path, tiny_checkpoint, qtbot):
    # napari hands a plugin a proxy of the viewer, whose add_image returns a proxy of the layer:
    # the series must still hold (and autosave) the layer the widget's events see
    viewer = make_napari_viewer()
    _, w = viewer.window.add_plugin_dock_widget("napari-icmformer", "Interactive segmentation")
    w.checkpoint.value = tiny_checkpoint
    w.device.value = "cpu"
    sec = w.series_section
    sec.folder.value = folder
    sec.save_folder.value = tmp_path / "save"
    sec.open_btn.changed.emit(True)
    assert sec.layer is w.image_choice.value
    _known_mask(w, (15, 15, 36, 36))
    assert w.commit() == 1
    assert sec.series.store.load(0).max() == 1 and sec.line.value.startswith("image 1 of 3, 1 object ")
    sec.next_btn.changed.emit(True)
    assert w.image_choice.value.name == "img_1.png" and [lay.name for lay in viewer.layers if
                                                          isinstance(lay, type(sec.layer))] == ["img_1.png"]


def test_painting_by_hand_is_autosaved(pp_widget, folder, tmp_path, qtbot):  # noqa: F811
    viewer, w, sec = _open(pp_widget, folder, tmp_path)
    objects = w.layer("objects")
    objects.paint((20, 20), 7)  # napari's brush, as a stroke does
    qtbot.waitUntil(lambda: sec.series.store.saved(0) and sec.series.store.load(0).max() == 7, timeout=5000)
    assert np.array_equal(sec.series.store.load(0), objects.data)
