"""The dock widget's "Adapt to my objects" section under Xvfb: progress, Cancel, switch and back."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from napari_icmformer.checkpoints import load_model, save_checkpoint
from tests.conftest import tiny_model
from tests.test_adapt import blobs
from tests.test_icmformer_pp import tiny_pp

pytest.importorskip("napari")
pytestmark = pytest.mark.napari


@pytest.fixture
def adapt_widget(make_napari_viewer, tmp_path):
    """A viewer with two blob images whose objects are committed, a widget on the tiny models."""
    from napari_icmformer._widget import OBJECTS, SegmentationWidget  # noqa: PLC0415

    viewer = make_napari_viewer()
    images = []
    for s in range(2):
        image, labels = blobs(s)
        images.append(viewer.add_image(image, name=f"blobs{s}"))
    w = SegmentationWidget(viewer)
    viewer.window.add_dock_widget(w, name="iCMFormer")
    w.checkpoint.value = save_checkpoint(tmp_path / "tiny.pt", tiny_model())
    w.mois_checkpoint.value = save_checkpoint(tmp_path / "tiny_pp.pt", tiny_pp())
    w.device.value = "cpu"
    for s, layer in enumerate(images):
        w.layer(OBJECTS, w.session_for(layer)).data[...] = blobs(s)[1]
    w.adapt.save_root = tmp_path / "adapted"
    w.adapt.config = replace(w.adapt.config, batch_size=2, mois_batch_size=1, score_clicks=3, exemplars=1)
    return viewer, w


def _wait(qtbot, section, timeout=120000):
    qtbot.waitUntil(lambda: section.worker is None, timeout=timeout)


def test_adapt_switches_to_the_adapted_models_and_back(adapt_widget, qtbot, tmp_path):
    viewer, w = adapt_widget
    section = w.adapt
    assert section in list(w)  # docked inside the main widget
    before = (Path(w.checkpoint.value), Path(w.mois_checkpoint.value))
    section.minutes.value = 0.08
    seen = []
    section.result.changed.connect(seen.append)
    worker = section.start()
    assert worker is not None and not section.adapt_btn.enabled and section.cancel_btn.enabled
    qtbot.wait(200)
    assert section.worker is not None  # the event loop keeps running while it trains
    _wait(qtbot, section)
    assert section.last_result is not None, section.result.value
    paths = section.last_result.paths
    assert Path(w.checkpoint.value) == paths["sois"] and Path(w.mois_checkpoint.value) == paths["mois"]
    assert paths["sois"].parent.parent == tmp_path / "adapted"  # never beside the shipped default
    assert "NoC@85" in section.result.value and "Find similar F1" in section.result.value
    report = json.loads(paths["report"].read_text())
    assert report["objects"]["train"] + report["objects"]["held_out"] <= 16
    load_model(paths["sois"])
    # the main widget now predicts with the adapted model
    w.click(40.0, 40.0)
    qtbot.waitUntil(lambda: w.pending == 0, timeout=60000)
    assert w._predictor_key[0] == str(paths["sois"])
    section.restore()
    assert (Path(w.checkpoint.value), Path(w.mois_checkpoint.value)) == before
    assert not section.restore_btn.enabled


def test_cancel_keeps_the_old_models_and_writes_nothing(adapt_widget, qtbot):
    viewer, w = adapt_widget
    section = w.adapt
    before = (Path(w.checkpoint.value), Path(w.mois_checkpoint.value))
    section.minutes.value = 5.0
    section.start()
    qtbot.wait(300)
    section.cancel()
    _wait(qtbot, section, timeout=60000)
    assert "cancelled" in section.result.value and "unchanged" in section.result.value
    assert (Path(w.checkpoint.value), Path(w.mois_checkpoint.value)) == before
    assert section.last_result is None
    assert not section.save_root.exists() or not any(section.save_root.rglob("*.pt"))
    assert section.adapt_btn.enabled and not section.cancel_btn.enabled


def test_too_few_objects_is_said_at_once(make_napari_viewer, tmp_path):
    from napari_icmformer._widget import OBJECTS, SegmentationWidget  # noqa: PLC0415

    viewer = make_napari_viewer()
    image, labels = blobs(0, n=5)
    layer = viewer.add_image(image, name="few")
    w = SegmentationWidget(viewer)
    w.layer(OBJECTS, w.session_for(layer)).data[...] = labels
    w.adapt.save_root = tmp_path / "adapted"
    assert w.adapt.start() is None
    assert "at least 8 committed objects" in w.adapt.result.value and "commit 3 more" in w.status.value
    assert w.adapt.worker is None and not (tmp_path / "adapted").exists()


def test_stack_slices_with_objects_are_collected(make_napari_viewer, tmp_path):
    from napari_icmformer._widget import OBJECTS, SegmentationWidget  # noqa: PLC0415

    viewer = make_napari_viewer()
    image, labels = blobs(0)
    stack = np.stack([image, image, image])
    layer = viewer.add_image(stack, name="stack")
    w = SegmentationWidget(viewer)
    objects = w.layer(OBJECTS, w.session_for(layer))
    objects.data[0] = labels
    objects.data[2] = np.where(labels > 0, labels + 100, 0)
    items = w.adapt.collect()
    assert [t.name for t in items] == ["stack[0]", "stack[2]"]
    assert all(t.n_objects == 8 and t.image.shape == (128, 128, 3) for t in items)
