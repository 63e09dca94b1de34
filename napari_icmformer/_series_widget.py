"""The dock widget's "Many images" section: open a folder (or resume a save folder), Next /
Previous (PgDn / PgUp), the progress line, autosave, and the exemplar carried forward (*Find
similar here*, *Find similar on all slices / all images* on a worker with progress and Cancel).

Thin: the state is :class:`~napari_icmformer.series.ImageSeries` (files, index, each image's
objects, the save folder) and :mod:`~napari_icmformer.carry` (the last exemplar, the recall of
a plane with it); this module translates button presses and keeps the layers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from magicgui.widgets import Container, FileEdit, Label, PushButton
from napari.layers import Image
from napari.qt.threading import create_worker
from napari.utils import progress
from napari.utils.notifications import show_error

from .autosave import MANIFEST, AutosaveError
from .carry import CarriedExemplar, CarriedRecall, recall_each, stack_planes
from .series import ImageSeries, SeriesError, spatial_shape

OBJECTS_ROLE = "objects"  # the main widget's role name of the committed-objects layer
DEFAULT_SAVE_SUBFOLDER = "icmformer-series"  # a folder of its own beside the images: nothing of theirs is touched
PAINT_SAVE_MS = 800  # painted by hand: saved this long after the last stroke


class SeriesSection:
    """Widgets and layer handling of an image series inside a ``SegmentationWidget``."""

    def __init__(self, widget) -> None:
        self.w = widget
        self.series: ImageSeries | None = None
        self.layer: Image | None = None  # the series image on screen
        self.exemplar: CarriedExemplar | None = None  # the last exemplar (carried forward)
        # proposals waiting on images not on screen: series index -> slice -> (exemplar, RecallResult)
        self.waiting: dict[int, dict[tuple, tuple[CarriedExemplar, object]]] = {}
        self.worker = None
        self._bar: progress | None = None
        self._paint_timer = None  # debounces saving after napari paint strokes
        self.folder = FileEdit(label="image folder", mode="d", value="")
        self.save_folder = FileEdit(label="autosave to", mode="d", value="")
        self.open_btn = PushButton(text="Open folder…")
        self.prev_btn = PushButton(text="◀ Previous (PgUp)")
        self.next_btn = PushButton(text="Next (PgDn) ▶")
        self.line = Label(value="no series open")
        self.here_btn = PushButton(text="Find similar here (last exemplar)")
        self.all_btn = PushButton(text="Find similar on all slices / all images")
        self.cancel_btn = PushButton(text="Cancel")
        self.cancel_btn.enabled = False
        self.container = Container(widgets=[
            self.folder, self.save_folder, self.open_btn,
            Container(widgets=[self.prev_btn, self.next_btn], layout="horizontal", labels=False),
            self.line, self.here_btn, Container(widgets=[self.all_btn, self.cancel_btn], layout="horizontal",
                                                labels=False)], label="Many images")
        self.open_btn.changed.connect(lambda *_: self.open())
        self.prev_btn.changed.connect(lambda *_: self.previous())
        self.next_btn.changed.connect(lambda *_: self.next())
        self.here_btn.changed.connect(lambda *_: self.find_here())
        self.all_btn.changed.connect(lambda *_: self.find_all())
        self.cancel_btn.changed.connect(lambda *_: self.cancel())
        for f in (self.folder, self.save_folder):
            f.changed.connect(widget._focus_canvas)

    # -- opening and moving ------------------------------------------------------------------
    def ask_folder(self) -> str | None:
        """A folder dialog (tests give the folder instead)."""
        from qtpy.QtWidgets import QFileDialog  # noqa: PLC0415

        return QFileDialog.getExistingDirectory(self.w.native, "Open a folder of images (or a save folder)") or None

    def open(self, source=None, save_folder=None) -> ImageSeries | None:
        """Open a folder (or a list of files) as a series, autosaved to ``save_folder`` (default:
        the field, else ``<folder>/icmformer-series``); a save folder opened directly resumes."""
        if source is None:
            value = str(self.folder.value)
            source = value if value not in ("", ".") else self.ask_folder()
            if source is None:
                return None
        if save_folder is None:
            value = str(self.save_folder.value)
            save_folder = value if value not in ("", ".") else None
        try:
            if not isinstance(source, (list, tuple)) and (Path(source) / MANIFEST).is_file():
                series = ImageSeries.resume(source)  # the save folder itself: resume
            else:
                if save_folder is None:
                    base = Path(source if not isinstance(source, (list, tuple)) else source[0])
                    save_folder = (base if base.is_dir() else base.parent) / DEFAULT_SAVE_SUBFOLDER
                series = ImageSeries.open(source, save_folder)
        except (SeriesError, AutosaveError) as exc:
            self.w._say(f"cannot open the series: {exc}", error=True)
            return None
        self._leave()
        self.series, self.waiting = series, {}
        self.save_folder.value = series.store.folder if series.store is not None else ""
        self._show(series.index)
        saved = sum(1 for i in range(len(series)) if series.store is not None and series.store.saved(i))
        self.w.status.value = (f"series of {len(series)} images, saved to {series.store.folder}"
                               + (f" (resumed: {saved} annotated)" if saved else ""))
        return series

    def go(self, index: int) -> bool:
        """Show image ``index`` of the series (the one on screen is kept and saved first)."""
        if self.series is None:
            self.w._say("Open a folder first (Open folder…).")
            return False
        if not 0 <= index < len(self.series):
            self.w.status.value = (f"already at the {'last' if index >= len(self.series) else 'first'} image "
                                   f"of {len(self.series)}")
            return False
        if self.worker is not None:
            self.w._say("Find similar is running on all images: wait or Cancel it first.")
            return False
        try:
            self._leave()
        except AutosaveError as exc:
            self.w._say(f"could not save the objects of this image: {exc}", error=True)
            return False
        self._show(index)
        return True

    def next(self, *_) -> bool:
        return self.go(self.series.index + 1) if self.series is not None else self.go(0)

    def previous(self, *_) -> bool:
        return self.go(self.series.index - 1) if self.series is not None else self.go(0)

    def _session(self):
        if self.layer is None:
            return None
        session = self.w._sessions.get(id(self.layer))
        return session if session is not None and session.image is self.layer else None

    def labels(self) -> np.ndarray | None:
        """The objects of the series image on screen (None when it is not open)."""
        session = self._session()
        objects = None if session is None else session.layers.get(OBJECTS_ROLE)
        return None if objects is None or objects not in self.w.viewer.layers else np.asarray(objects.data)

    def _leave(self) -> None:
        """Keep (and save) the objects of the image on screen and its waiting proposals, and
        close its layers."""
        if self.series is None or self.layer is None:
            return
        labels = self.labels()
        if labels is not None:
            self.series.go(self.series.index, labels)  # saves when changed
        session = self._session()
        if session is not None:
            for key, rec in session.recalls.items():
                if isinstance(rec, CarriedRecall) and rec.carried is not None and rec.result is not None:
                    self.waiting.setdefault(self.series.index, {})[key] = (rec.carried, rec.result)
            for layer in list(session.layers.values()):
                if layer in self.w.viewer.layers:
                    self.w.viewer.layers.remove(layer)
        if self.layer in self.w.viewer.layers:
            self.w.viewer.layers.remove(self.layer)
        self.layer = None

    def _show(self, index: int) -> None:
        series = self.series
        series.go(index)
        try:
            image = series.read()
        except SeriesError as exc:
            self.w._say(str(exc), error=True)
            self.update_line()
            return
        added = self.w.viewer.add_image(image, name=series.path.name)
        # the layer itself, as the widget's events see it: a plugin's viewer is napari's public
        # proxy, whose add_image returns a proxy of the layer (another object)
        self.layer = getattr(added, "__wrapped__", added)
        session = self.w.session_for(self.layer)
        self.w.image_choice.value = self.layer
        if session is None:
            self.w._say(f"{series.path.name} is not an image with two spatial dimensions", error=True)
            return
        objects = self.w.layer(OBJECTS_ROLE, session)
        objects.data = series.objects(index, session.shape)
        objects.events.paint.connect(self._painted)  # napari's brush / fill: saved once the strokes stop
        session.annotators.clear()  # they held the empty array's planes
        session.recalls.clear()
        for key, (exemplar, result) in self.waiting.pop(index, {}).items():
            rec = CarriedRecall(self.w.annotator_at(session, key))
            rec.show(exemplar, result)
            session.recalls[key] = rec
        self.w._refresh()
        self.update_line()

    def update_line(self) -> None:
        if self.series is None:
            self.line.value = "no series open"
            return
        labels = self.labels()
        if labels is not None:
            self.series.keep(labels)
        waiting = sorted(i + 1 for i in self.waiting)
        self.line.value = (f"{self.series.progress()} · {self.series.path.name}"
                           + (f" · proposals waiting on image(s) {', '.join(map(str, waiting))}" if waiting else ""))

    def _painted(self, *_) -> None:
        if self._paint_timer is None:
            from qtpy.QtCore import QTimer  # noqa: PLC0415

            self._paint_timer = QTimer()
            self._paint_timer.setSingleShot(True)
            self._paint_timer.timeout.connect(self.autosave)
        self._paint_timer.start(PAINT_SAVE_MS)

    def autosave(self) -> None:
        """After a commit, accept or undo on the series image: its objects to the save folder."""
        session = self.w.session
        if self.series is None or session is None or session.image is not self.layer:
            return
        labels = self.labels()
        if labels is None:
            return
        try:
            self.series.autosave(labels)
        except AutosaveError as exc:
            self.w._say(f"autosave failed: {exc}", error=True)
        self.update_line()

    # -- the exemplar carried forward --------------------------------------------------------
    def plane(self, session, key: tuple) -> object:
        """A name for a 2-D plane that stays unique while the layer lives (predictor caches)."""
        if self.series is not None and session is not None and session.image is self.layer:
            return ("series", str(self.series.path), key)
        return ("layer", session.token, key)

    def remember(self, session, key: tuple, job) -> None:
        """Find similar started with a committed object: it is the exemplar carried forward."""
        if getattr(job, "carried", None) is not None:
            return
        data = session.image.data[key] if key else session.image.data
        where = session.image.name + (f" slice {key}" if key else "")
        self.exemplar = CarriedExemplar(np.asarray(data).copy(), np.asarray(job.exemplar, bool).copy(),
                                        job.exemplar_clicks, self.plane(session, key),
                                        f"{where}, object {job.exemplar_id}")

    def find_here(self):
        """Find similar on the image (slice) on screen with the last exemplar; returns the worker."""
        w = self.w
        session = w.session
        if self.exemplar is None:
            w._say("No exemplar yet: run Find similar with a committed object on an image first.")
            return None
        ann = w.annotator_for(session)
        if ann is None:
            w._say("Add or select an image first.")
            return None
        key = w.current_slice(session)
        rec = CarriedRecall(ann)
        session.recalls[key] = rec
        job = rec.start_carried(self.exemplar)
        return w._start_recall(session, rec, job)

    def _planes(self, session):
        """What "all" means here: the slices of the stack on screen, else every series image."""
        if session is not None and len(session.shape) > 2:
            data = session.image.data
            lead = session.shape[:-2]
            return (int(np.prod(lead)), "slices",
                    ((("slice", idx), self.plane(session, idx), data[idx]) for idx in np.ndindex(*lead)))
        if self.series is not None:
            series = self.series

            def images():
                for i, path in enumerate(series.paths):
                    try:
                        image = series.read(i)
                    except SeriesError as exc:
                        yield ("error", i), str(exc), None
                        continue
                    shape = spatial_shape(image)
                    for (_, idx), plane in stack_planes(image, shape[:-2], str(path)):
                        yield ("image", i, idx), ("series", str(path), idx), plane
            return len(series), "images", images()
        return 0, "", None

    def find_all(self):
        """Find similar with the last exemplar on every slice of the stack on screen, or on every
        image of the series: a worker (progress bar, Cancel), proposals left to review and
        accept on each. Returns the worker."""
        w = self.w
        if self.exemplar is None:
            w._say("No exemplar yet: run Find similar with a committed object on an image first.")
            return None
        if self.worker is not None:
            w._say("Find similar on all is already running.")
            return None
        session = w.session
        total, what, planes = self._planes(session)
        if planes is None:
            w._say("Open a stack or a folder of images first: Find similar on all runs on its slices or images.")
            return None
        exemplar = self.exemplar
        session = w.session

        done = {"n": 0, "errors": [], "sent": 0, "handled": 0, "finished": False}

        def work():
            recaller = None
            for where, plane, image in planes:
                if image is None:
                    done["sent"] += 1
                    yield where, plane, 0.0  # an unreadable image: reported, the others go on
                    continue
                with w._lock:
                    recaller = recaller or w._get_recaller()
                    _, result, seconds = next(recall_each(recaller, [(plane, image)], exemplar))
                done["sent"] += 1
                yield where, result, seconds

        self._bar = progress(total=total, desc=f"Find similar on all {what}")

        def on_yield(item):
            where, result, _ = item
            if where[0] == "error":
                done["errors"].append(result)
                show_error(result)
            elif where[0] == "slice":
                rec = CarriedRecall(w.annotator_at(session, where[1]))
                rec.show(exemplar, result)
                session.recalls[where[1]] = rec
            else:
                _, index, idx = where
                if index == self.series.index and self._session() is not None:
                    s = self._session()
                    rec = CarriedRecall(w.annotator_at(s, idx))
                    rec.show(exemplar, result)
                    s.recalls[idx] = rec
                else:
                    self.waiting.setdefault(index, {})[idx] = (exemplar, result)
            if where[0] != "image" or not where[2] or where[2][-1] == 0:
                done["n"] += 1
                self._bar.update(1)
            w.status.value = f"Find similar on all {what}: {done['n']} of {total}"
            w._refresh()
            self.update_line()
            done["handled"] += 1
            if done["finished"] and done["handled"] >= done["sent"]:
                finish()

        def on_finished():
            # Qt may hand over the last yielded results after ``finished``: end once all are in
            done["finished"] = True
            if done["handled"] >= done["sent"]:
                finish()

        def finish():
            cancelled = self.worker is not None and getattr(self.worker, "_cancelled", False)
            self.worker = None
            self.cancel_btn.enabled = False
            self.all_btn.enabled = True
            if self._bar is not None:
                self._bar.close()
                self._bar = None
            errors = f"; {len(done['errors'])} could not be read" if done["errors"] else ""
            w.status.value = (f"cancelled after {done['n']} of {total} {what}" if cancelled else
                               f"proposals on {done['n']} {what} from {exemplar.source}{errors}: review each "
                               f"({'the slider' if what == 'slices' else 'Next / Previous'}), fix with clicks, "
                               "Accept")
            w.pending -= 1

        worker = create_worker(work, _start_thread=False)
        worker.yielded.connect(on_yield)
        worker.errored.connect(w._on_error)
        worker.finished.connect(on_finished)
        self.worker = worker
        w.pending += 1
        self.cancel_btn.enabled = True
        self.all_btn.enabled = False
        w.status.value = f"Find similar on all {what} with {exemplar.source}…"
        worker.start()
        return worker

    def cancel(self) -> None:
        """Stop Find similar on all after the plane in progress (what is done stays)."""
        if self.worker is not None:
            self.worker._cancelled = True
            self.worker.quit()
