"""The dock widget: click to segment, commit, clear, undo, export. Thin: state lives in Annotator.

Mouse (on the image): left-click = positive click, right-click or Shift+left-click = negative.
Keys (bound only on the image being segmented and this plugin's own layers, so napari's
bindings elsewhere stay intact): C = commit the current object, Shift+C = clear the current
clicks, Ctrl+Z = undo the last click / clear / commit (also while the widget has focus).
Stacks (3-D, 2-D+t): the slice under the current dims position is segmented, each slice keeps
its own clicks and undo history, and its embedding stays cached while you move between slices.
Find similar (iCMFormer++): the exemplar is a committed object (the last one, or the id you
give); every other object of its kind is proposed in the 'proposals' layer. Clicks then fix the
proposals (positive = missed object, negative = wrong one) until Accept commits them as new
objects, or Clear (Shift+C) drops them. Undo steps back through recall clicks and accepts.
Predictions run on a napari thread worker; a newer click supersedes a running one.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from ._triton_guard import keep_triton_out

keep_triton_out()  # before anything imports torch's compiler stack (see _triton_guard)

import napari
import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, FloatSpinBox, Label, PushButton, SpinBox
from napari.qt.threading import create_worker
from napari.utils import progress
from napari.utils.notifications import show_error, show_info
from superqt.utils import ensure_main_thread

from src_models import Clicks

from .annotator import Annotator
from .engine import Predictor, PredictorConfig
from .exemplar import ExemplarPredictor, RecallResult
from .export import save_coco

POSITIVE, NEGATIVE, CURRENT, OBJECTS = "positive clicks", "negative clicks", "current object", "objects"
PROPOSALS = "proposals"
HELP = ("Left-click: positive · Right/Shift-click: negative\n"
        "C: commit · Shift+C: clear · Ctrl+Z: undo")


DRAG_PIXELS = 3.0  # a press that moves farther than this (screen pixels) before release is a drag


def _screen_pos(event) -> np.ndarray:
    """The event's canvas position in screen pixels (napari passes vispy's ``pos``)."""
    pos = getattr(event, "pos", None)
    return np.asarray(pos if pos is not None else (np.nan, np.nan), float)[:2]


def _distance(a: np.ndarray, b: np.ndarray) -> float:
    d = float(np.linalg.norm(a - b))
    return 0.0 if np.isnan(d) else d


def drop_committed(instances: np.ndarray, objects: np.ndarray, max_overlap: float = 0.5) -> np.ndarray:
    """Proposals minus what is already committed: instances mostly covered by existing objects
    (e.g. the exemplar itself) are dropped, the rest lose their overlapping pixels."""
    out = np.where(objects > 0, 0, instances).astype(np.int32)
    for lab in np.unique(instances):
        if lab == 0:
            continue
        m = instances == lab
        if np.count_nonzero(m & (objects > 0)) > max_overlap * np.count_nonzero(m):
            out[m] = 0
    return out


@dataclass
class RecallSession:
    """Find-similar state for one slice: the exemplar, the recall clicks and their history."""

    key: tuple[int, ...]
    exemplar_id: int
    clicks: Clicks = field(default_factory=Clicks)
    result: RecallResult | None = None
    generation: int = 0
    history: list = field(default_factory=list)  # (clicks, result) before each recall click


class SegmentationWidget(Container):
    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        self.viewer = viewer
        self.image_choice = ComboBox(label="image", choices=self._image_layers)
        self.checkpoint = FileEdit(label="checkpoint", mode="r", value="", filter="*.pt *.pth *.safetensors")
        self.device = ComboBox(label="device", choices=["auto", "cpu", "cuda", "mps"], value="auto")
        self.zoom_in = CheckBox(label="zoom-in", value=True)
        self.threshold = FloatSpinBox(label="threshold", value=0.49, min=0.01, max=0.99, step=0.01)
        self.commit_btn = PushButton(text="Commit (C)")
        self.clear_btn = PushButton(text="Clear (Shift+C)")
        self.undo_btn = PushButton(text="Undo (Ctrl+Z)")
        self.mois_checkpoint = FileEdit(label="iCMFormer++ model", mode="r", value="",
                                        filter="*.pt *.pth *.safetensors")
        self.exemplar_id = SpinBox(label="exemplar id (0 = last)", value=0, min=0, max=2**31 - 1)
        self.find_btn = PushButton(text="Find similar")
        self.accept_btn = PushButton(text="Accept proposals")
        self.export_path = FileEdit(label="export to", mode="w", value="objects.json",
                                    filter="*.json *.tif *.tiff *.png")
        self.export_btn = PushButton(text="Export objects (COCO json / label image)")
        self.status = Label(value="Select an image and click on an object.")
        super().__init__(widgets=[Label(value=HELP), self.image_choice, self.checkpoint, self.device, self.zoom_in,
                                  self.threshold, self.commit_btn, self.clear_btn, self.undo_btn,
                                  self.mois_checkpoint, self.exemplar_id, self.find_btn, self.accept_btn,
                                  self.export_path, self.export_btn, self.status])
        self._lock = threading.Lock()
        self._predictor: Predictor | None = None
        self._predictor_key: tuple | None = None
        self._recaller: ExemplarPredictor | None = None
        self._recaller_key: tuple | None = None
        self._recaller_exemplar: tuple | None = None
        self._recaller_image: tuple | None = None
        self.recall_session: RecallSession | None = None
        self._tile_bar: progress | None = None  # napari progress of a tiled recall
        self._annotators: dict[tuple[int, ...], Annotator] = {}
        self.shape: tuple[int, ...] | None = None  # the image's spatial shape (leading dims + plane)
        self._drawn: tuple[int, ...] | None = None  # slice of 'current object' holding the live mask
        self.last_worker = None
        self.pending = 0  # predictions started and not yet finished (tests wait on this)
        self.commit_btn.changed.connect(self.commit)
        self.clear_btn.changed.connect(self.clear)
        self.undo_btn.changed.connect(self.undo)
        self.find_btn.changed.connect(lambda *_: self.find_similar())
        self.accept_btn.changed.connect(lambda *_: self.accept())
        self.export_btn.changed.connect(lambda *_: self.export(self.export_path.value))
        viewer.dims.events.current_step.connect(self._on_dims)
        self._install_widget_shortcut()
        self.image_choice.changed.connect(self._on_image_changed)
        viewer.layers.events.inserted.connect(lambda e: self.image_choice.reset_choices())
        viewer.layers.events.removed.connect(lambda e: self.image_choice.reset_choices())
        self._on_image_changed()

    # -- layers -----------------------------------------------------------------------------
    def _image_layers(self, _=None) -> list:
        from napari.layers import Image  # noqa: PLC0415

        return [layer for layer in self.viewer.layers if isinstance(layer, Image)]

    def _layer(self, name: str, kind: str, shape: tuple[int, ...]):
        if name in self.viewer.layers:
            layer = self.viewer.layers[name]
            if kind == "points" and layer.ndim != len(shape):  # our own layer, made for another image
                self.viewer.layers.remove(layer)
            elif name == CURRENT and layer.data.shape != shape:
                layer.data = np.zeros(shape, np.int32)
                return layer
            else:
                return layer
        if kind == "labels":
            layer = self.viewer.add_labels(np.zeros(shape, np.int32), name=name)
        else:
            colour = "lime" if name == POSITIVE else "red"
            layer = self.viewer.add_points(np.zeros((0, len(shape))), name=name, face_color=colour, size=8)
        self._bind_keys(layer, undo=name != OBJECTS)  # 'objects' keeps napari's own paint undo
        layer.mouse_drag_callbacks.append(self._mouse)
        return layer

    def _bind_keys(self, layer, undo: bool = True) -> None:
        layer.bind_key("c", lambda _layer: self.commit(), overwrite=True)
        layer.bind_key("Shift-c", lambda _layer: self.clear(), overwrite=True)
        if undo:
            layer.bind_key("Control-z", lambda _layer: self.undo(), overwrite=True)

    def _install_widget_shortcut(self) -> None:
        """Ctrl+Z while focus is inside this dock widget (its scope), not viewer-wide."""
        try:
            from qtpy.QtCore import Qt  # noqa: PLC0415
            from qtpy.QtGui import QKeySequence, QShortcut  # noqa: PLC0415
        except ImportError:  # Qt5 bindings keep QShortcut in QtWidgets
            try:
                from qtpy.QtCore import Qt  # noqa: PLC0415
                from qtpy.QtGui import QKeySequence  # noqa: PLC0415
                from qtpy.QtWidgets import QShortcut  # noqa: PLC0415
            except ImportError:
                return
        self._shortcut = QShortcut(QKeySequence("Ctrl+Z"), self.native)
        self._shortcut.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        self._shortcut.activated.connect(self.undo)

    def _on_image_changed(self, *_) -> None:
        image = self.image_choice.value
        self.shape, self._annotators, self._drawn = None, {}, None
        self.recall_session = None
        if image is None:
            return
        shape = tuple(np.shape(image.data))
        shape = shape[:-1] if image.rgb else shape
        if len(shape) < 2:
            self.status.value = "This layer is not an image with two spatial dimensions."
            return
        objects = self._layer(OBJECTS, "labels", shape)
        if objects.data.shape != shape:
            show_error(f"'{OBJECTS}' layer shape {objects.data.shape} does not match image {shape}: "
                       f"rename or remove it to segment this image")
            return
        self.shape = shape
        self._layer(CURRENT, "labels", shape).data[...] = 0
        self._layer(POSITIVE, "points", shape)
        self._layer(NEGATIVE, "points", shape)
        if self._mouse not in image.mouse_drag_callbacks:
            image.mouse_drag_callbacks.append(self._mouse)
            self._bind_keys(image)
        self.viewer.layers.selection.active = image
        self._refresh()

    # -- slices -----------------------------------------------------------------------------
    def current_slice(self) -> tuple[int, ...]:
        """Indices of the leading (non-plane) dims under the viewer's dims position; () for 2-D."""
        if self.shape is None or len(self.shape) == 2:
            return ()
        lead = self.shape[:-2]
        point = self.image_choice.value.world_to_data(self.viewer.dims.point)
        return tuple(int(np.clip(round(float(point[i])), 0, n - 1)) for i, n in enumerate(lead))

    @property
    def annotator(self) -> Annotator | None:
        """The annotator of the slice on screen (created on first use, one per slice)."""
        if not self._layers_ready():
            return None
        key = self.current_slice()
        if key not in self._annotators:
            objects = self.viewer.layers[OBJECTS].data
            plane = objects[key] if key else objects  # a view: commits land in the layer's array
            self._annotators[key] = Annotator(self.shape[-2:], self.threshold.value, objects=plane)
        return self._annotators[key]

    def _on_dims(self, *_) -> None:
        if self._layers_ready() and len(self.shape) > 2 and self.current_slice() != self._drawn:
            if self.recall_session is not None and self.recall_session.key != self.current_slice():
                self._end_recall("proposals dropped: the slice changed before Accept")
            self._refresh()

    # -- events -----------------------------------------------------------------------------
    def _mouse(self, layer, event):
        """A press-release that stays within ``DRAG_PIXELS`` screen pixels is a click; anything
        longer is a drag (napari pans the view) and adds nothing. Measured on the canvas, not in
        world coordinates: while the view pans, the world point under the cursor stays put."""
        start = _screen_pos(event)
        moved = 0.0
        yield
        while event.type == "mouse_move":
            moved = max(moved, _distance(_screen_pos(event), start))
            yield
        moved = max(moved, _distance(_screen_pos(event), start))
        if moved > DRAG_PIXELS:
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
        return self._predictor

    def click(self, y: float, x: float, positive: bool = True):
        """Add a click and start its prediction on a worker thread; returns the worker."""
        if not self._layers_ready():
            self._on_image_changed()  # a layer of ours was deleted: make fresh ones
        if self.recall_session is not None:
            return self._recall_click(y, x, positive)
        annotator = self.annotator
        if annotator is None:
            show_info("Add or select an image first.")
            return None
        try:
            job = annotator.add_click(y, x, positive)
        except ValueError as exc:
            show_info(str(exc))
            return None
        if self._layers_ready():
            self._refresh_points()
        image = self.image_choice.value
        key = self.current_slice()
        data = image.data[key] if key else image.data
        image_key = (id(image), id(image.data), key)

        def work():
            with self._lock:
                t = time.perf_counter()
                predictor = self._get_predictor()
                predictor.set_image(np.asarray(data), key=image_key)  # cached per slice
                prob = Annotator.run(job, predictor.predict)
                return prob, time.perf_counter() - t

        return self._start_worker(work, lambda result: self._on_prediction(annotator, job, *result), "predicting…")

    def _start_worker(self, work, on_returned, status: str):
        """Run ``work`` on a napari thread worker; ``on_returned`` runs on the main thread."""
        worker = create_worker(work, _start_thread=False)
        worker.returned.connect(on_returned)
        worker.errored.connect(self._on_error)
        worker.finished.connect(self._on_finished)
        self.pending += 1
        self.status.value = status
        self.last_worker = worker
        worker.start()
        return worker

    def _on_prediction(self, annotator: Annotator, job, prob: np.ndarray, seconds: float) -> None:
        if not annotator.apply(job, prob):
            return  # stale: a newer click, clear, undo or commit came first
        self.status.value = f"last prediction {seconds * 1000:.0f} ms · {len(annotator.clicks)} clicks"
        self._refresh()

    def _on_finished(self) -> None:
        self.pending -= 1

    def _on_error(self, exc: Exception) -> None:
        if self._tile_bar is not None:
            self._tile_bar.close()
            self._tile_bar = None
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
        if self.recall_session is not None:
            self._end_recall("proposals cleared")
            return
        if self.annotator is not None:
            self.annotator.clear()
            self._refresh()

    def undo(self, *_):
        session = self.recall_session
        if session is not None:
            if session.history:
                session.clicks, session.result = session.history.pop()
                session.generation += 1
                self.status.value = "undid recall click"
                self._show_proposals()
            else:
                self._end_recall("undid find similar")
            return
        if self.annotator is not None:
            kind = self.annotator.undo()
            self.status.value = f"undid {kind}" if kind else "nothing to undo"
            self._refresh()

    # -- find similar (iCMFormer++) ---------------------------------------------------------
    def _get_recaller(self) -> ExemplarPredictor:
        ckpt = str(self.mois_checkpoint.value) if str(self.mois_checkpoint.value) not in ("", ".") else None
        key = (ckpt, self.device.value)
        if self._recaller is None or key != self._recaller_key:
            cfg = PredictorConfig(device=self.device.value, threshold=self.threshold.value)
            self._recaller = ExemplarPredictor.from_checkpoint(Path(ckpt) if ckpt else None, cfg)
            self._recaller_key, self._recaller_image, self._recaller_exemplar = key, None, None
        return self._recaller

    def find_similar(self, exemplar_id: int | None = None):
        """Propose every object like the exemplar (a committed object); returns the worker."""
        if not self._layers_ready():
            show_info("Add or select an image first.")
            return None
        ann = self.annotator
        eid = exemplar_id or self.exemplar_id.value or ann.last_committed
        if not eid or not (ann.objects == eid).any():
            msg = (f"no object with id {eid} in this image" if eid else
                   "Commit an object first: it is the exemplar that Find similar looks for.")
            self.status.value = msg
            show_info(msg)
            return None
        self.recall_session = RecallSession(self.current_slice(), int(eid))
        return self._start_recall(self.recall_session)

    def _recall_click(self, y: float, x: float, positive: bool):
        session, ann = self.recall_session, self.annotator
        h, w = ann.shape
        if not (0 <= y < h and 0 <= x < w):
            show_info(f"click at (y={y:.0f}, x={x:.0f}) is outside the image ({h} x {w})")
            return None
        session.history.append((session.clicks, session.result))
        session.clicks = session.clicks.add(y, x, positive)
        session.generation += 1
        self._refresh_points()
        return self._start_recall(session)

    def _start_recall(self, session: RecallSession):
        ann = self.annotator
        image = self.image_choice.value
        key = session.key
        data = image.data[key] if key else image.data
        image_key = (id(image), id(image.data), key)
        exemplar = ann.objects == session.exemplar_id
        ex_clicks = ann.object_clicks.get(session.exemplar_id)  # None for a painted object
        exemplar_key = (image_key, session.exemplar_id, hash(np.packbits(exemplar).tobytes()))
        clicks, gen = session.clicks, session.generation
        prev = None if session.result is None else session.result.prob

        def work():
            with self._lock:
                t = time.perf_counter()
                recaller = self._get_recaller()
                if self._recaller_image != image_key:  # a new exemplar keeps the image's tile features
                    recaller.set_image(np.asarray(data))
                    self._recaller_image, self._recaller_exemplar = image_key, None
                if self._recaller_exemplar != exemplar_key:
                    recaller.set_exemplar(exemplar, ex_clicks)
                    self._recaller_exemplar = exemplar_key
                tiles = len(recaller.layout.origins)  # > 1: a large image, shown as a progress bar
                result = recaller.recall(clicks, prev, on_tile=self._tile_done if tiles > 1 else None)
                return result, time.perf_counter() - t

        return self._start_worker(work, lambda result: self._on_recall(session, gen, *result),
                                  "finding similar objects…")

    @ensure_main_thread
    def _tile_done(self, done: int, total: int) -> None:
        """Progress of a tiled recall (called from the worker, run on the main thread)."""
        if done == 1 or self._tile_bar is None:
            if self._tile_bar is not None:
                self._tile_bar.close()
            self._tile_bar = progress(total=total, desc="Find similar: tiles")
        self._tile_bar.update(1)
        if done == total:
            self._tile_bar.close()
            self._tile_bar = None

    def _on_recall(self, session: RecallSession, gen: int, result: RecallResult, seconds: float) -> None:
        if self.recall_session is not session or session.generation != gen:
            return  # stale
        session.result = result
        n = self._show_proposals()
        tiles = f" ({result.tiles} tiles)" if result.tiles > 1 else ""
        self.status.value = f"{n} proposals in {seconds * 1000:.0f} ms{tiles} · click to fix, then Accept"

    def proposals(self) -> np.ndarray | None:
        """The current proposals (instance labels of the slice), committed objects left out."""
        session = self.recall_session
        if session is None or session.result is None:
            return None
        return drop_committed(session.result.instances, self.annotator.objects)

    def _show_proposals(self) -> int:
        if self.shape is None:
            return 0
        if PROPOSALS not in self.viewer.layers:
            layer = self.viewer.add_labels(np.zeros(self.shape, np.int32), name=PROPOSALS, opacity=0.5)
            self._bind_keys(layer)
            layer.mouse_drag_callbacks.append(self._mouse)
        layer = self.viewer.layers[PROPOSALS]
        if layer.data.shape != self.shape:
            layer.data = np.zeros(self.shape, np.int32)
        layer.data[...] = 0
        proposals = self.proposals()
        if proposals is not None:
            layer.data[self.recall_session.key] = proposals
        layer.refresh()
        self._refresh_points()
        return 0 if proposals is None else len(np.unique(proposals)) - 1

    def _end_recall(self, message: str) -> None:
        self.recall_session = None
        if PROPOSALS in self.viewer.layers:
            layer = self.viewer.layers[PROPOSALS]
            layer.data[...] = 0
            layer.refresh()
        self.status.value = message
        self._refresh()

    def accept(self) -> list[int]:
        """Commit the proposals as new objects (one undo step); existing objects are kept."""
        proposals = self.proposals()
        if proposals is None:
            show_info("Nothing to accept: run Find similar first.")
            return []
        ids = self.annotator.commit_labels(proposals)
        self._end_recall(f"accepted {len(ids)} objects" + (f" (ids {ids[0]}–{ids[-1]})" if ids else ""))
        return ids

    def export(self, path) -> Path | None:
        """Write 'objects' as COCO instances json (.json) or a label image (napari's writers)."""
        path = Path(path)
        if OBJECTS not in self.viewer.layers:
            show_info("Nothing to export yet.")
            return None
        layer = self.viewer.layers[OBJECTS]
        try:
            if path.suffix.lower() == ".json":
                save_coco(path, layer.data)
            else:
                written = layer.save(str(path))
                if not written:
                    raise ValueError(f"napari has no writer for {path.suffix!r}; use .json, .tif or .png")
        except (OSError, ValueError) as exc:
            self.status.value = f"export failed: {exc}"
            show_error(str(exc))
            return None
        self.status.value = f"exported {int(layer.data.max())} object ids to {path}"
        return path

    # -- display ----------------------------------------------------------------------------
    def _refresh_points(self) -> None:
        ann, key = self.annotator, self.current_slice()
        shown = self.recall_session.clicks if self.recall_session is not None else ann.clicks
        for name, clicks in ((POSITIVE, shown.positives), (NEGATIVE, shown.negatives)):
            pts = [(*key, c.y, c.x) for c in clicks]
            self.viewer.layers[name].data = np.array(pts, float).reshape(-1, len(self.shape))

    def _layers_ready(self) -> bool:
        """False while our layers or the image are gone (removed by the user, viewer closing)."""
        layers = self.viewer.layers
        image = self.image_choice.value
        return (self.shape is not None and image is not None and image in layers
                and all(name in layers for name in (POSITIVE, NEGATIVE, CURRENT, OBJECTS)))

    def _refresh(self) -> None:
        if not self._layers_ready():
            return
        ann = self.annotator
        if ann is None:
            return
        ann.threshold = self.threshold.value
        self._refresh_points()
        key = self.current_slice()
        current = self.viewer.layers[CURRENT]
        if self._drawn is not None and self._drawn != key:
            current.data[self._drawn] = 0
        current.data[key] = ann.current_mask
        self._drawn = key
        current.refresh()
        self.viewer.layers[OBJECTS].refresh()
