"""The dock widget: click to segment, commit, clear, undo, export. Thin: the state lives in
``Annotator`` / ``RecallAnnotator`` (Qt-free); this module translates events and holds layers.

Mouse (on any image): left-click = positive click, right-click or Shift+left-click = negative;
a left-drag pans (a press that moves more than a few screen pixels is never a click).
Keys (bound on the images and this plugin's own layers, so napari's bindings elsewhere stay
intact): C = commit the current object, Shift+C = clear the current clicks, Ctrl+Z = undo the
last click / clear / commit (also while the widget has focus). Each image gets its own layers,
named after it and kept just above it; clicking an image segments that image.
Stacks (3-D, 2-D+t): the slice under the current dims position is segmented, each slice keeps
its own clicks, undo history and Find-similar proposals; object ids are unique in the stack.
Find similar (iCMFormer++): the exemplar is a committed object (the last one, or the id you
give); every other object of its kind is proposed in the image's proposals layer. Clicks then
fix the proposals until Accept commits them as new objects, or Clear (Shift+C) drops them:
a positive click off the proposals adds the missed object there; a positive click inside a
proposal that holds several objects splits it, cutting the clicked object out of its
neighbours (on one right object it usually changes nothing); a negative click removes the whole
proposal under it (also when the network only bit a hole where you clicked; a proposal beside
the click is left alone), and it stays removed until a positive click on it; proposals smaller
than RecallConfig.min_area (0.15) x the exemplar's area are specks and are not shown,
unless you click on them. A click changes only the proposals under it. Undo steps back through
recall clicks and accepts.
Predictions run on a napari thread worker; a newer click supersedes a running one.
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from ._triton_guard import keep_triton_out

keep_triton_out()  # before anything imports torch's compiler stack (see _triton_guard)

import napari
import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, FloatSpinBox, Label, PushButton, SpinBox
from napari.layers import Image, Labels, Points
from napari.qt.threading import create_worker
from napari.utils import progress
from napari.utils.notifications import show_error, show_info
from superqt.utils import ensure_main_thread

from ._series_widget import SeriesSection
from .annotator import Annotator, RecallAnnotator, RecallJob
from .carry import set_exemplar_for
from .engine import Predictor, PredictorConfig
from .exemplar import ExemplarPredictor, RecallConfig, RecallResult
from .object_files import ObjectFileError, check_target, write_objects

__all__ = ["SegmentationWidget"]

POSITIVE, NEGATIVE, CURRENT, OBJECTS, PROPOSALS = (
    "positive clicks", "negative clicks", "current object", "objects", "proposals")
ROLES = (OBJECTS, CURRENT, PROPOSALS, POSITIVE, NEGATIVE)  # bottom to top, above their image
# short lines, broken by hand: a wrapped QLabel gets no room for its height in napari's dock
BASIC_HELP = ("Left-click: positive · Right/Shift-click: negative\n"
              "drag: pan · C: commit · Shift+C: clear · Ctrl+Z: undo")
FIX_HELP = ("Fixing proposals (after Find similar):\n"
            "· click off them: add the missed object\n"
            "· click inside one holding several objects:\n"
            "   split off the clicked one\n"
            "· right-click: remove the whole proposal\n"
            "· specks under 0.15 × the exemplar's area are\n"
            "   hidden (click one to keep it)")
SERIES_HELP = ("Many images: Open folder…\n"
               "· PgDn / PgUp: next / previous image (objects kept,\n"
               "   autosaved on every commit, accept and undo)\n"
               "· Find similar here: the last exemplar, this image\n"
               "· Find similar on all slices / all images:\n"
               "   proposals on each, to review and Accept")
DRAG_PIXELS = 3.0  # a press that moves farther than this (screen pixels) before release is a drag
CURRENT_COLOUR = (1.0, 0.85, 0.0, 1.0)  # the live mask: one colour no committed object has
CURRENT_CONTOUR_PX = 2
MARKER_SCREEN_PX = (10, 16)  # click markers' size on screen, whatever the image's size or zoom


def _folding_toggle(title: str, part) -> CheckBox:
    """A tick box that shows ``part`` (hidden until ticked)."""
    toggle = CheckBox(text=title, value=False)
    part.visible = False
    toggle.changed.connect(lambda on: setattr(part, "visible", bool(on)))
    return toggle


def _screen_pos(event) -> np.ndarray:
    """The event's canvas position in screen pixels (napari passes vispy's ``pos``)."""
    pos = getattr(event, "pos", None)
    return np.asarray(pos if pos is not None else (np.nan, np.nan), float)[:2]


def _distance(a: np.ndarray, b: np.ndarray) -> float:
    d = float(np.linalg.norm(a - b))
    return 0.0 if np.isnan(d) else d


def _current_colormap():
    from napari.utils.colormaps import DirectLabelColormap  # noqa: PLC0415

    return DirectLabelColormap(color_dict={None: (0, 0, 0, 0), 0: (0, 0, 0, 0), 1: CURRENT_COLOUR})


_SESSION_TOKENS = itertools.count(1)


@dataclass
class ImageSession:
    """One image's layers and per-slice state. The layers are ours by reference, never by name:
    a user's layer that happens to be called "objects" is never adopted or overwritten."""

    image: Image
    shape: tuple[int, ...]  # spatial shape (leading dims + plane)
    layers: dict[str, object] = field(default_factory=dict)  # role -> layer
    annotators: dict[tuple[int, ...], Annotator] = field(default_factory=dict)
    recalls: dict[tuple[int, ...], RecallAnnotator] = field(default_factory=dict)
    drawn: tuple[int, ...] | None = None  # slice of the current-object layer holding the live mask
    token: int = field(default_factory=lambda: next(_SESSION_TOKENS))  # unique: names its planes in caches

    def name(self, role: str) -> str:
        return f"{self.image.name}: {role}"


class SegmentationWidget(Container):
    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        self.viewer = viewer
        self.image_choice = ComboBox(label="image", choices=self._image_layers)
        self.checkpoint = FileEdit(label="checkpoint", mode="r", value="", filter="*.pt *.pth *.safetensors")
        self.device = ComboBox(label="device", choices=["auto", "cpu", "cuda", "mps"], value="auto")
        self.zoom_in = CheckBox(label="zoom-in", value=True)
        self.refine = CheckBox(label="snap to edges (graph cut)", value=PredictorConfig.refine == "graphcut")
        self.threshold = FloatSpinBox(label="threshold", value=PredictorConfig.threshold, min=0.01, max=0.99,
                                      step=0.01)
        self.commit_btn = PushButton(text="Commit (C)")
        self.clear_btn = PushButton(text="Clear (Shift+C)")
        self.undo_btn = PushButton(text="Undo (Ctrl+Z)")
        self.mois_checkpoint = FileEdit(label="iCMFormer++ model", mode="r", value="",
                                        filter="*.pt *.pth *.safetensors")
        self.exemplar_id = SpinBox(label="exemplar id (0 = last)", value=0, min=0, max=2**31 - 1)
        self.find_btn = PushButton(text="Find similar")
        self.accept_btn = PushButton(text="Accept proposals")
        self.export_path = FileEdit(label="export to", mode="w", value="", filter="*.json *.tif *.tiff *.png")
        self.export_btn = PushButton(text="Export objects (COCO json / label image)")
        self.status = Label(value="Select an image and click on an object.")
        # the mouse and keys always in view; the rules of Find similar and of many images one tick
        # away (also the Find similar button's tooltip), so the dock stays narrow and short
        self.basic_help = Label(value=BASIC_HELP)
        self.help = Label(value="\n".join((FIX_HELP, SERIES_HELP)))
        self.show_help = _folding_toggle("more help: fixing proposals, many images", self.help)
        self.find_btn.tooltip = FIX_HELP
        super().__init__(widgets=[
            self.basic_help, self.show_help, self.help, self.image_choice, self.checkpoint, self.device,
            self.zoom_in, self.refine, self.threshold, self.commit_btn, self.clear_btn, self.undo_btn,
            self.mois_checkpoint, self.exemplar_id, self.find_btn, self.accept_btn, self.export_path,
            self.export_btn, self.status])
        self.series_section = SeriesSection(self)  # Many images (_series_widget.py)
        self.series_toggle = self.add_section("Many images: a folder or a stack, one exemplar for all",
                                              self.series_section.container)
        self._wrap_status()
        self._lock = threading.Lock()
        self._predictor: Predictor | None = None
        self._predictor_key: tuple | None = None
        self._recaller: ExemplarPredictor | None = None
        self._recaller_key: tuple | None = None
        self._tile_bar: progress | None = None  # napari progress of a tiled recall
        self._sessions: dict[int, ImageSession] = {}  # id(image layer) -> its session
        self._owner: dict[int, ImageSession] = {}  # id(our layer) -> the session it belongs to
        self.last_worker = None
        self.pending = 0  # predictions started and not yet finished (tests wait on this)
        self.commit_btn.changed.connect(self.commit)
        self.clear_btn.changed.connect(self.clear)
        self.undo_btn.changed.connect(self.undo)
        self.find_btn.changed.connect(lambda *_: self.find_similar())
        self.accept_btn.changed.connect(lambda *_: self.accept())
        self.export_btn.changed.connect(lambda *_: self.export(self.export_path.value))
        self.threshold.changed.connect(self._on_threshold)
        for w in (self.threshold, self.exemplar_id, self.checkpoint, self.mois_checkpoint, self.device,
                  self.zoom_in, self.refine, self.image_choice, self.export_path):
            w.changed.connect(self._focus_canvas)  # C and Ctrl+Z go back to the canvas
        viewer.dims.events.current_step.connect(self._on_dims)
        self._install_widget_shortcut()
        self.image_choice.changed.connect(self._on_image_changed)
        viewer.layers.events.inserted.connect(self._on_inserted)
        viewer.layers.events.removed.connect(self._on_removed)
        for layer in list(viewer.layers):
            if isinstance(layer, Image):
                self._hook_image(layer)
        self._on_image_changed()
        # -- Adapt to my objects (napari_icmformer/_adapt_widget.py) --
        from ._adapt_widget import add_adapt_section  # noqa: PLC0415

        self.adapt = add_adapt_section(self)

    # -- layers -----------------------------------------------------------------------------
    def _image_layers(self, _=None) -> list:
        return [layer for layer in self.viewer.layers if isinstance(layer, Image)]

    def add_section(self, title: str, section: Container) -> CheckBox:
        """Put ``section`` above the status line under a tick box that shows it, folded at first:
        unfolded, the whole dock is taller than a laptop screen and napari's dock cannot scroll."""
        toggle = _folding_toggle(title, section)
        section.label = ""  # the tick box names it; no label column eating the dock's width
        at = self.index(self.status)
        self.insert(at, toggle)
        self.insert(at + 1, section)
        return toggle

    def _wrap_status(self) -> None:
        """Long messages wrap instead of widening the dock (which can squeeze the canvas to 0)."""
        try:
            from qtpy.QtWidgets import QSizePolicy  # noqa: PLC0415
        except ImportError:
            return
        label = self.status.native
        label.setWordWrap(True)
        label.setMinimumWidth(1)
        label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)

    def _on_inserted(self, event) -> None:
        layer = event.value
        self.image_choice.reset_choices()
        if isinstance(layer, Image) and id(layer) not in self._owner:
            self._hook_image(layer)
            self.image_choice.value = layer  # a newly opened image is the one to segment

    def _on_removed(self, event) -> None:
        layer = event.value
        self._sessions.pop(id(layer), None)  # an image gone: its session goes (its layers stay the user's)
        self.image_choice.reset_choices()

    def _hook_image(self, image: Image) -> None:
        """Every image can be clicked at once, without choosing it in the combo box first."""
        if self._mouse not in image.mouse_drag_callbacks:
            image.mouse_drag_callbacks.append(self._mouse)
            self._bind_keys(image)

    def session_for(self, image: Image | None) -> ImageSession | None:
        """The image's session (made on first use); None for layers that are not 2-D+ images."""
        if image is None:
            return None
        session = self._sessions.get(id(image))
        if session is not None and session.image is image:
            return session
        shape = tuple(np.shape(image.data))
        shape = shape[:-1] if image.rgb else shape
        if len(shape) < 2:
            return None
        session = ImageSession(image, shape)
        self._sessions[id(image)] = session
        return session

    @property
    def session(self) -> ImageSession | None:
        return self.session_for(self.image_choice.value)

    @property
    def shape(self) -> tuple[int, ...] | None:
        s = self.session
        return None if s is None else s.shape

    def layer(self, role: str, session: ImageSession | None = None):
        """Our layer ``role`` of the image, re-made (and redrawn) if the user deleted it."""
        session = session or self.session
        if session is None:
            return None
        layer = session.layers.get(role)
        if layer is not None and layer in self.viewer.layers:
            return layer
        shape = session.shape
        if role in (POSITIVE, NEGATIVE):
            colour = "lime" if role == POSITIVE else "red"
            size = max(2.0, 0.012 * max(shape[-2:]))
            layer = Points(np.zeros((0, len(shape))), name=session.name(role), face_color=colour, size=size,
                           border_color="white", canvas_size_limits=MARKER_SCREEN_PX)
        elif role == OBJECTS and layer is not None:  # deleted by the user: nothing committed is lost
            layer = Labels(layer.data, name=session.name(role), opacity=0.7)
        elif role == CURRENT:
            # an outline in one colour: never mistaken for a committed (filled) object, and the
            # image's edges stay visible under it
            layer = Labels(np.zeros(shape, np.int32), name=session.name(role), opacity=0.9,
                           colormap=_current_colormap())
            layer.contour = CURRENT_CONTOUR_PX
        else:
            layer = Labels(np.zeros(shape, np.int32), name=session.name(role), opacity=0.5 if role == PROPOSALS
                           else 0.7)
        layer.scale = session.image.scale[-len(shape):]
        layer.translate = session.image.translate[-len(shape):]
        self._owner[id(layer)] = session
        session.layers[role] = layer
        self.viewer.layers.append(layer)
        self._place_above_image(session)
        self._bind_keys(layer, undo=role != OBJECTS)  # the objects layer keeps napari's own paint undo
        layer.mouse_drag_callbacks.append(self._mouse)
        if role == OBJECTS:
            self.viewer.layers.selection.active = session.image
        if role == CURRENT:
            session.drawn = None
        return layer

    def _place_above_image(self, session: ImageSession) -> None:
        """Our layers directly above their image (objects, current, proposals, clicks)."""
        layers = self.viewer.layers
        if session.image not in layers:
            return
        target = layers.index(session.image) + 1
        for role in ROLES:
            layer = session.layers.get(role)
            if layer is None or layer not in layers:
                continue
            index = layers.index(layer)
            if index != target:
                layers.move(index, target if index > target else target - 1)
                target = layers.index(layer)
            target += 1

    @staticmethod
    def _plane(data: np.ndarray, key: tuple[int, ...]) -> np.ndarray:
        return data[key] if key else data  # a view: commits land in the layer's array

    def _bind_keys(self, layer, undo: bool = True) -> None:
        layer.bind_key("c", lambda _layer: self.commit(), overwrite=True)
        layer.bind_key("Shift-c", lambda _layer: self.clear(), overwrite=True)
        if undo:
            layer.bind_key("Control-z", lambda _layer: self.undo(), overwrite=True)
        layer.bind_key("PageDown", lambda _layer: self.series_section.next(), overwrite=True)
        layer.bind_key("PageUp", lambda _layer: self.series_section.previous(), overwrite=True)

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

    def _focus_canvas(self, *_) -> None:
        """After a field was edited, the keys (C, Shift+C, Ctrl+Z) belong to the canvas again."""
        qt_viewer = getattr(self.viewer.window, "_qt_viewer", None)
        canvas = getattr(getattr(qt_viewer, "canvas", None), "native", None)
        if canvas is not None:
            canvas.setFocus()

    def _on_image_changed(self, *_) -> None:
        session = self.session
        if session is None:
            image = self.image_choice.value
            self.status.value = ("Open an image to segment." if image is None else
                                 f"{image.name} is not an image with two spatial dimensions.")
            return
        self._hook_image(session.image)
        self.layer(OBJECTS, session)  # made first, so the objects sit lowest above the image
        self.viewer.layers.selection.active = session.image
        self.status.value = f"{session.image.name}: click on an object."
        self._refresh()

    # -- slices -----------------------------------------------------------------------------
    def current_slice(self, session: ImageSession | None = None) -> tuple[int, ...]:
        """Indices of the leading (non-plane) dims under the viewer's dims position; () for 2-D."""
        session = session or self.session
        if session is None or len(session.shape) == 2:
            return ()
        lead = session.shape[:-2]
        point = session.image.world_to_data(self.viewer.dims.point)
        return tuple(int(np.clip(round(float(point[i])), 0, n - 1)) for i, n in enumerate(lead))

    def annotator_for(self, session: ImageSession | None) -> Annotator | None:
        """The annotator of the slice on screen (one per slice), writing into our objects layer."""
        if session is None or session.image not in self.viewer.layers:
            return None
        return self.annotator_at(session, self.current_slice(session))

    def annotator_at(self, session: ImageSession, key: tuple[int, ...]) -> Annotator:
        """The annotator of slice ``key`` of the image (made on first use)."""
        if key not in session.annotators:
            objects = self.layer(OBJECTS, session)
            session.annotators[key] = Annotator(session.shape[-2:], self.threshold.value,
                                                objects=self._plane(objects.data, key),
                                                next_id=lambda: int(self.layer(OBJECTS, session).data.max()) + 1)
        return session.annotators[key]

    @property
    def annotator(self) -> Annotator | None:
        return self.annotator_for(self.session)

    def recall_for(self, session: ImageSession | None) -> RecallAnnotator | None:
        ann = self.annotator_for(session)
        if ann is None:
            return None
        key = self.current_slice(session)
        rec = session.recalls.get(key)
        if rec is None or rec.annotator is not ann:
            rec = session.recalls[key] = RecallAnnotator(ann)
        return rec

    @property
    def recall(self) -> RecallAnnotator | None:
        return self.recall_for(self.session)

    def _on_dims(self, *_) -> None:
        session = self.session
        if session is not None and len(session.shape) > 2 and self.current_slice(session) != session.drawn:
            waiting = [k for k, r in session.recalls.items() if r.active and r.result is not None
                       and k != self.current_slice(session)]
            self._refresh()
            if waiting:
                self.status.value = (f"proposals waiting on slice(s) {', '.join(map(str, waiting))}: go back to "
                                     "Accept or Clear them")

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
        session = self._owner.get(id(layer)) or self.session_for(layer if isinstance(layer, Image) else None)
        if session is None:
            return
        if self.image_choice.value is not session.image:
            self.image_choice.value = session.image  # clicking an image segments that image
        y, x = session.image.world_to_data(event.position)[-2:]
        negative = event.button == 2 or "Shift" in event.modifiers
        self.click(float(y), float(x), positive=not negative)

    def _predictor_config(self) -> PredictorConfig:
        return PredictorConfig(device=self.device.value, zoom_in=self.zoom_in.value, threshold=self.threshold.value,
                               refine="graphcut" if self.refine.value else "none")

    def _get_predictor(self) -> Predictor:
        ckpt = str(self.checkpoint.value) if str(self.checkpoint.value) not in ("", ".") else None
        key = (ckpt, self.device.value)
        cfg = self._predictor_config()
        if self._predictor is None or key != self._predictor_key:
            self._predictor = Predictor.from_checkpoint(Path(ckpt) if ckpt else None, cfg)
            self._predictor_key = key
        elif self._predictor.config != cfg:  # zoom-in / refinement / threshold: same model and caches
            self._predictor.config = cfg
        return self._predictor

    def click(self, y: float, x: float, positive: bool = True):
        """Add a click and start its prediction on a worker thread; returns the worker."""
        session = self.session
        rec = self.recall_for(session)
        if rec is not None and rec.active:
            return self._recall_click(session, rec, y, x, positive)
        annotator = self.annotator_for(session)
        if annotator is None:
            show_info("Add or select an image first.")
            return None
        job = self._try_click(annotator, y, x, positive)
        if job is None:
            return None
        key = self.current_slice(session)
        image = session.image
        data = image.data[key] if key else image.data
        image_key = (session.token, id(image.data), key)

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

    def _on_threshold(self, value: float) -> None:
        """The threshold has one owner (this field): the live mask follows it at once, and the
        next prediction runs with it (zoom-in window, refinement, Find similar)."""
        for session in self._sessions.values():
            for ann in session.annotators.values():
                ann.threshold = float(value)
        if self._predictor is not None:
            self._predictor.config = replace(self._predictor.config, threshold=float(value))
        if self._recaller is not None:
            self._recaller.config = replace(self._recaller.config, threshold=float(value))
        self._refresh()

    def commit(self, *_):
        ann = self.annotator
        if ann is None:
            return 0
        try:
            new_id = ann.commit()
        except ValueError as exc:
            self.status.value = str(exc)
            show_error(str(exc))
            return 0
        self.status.value = f"committed object {new_id}" if new_id else "nothing to commit"
        self._refresh()
        if new_id:
            self.series_section.autosave()
        return new_id

    def clear(self, *_):
        rec = self.recall
        if rec is not None and rec.active:
            rec.stop()
            self.status.value = "proposals cleared"
            self._refresh()
            return
        ann = self.annotator
        if ann is not None:
            had = len(ann.clicks) > 0 or ann.prob is not None
            ann.clear()
            self.status.value = "cleared the current object" if had else "nothing to clear"
            self._refresh()

    def undo(self, *_):
        rec = self.recall
        if rec is not None and rec.active:
            kind = rec.undo()
            self.status.value = f"undid {kind}"
            self._refresh()
            return
        ann = self.annotator
        if ann is not None:
            kind = ann.undo()
            self.status.value = f"undid {kind}" if kind else "nothing to undo"
            self._refresh()
            if kind in ("commit", "accept"):
                self.series_section.autosave()

    # -- find similar (iCMFormer++) ---------------------------------------------------------
    def _get_recaller(self) -> ExemplarPredictor:
        ckpt = str(self.mois_checkpoint.value) if str(self.mois_checkpoint.value) not in ("", ".") else None
        key = (ckpt, self.device.value)
        if self._recaller is None or key != self._recaller_key:
            cfg = RecallConfig(device=self.device.value, threshold=self.threshold.value)
            self._recaller = ExemplarPredictor.from_checkpoint(Path(ckpt) if ckpt else None, cfg)
            self._recaller_key = key
        return self._recaller

    def find_similar(self, exemplar_id: int | None = None):
        """Propose every object like the exemplar (a committed object); returns the worker."""
        session = self.session
        rec = self.recall_for(session)
        if rec is None:
            show_info("Add or select an image first.")
            return None
        try:
            job = rec.start(exemplar_id or self.exemplar_id.value or None)
        except ValueError as exc:
            self.status.value = str(exc)
            show_info(str(exc))
            return None
        self.series_section.remember(session, self.current_slice(session), job)  # carried forward later
        return self._start_recall(session, rec, job)

    def _recall_click(self, session: ImageSession, rec: RecallAnnotator, y: float, x: float, positive: bool):
        job = self._try_click(rec, y, x, positive)
        return None if job is None else self._start_recall(session, rec, job)

    def _try_click(self, target: Annotator | RecallAnnotator, y: float, x: float, positive: bool):
        """The click's job, or None after telling the user why the click was refused."""
        try:
            job = target.add_click(y, x, positive)
        except ValueError as exc:
            show_info(str(exc))
            return None
        self._refresh_points()
        return job

    def _start_recall(self, session: ImageSession, rec: RecallAnnotator, job: RecallJob):
        key = self.current_slice(session)
        image = session.image
        data = image.data[key] if key else image.data
        image_key = (session.token, id(image.data), key)
        exemplar_key = (image_key, job.exemplar_id, hash(np.packbits(job.exemplar).tobytes()))
        carried = getattr(job, "carried", None)  # an exemplar from another image or slice
        plane = self.series_section.plane(session, key)

        def work():
            with self._lock:
                t = time.perf_counter()
                recaller = self._get_recaller()
                recaller.set_image(np.asarray(data), key=image_key)  # a new exemplar keeps the tile features
                if carried is not None:
                    recaller.set_image(np.asarray(data), key=plane)
                    set_exemplar_for(recaller, carried, plane)
                else:
                    recaller.set_exemplar(job.exemplar, job.exemplar_clicks, key=exemplar_key)
                tiles = len(recaller.layout.origins)  # > 1: a large image, shown as a progress bar
                result = recaller.recall(job.clicks, job.prev_prob, on_tile=self._tile_done if tiles > 1 else None)
                scale = min(recaller.layout.scale)
                return result, time.perf_counter() - t, scale

        return self._start_worker(work, lambda result: self._on_recall(rec, job, *result), "finding similar objects…")

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

    def _on_recall(self, rec: RecallAnnotator, job: RecallJob, result: RecallResult, seconds: float,
                   scale: float = 1.0) -> None:
        if not rec.apply(job, result):
            return  # stale
        self._refresh()
        proposals = rec.proposals()
        n = 0 if proposals is None else len(np.unique(proposals)) - 1
        how = f" ({result.tiles} tiles)" if result.tiles > 1 else ""
        if scale < 0.999:
            how += f" — the image was shrunk to {scale:.0%} to fit the model's view; small objects may be missed"
        if n == 0:
            self.status.value = (f"no other object like the exemplar found ({seconds * 1000:.0f} ms{how}): "
                                 "click on missed objects to add them, or give a stronger iCMFormer++ "
                                 "model (the shipped one knows nuclei best)")
        else:
            self.status.value = f"{n} proposals in {seconds * 1000:.0f} ms{how} · click to fix, then Accept"

    def proposals(self) -> np.ndarray | None:
        """The current proposals (instance labels of the slice), committed objects left out."""
        rec = self.recall
        return None if rec is None else rec.proposals()

    def accept(self) -> list[int]:
        """Commit the proposals as new objects (one undo step); existing objects are kept."""
        rec = self.recall
        if rec is None or rec.proposals() is None:
            show_info("Nothing to accept: run Find similar first.")
            return []
        try:
            ids = rec.accept()
        except ValueError as exc:
            self.status.value = str(exc)
            show_error(str(exc))
            return []
        self.status.value = f"accepted {len(ids)} objects" + (f" (ids {ids[0]}–{ids[-1]})" if ids else "")
        self._refresh()
        self.series_section.autosave()
        return ids

    # -- export -----------------------------------------------------------------------------
    def default_export_path(self) -> Path | None:
        """``<image>_objects.json`` next to the image file (or in the working folder)."""
        session = self.session
        if session is None:
            return None
        source = getattr(getattr(session.image, "source", None), "path", None)
        folder = Path(source).parent if source else Path.cwd()
        stem = Path(source).stem if source else session.image.name
        return folder / f"{stem}_objects.json"

    def confirm_overwrite(self, path: Path) -> bool:
        """Ask before replacing a file (tests replace this method)."""
        from qtpy.QtWidgets import QMessageBox  # noqa: PLC0415

        answer = QMessageBox.question(self.native, "Replace file?", f"{path} already exists. Replace it?",
                                      QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                                      QMessageBox.StandardButton.No)
        return answer == QMessageBox.StandardButton.Yes

    def export(self, path=None):
        """Write the image's objects as COCO json (.json) or a label image (.tif/.png) on a
        worker (napari progress); an existing file is replaced only after asking. Returns the
        worker (None when nothing was started)."""
        session = self.session
        objects = None if session is None else session.layers.get(OBJECTS)
        if objects is None or objects not in self.viewer.layers or not objects.data.any():
            self._say("Nothing to export yet: commit an object first.")
            return None
        if path is None or str(path) in ("", "."):
            path = self.default_export_path()
            self.export_path.value = path
        path = Path(path)
        try:
            check_target(path)
        except FileExistsError:
            if not self.confirm_overwrite(path):
                self.status.value = f"export cancelled: {path} was kept"
                return None
        except ObjectFileError as exc:
            self._say(f"export failed: {exc}", error=True)
            return None
        labels, name = objects.data, session.image.name
        if source := getattr(getattr(session.image, "source", None), "path", None):
            name = Path(source).name

        def work():
            with progress(total=0, desc=f"exporting {path.name}"):
                return write_objects(path, labels, name, overwrite=True), int(np.count_nonzero(np.unique(labels)))

        def done(result):
            written, n = result
            self.status.value = f"exported {n} objects to {written}"

        return self._start_worker(work, done, f"exporting to {path}…")

    def _say(self, message: str, error: bool = False) -> None:
        self.status.value = message
        (show_error if error else show_info)(message)

    # -- display ----------------------------------------------------------------------------
    def _refresh_points(self) -> None:
        session = self.session
        ann = self.annotator_for(session)
        if ann is None:
            return
        key = self.current_slice(session)
        rec = session.recalls.get(key)
        shown = rec.clicks if rec is not None and rec.active else ann.clicks
        for role, clicks in ((POSITIVE, shown.positives), (NEGATIVE, shown.negatives)):
            pts = [(*key, c.y, c.x) for c in clicks]
            self.layer(role, session).data = np.array(pts, float).reshape(-1, len(session.shape))

    def _refresh(self) -> None:
        session = self.session
        ann = self.annotator_for(session)
        if ann is None:
            return
        ann.threshold = self.threshold.value
        self._refresh_points()
        key = self.current_slice(session)
        current = self.layer(CURRENT, session)
        if session.drawn is not None and session.drawn != key:
            current.data[session.drawn] = 0
        plane = self._plane(current.data, key)
        plane[...] = ann.current_mask
        session.drawn = key
        current.refresh()
        rec = session.recalls.get(key)
        proposals = rec.proposals() if rec is not None else None
        if proposals is not None or PROPOSALS in session.layers:
            layer = self.layer(PROPOSALS, session)
            layer.data[...] = 0
            if proposals is not None:
                self._plane(layer.data, key)[...] = proposals
            layer.refresh()
        self.layer(OBJECTS, session).refresh()
