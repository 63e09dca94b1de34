"""The dock widget: click to segment, commit, clear, undo. Thin: state lives in Annotator.

Mouse (on the image): left-click = positive click, right-click or Shift+left-click = negative.
Keys (bound on this plugin's layers and the image, so napari's own bindings stay intact):
C = commit the current object, Shift+C = clear the current clicks, Ctrl+Z (widget button) = undo.
Predictions run on a napari thread worker; a newer click supersedes a running one.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, FloatSpinBox, Label, PushButton
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info

from .annotator import Annotator
from .engine import Predictor, PredictorConfig

POSITIVE, NEGATIVE, CURRENT, OBJECTS = "positive clicks", "negative clicks", "current object", "objects"
HELP = "Left-click: positive · Right/Shift-click: negative · C: commit · Shift+C: clear · Undo button"


class SegmentationWidget(Container):
    def __init__(self, viewer) -> None:
        self.viewer = viewer
        self.image_choice = ComboBox(label="image", choices=self._image_layers)
        self.checkpoint = FileEdit(label="checkpoint", mode="r", value="", filter="*.pt *.pth *.safetensors")
        self.device = ComboBox(label="device", choices=["auto", "cpu", "cuda", "mps"], value="auto")
        self.zoom_in = CheckBox(label="zoom-in", value=True)
        self.threshold = FloatSpinBox(label="threshold", value=0.49, min=0.01, max=0.99, step=0.01)
        self.commit_btn = PushButton(text="Commit (C)")
        self.clear_btn = PushButton(text="Clear (Shift+C)")
        self.undo_btn = PushButton(text="Undo (Ctrl+Z)")
        self.status = Label(value="Select an image and click on an object.")
        super().__init__(widgets=[Label(value=HELP), self.image_choice, self.checkpoint, self.device, self.zoom_in,
                                  self.threshold, self.commit_btn, self.clear_btn, self.undo_btn, self.status])
        self._lock = threading.Lock()
        self._predictor: Predictor | None = None
        self._predictor_key: tuple | None = None
        self._image_id: int | None = None
        self.annotator: Annotator | None = None
        self.last_worker = None
        self.pending = 0  # predictions started and not yet finished (tests wait on this)
        self.commit_btn.changed.connect(self.commit)
        self.clear_btn.changed.connect(self.clear)
        self.undo_btn.changed.connect(self.undo)
        self.image_choice.changed.connect(self._on_image_changed)
        viewer.layers.events.inserted.connect(lambda e: self.image_choice.reset_choices())
        viewer.layers.events.removed.connect(lambda e: self.image_choice.reset_choices())
        self._on_image_changed()

    # -- layers -----------------------------------------------------------------------------
    def _image_layers(self, _=None) -> list:
        from napari.layers import Image  # noqa: PLC0415

        return [layer for layer in self.viewer.layers if isinstance(layer, Image)]

    def _layer(self, name: str, kind: str, shape: tuple[int, int]):
        if name in self.viewer.layers:
            return self.viewer.layers[name]
        if kind == "labels":
            layer = self.viewer.add_labels(np.zeros(shape, np.int32), name=name)
        else:
            colour = "lime" if name == POSITIVE else "red"
            layer = self.viewer.add_points(np.zeros((0, 2)), name=name, face_color=colour, size=8)
        layer.bind_key("c", lambda _layer: self.commit(), overwrite=True)
        layer.bind_key("Shift-c", lambda _layer: self.clear(), overwrite=True)
        layer.mouse_drag_callbacks.append(self._mouse)
        return layer

    def _on_image_changed(self, *_) -> None:
        image = self.image_choice.value
        if image is None:
            return
        data = np.asarray(image.data)
        shape = data.shape[:2] if image.rgb else data.shape
        if len(shape) != 2:
            self.status.value = "Only 2-D images are supported in this version (pick one slice)."
            return
        objects = self._layer(OBJECTS, "labels", shape)
        if objects.data.shape != shape:
            show_error(f"'{OBJECTS}' layer shape {objects.data.shape} does not match image {shape}")
            return
        self._layer(CURRENT, "labels", shape)
        self._layer(POSITIVE, "points", shape)
        self._layer(NEGATIVE, "points", shape)
        self.annotator = Annotator(shape, self.threshold.value, objects=objects.data)
        if self._mouse not in image.mouse_drag_callbacks:
            image.mouse_drag_callbacks.append(self._mouse)
            image.bind_key("c", lambda _layer: self.commit(), overwrite=True)
            image.bind_key("Shift-c", lambda _layer: self.clear(), overwrite=True)
        self.viewer.layers.selection.active = image
        self._image_id = None
        self._refresh()

    # -- events -----------------------------------------------------------------------------
    def _mouse(self, layer, event):
        """A press-release without dragging is a click; dragging still pans the view."""
        start = np.asarray(event.position)
        yield
        while event.type == "mouse_move":
            yield
        if np.linalg.norm(np.asarray(event.position) - start) > 2:
            return
        image = self.image_choice.value
        y, x = image.world_to_data(event.position)[-2:]
        negative = event.button == 2 or "Shift" in event.modifiers
        self.click(float(y), float(x), positive=not negative)

    def _get_predictor(self) -> Predictor:
        ckpt = str(self.checkpoint.value) if str(self.checkpoint.value) not in ("", ".") else None
        key = (ckpt, self.device.value, self.zoom_in.value)
        if self._predictor is None or key != self._predictor_key:
            cfg = PredictorConfig(device=self.device.value, zoom_in=self.zoom_in.value,
                                  threshold=self.threshold.value)
            self._predictor = Predictor.from_checkpoint(Path(ckpt) if ckpt else None, cfg)
            self._predictor_key = key
            self._image_id = None
        return self._predictor

    def click(self, y: float, x: float, positive: bool = True):
        """Add a click and start its prediction on a worker thread; returns the worker."""
        if self.annotator is None:
            show_info("Add or select a 2-D image first.")
            return None
        try:
            job = self.annotator.add_click(y, x, positive)
        except ValueError as exc:
            show_info(str(exc))
            return None
        self._refresh_points()
        image = self.image_choice.value
        data = np.asarray(image.data)
        image_id = id(image)

        def work():
            with self._lock:
                t = time.perf_counter()
                predictor = self._get_predictor()
                if self._image_id != image_id:
                    predictor.set_image(data)
                    self._image_id = image_id
                prob = Annotator.run(job, predictor.predict)
                return prob, time.perf_counter() - t

        worker = create_worker(work, _start_thread=False)
        worker.returned.connect(lambda result: self._on_prediction(job, *result))
        worker.errored.connect(self._on_error)
        worker.finished.connect(self._on_finished)
        self.pending += 1
        self.status.value = "predicting…"
        self.last_worker = worker
        worker.start()
        return worker

    def _on_prediction(self, job, prob: np.ndarray, seconds: float) -> None:
        if self.annotator is None or not self.annotator.apply(job, prob):
            return  # stale: a newer click, clear, undo or commit came first
        self.status.value = f"last prediction {seconds * 1000:.0f} ms · {len(self.annotator.clicks)} clicks"
        self._refresh()

    def _on_finished(self) -> None:
        self.pending -= 1

    def _on_error(self, exc: Exception) -> None:
        self.status.value = f"error: {exc}"
        show_error(str(exc))

    def commit(self, *_):
        if self.annotator is None:
            return 0
        new_id = self.annotator.commit()
        self.status.value = f"committed object {new_id}" if new_id else "nothing to commit"
        self._refresh()
        return new_id

    def clear(self, *_):
        if self.annotator is not None:
            self.annotator.clear()
            self._refresh()

    def undo(self, *_):
        if self.annotator is not None:
            kind = self.annotator.undo()
            self.status.value = f"undid {kind}" if kind else "nothing to undo"
            self._refresh()

    # -- display ----------------------------------------------------------------------------
    def _refresh_points(self) -> None:
        ann = self.annotator
        pos = [(c.y, c.x) for c in ann.clicks.positives]
        neg = [(c.y, c.x) for c in ann.clicks.negatives]
        self.viewer.layers[POSITIVE].data = np.array(pos).reshape(-1, 2)
        self.viewer.layers[NEGATIVE].data = np.array(neg).reshape(-1, 2)

    def _refresh(self) -> None:
        if self.annotator is None:
            return
        self.annotator.threshold = self.threshold.value
        self._refresh_points()
        self.viewer.layers[CURRENT].data = self.annotator.current_mask.astype(np.int32)
        self.viewer.layers[OBJECTS].refresh()
