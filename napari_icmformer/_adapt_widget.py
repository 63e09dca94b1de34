"""The dock widget's "Adapt to my objects" section: fine-tune both models on the objects
committed in the open images (``adapt.py``), on a napari thread worker with a progress bar and
Cancel, then switch the widget to the adapted checkpoints (saved in a folder of their own; the
shipped defaults are never touched) with a button to switch back.

Thin, like the main widget: the work is :func:`napari_icmformer.adapt.adapt`.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from magicgui.widgets import Container, FloatSpinBox, Label, PushButton
from napari.layers import Image
from napari.qt.threading import create_worker
from napari.utils import progress
from napari.utils.notifications import show_error, show_info
from superqt.utils import ensure_main_thread

from .adapt import AdaptCancelled, AdaptConfig, AdaptProgress, AdaptResult, adapt, summary_line
from .adapt_data import AdaptInputError, AnnotatedImage, as_annotated, split_objects

OBJECTS_ROLE = "objects"  # the main widget's role name of the committed-objects layer
BAR_STEPS = 1000


def default_save_root() -> Path:
    """Where adapted checkpoints go: ``$ICMFORMER_ADAPT_DIR`` or ``~/.cache/icmformer/adapted``."""
    return Path(os.environ.get("ICMFORMER_ADAPT_DIR", Path.home() / ".cache" / "icmformer" / "adapted"))


def _path_value(field) -> str:
    value = str(field.value)
    return "" if value in ("", ".") else value


class AdaptSection(Container):
    """Minutes, *Adapt to my objects*, *Cancel*, *Use previous models* and the result line."""

    def __init__(self, main, save_root: Path | None = None) -> None:
        self.main = main
        self.minutes = FloatSpinBox(label="adapt minutes", value=AdaptConfig.minutes, min=0.05, max=120, step=0.5)
        self.adapt_btn = PushButton(text="Adapt to my objects")
        self.cancel_btn = PushButton(text="Cancel adaptation", enabled=False)
        self.restore_btn = PushButton(text="Use previous models", enabled=False)
        self.result = Label(value="")
        super().__init__(widgets=[self.minutes, self.adapt_btn, self.cancel_btn, self.restore_btn, self.result],
                         label="Adapt to my objects")
        self.config = AdaptConfig()  # the recipe; minutes and checkpoints come from the widgets
        self.save_root = Path(save_root) if save_root else default_save_root()
        self.worker = None
        self.last_result: AdaptResult | None = None
        self._cancel = threading.Event()
        self._bar: progress | None = None
        self._bar_n = 0
        self._previous: tuple[str, str] | None = None
        self.adapt_btn.changed.connect(lambda *_: self.start())
        self.cancel_btn.changed.connect(lambda *_: self.cancel())
        self.restore_btn.changed.connect(lambda *_: self.restore())

    # -- what the user committed ------------------------------------------------------------
    def collect(self) -> list[AnnotatedImage]:
        """Every open image's committed objects (each slice of a stack with objects on it)."""
        items = []
        for layer in list(self.main.viewer.layers):
            if not isinstance(layer, Image):
                continue
            session = self.main.session_for(layer)
            objects = None if session is None else session.layers.get(OBJECTS_ROLE)
            if objects is None or objects not in self.main.viewer.layers:
                continue
            labels = np.asarray(objects.data)
            if not labels.any():
                continue
            image = np.asarray(layer.data)
            plane = labels.shape[-2:]
            flat_labels = labels.reshape(-1, *plane)
            flat_image = image.reshape(-1, *image.shape[-3:]) if layer.rgb else image.reshape(-1, *plane)
            for k in np.flatnonzero(flat_labels.reshape(len(flat_labels), -1).any(axis=1)):
                name = layer.name if len(flat_labels) == 1 else f"{layer.name}[{k}]"
                items.append(as_annotated(name, flat_image[k], flat_labels[k]))
        return items

    # -- run ----------------------------------------------------------------------------------
    def _config(self) -> AdaptConfig:
        device = self.main.device.value
        if device == "auto":
            import torch  # noqa: PLC0415

            device = "cuda" if torch.cuda.is_available() else "cpu"
        return replace(self.config, minutes=float(self.minutes.value), device=device,
                       sois_checkpoint=_path_value(self.main.checkpoint) or None,
                       mois_checkpoint=_path_value(self.main.mois_checkpoint) or None)

    def _say(self, message: str, error: bool = False) -> None:
        self.result.value = message
        self.main.status.value = message
        (show_error if error else show_info)(message)

    def start(self):
        """Start adapting on a worker; returns it, or None (message shown) when it cannot start."""
        if self.worker is not None:
            self._say("an adaptation is already running: wait for it or Cancel it")
            return None
        try:
            items = self.collect()
            cfg = self._config()
            split_objects(items, cfg.held_out)  # too few objects: said now, not after a worker starts
        except (AdaptInputError, ValueError) as exc:
            self._say(str(exc), error=True)
            return None
        self._cancel.clear()
        folder = self.save_root / time.strftime("%Y%m%d-%H%M%S")
        while folder.exists():
            folder = folder.with_name(folder.name + "-1")

        def work():
            try:
                result = adapt(items, cfg, on_progress=self._on_progress, should_stop=self._cancel.is_set)
            except AdaptCancelled:
                return None  # not an error: the user asked
            if self._cancel.is_set():
                return None
            result.save(folder)
            return result

        self._bar = progress(total=BAR_STEPS, desc="Adapt to my objects")
        self._bar_n = 0
        worker = create_worker(work, _start_thread=False)
        worker.returned.connect(self._on_done)
        worker.errored.connect(self._on_error)
        worker.finished.connect(self._on_finished)
        self.worker = worker
        self.adapt_btn.enabled, self.cancel_btn.enabled = False, True
        self.result.value = f"adapting for up to {cfg.minutes:g} min on {sum(t.n_objects for t in items)} objects…"
        worker.start()
        return worker

    def cancel(self) -> None:
        """Stop at the next step: nothing is saved and the models in use stay as they are."""
        if self.worker is not None:
            self._cancel.set()
            self.result.value = "cancelling…"

    @ensure_main_thread
    def _on_progress(self, p: AdaptProgress) -> None:
        bar = self._bar
        if bar is None:
            return
        n = int(p.fraction * BAR_STEPS)
        if n > self._bar_n:
            bar.update(n - self._bar_n)  # may run queued events, the worker's finish (closing the bar) among them
            self._bar_n = n
        if self._bar is bar:
            bar.set_description(p.message[:60])

    def _close_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def _on_done(self, result: AdaptResult | None) -> None:
        if result is None:
            self._say("adaptation cancelled: the models in use are unchanged")
            return
        self.last_result = result
        self._previous = (_path_value(self.main.checkpoint), _path_value(self.main.mois_checkpoint))
        self.main.checkpoint.value = result.paths["sois"]
        if "mois" in result.paths:
            self.main.mois_checkpoint.value = result.paths["mois"]
        self.restore_btn.enabled = True
        self._say(f"adapted ({summary_line(result.report)}); now using {result.paths['sois'].parent}")

    def _on_error(self, exc: Exception) -> None:
        self._say(f"adaptation failed: {exc}", error=True)

    def _on_finished(self) -> None:
        self._close_bar()
        self.worker = None
        self.adapt_btn.enabled, self.cancel_btn.enabled = True, False

    def restore(self) -> None:
        """Switch back to the models used before the last adaptation (empty = shipped default)."""
        if self._previous is None:
            return
        sois, mois = self._previous
        self.main.checkpoint.value = sois
        self.main.mois_checkpoint.value = mois
        self._previous = None
        self.restore_btn.enabled = False
        self._say("back to the previous models" + ("" if sois or mois else " (the shipped defaults)"))


def add_adapt_section(main, save_root: Path | None = None) -> AdaptSection:
    """Put the section into the main widget, above its status line; returns it."""
    section = AdaptSection(main, save_root)
    main.adapt_toggle = main.add_section("Adapt to my objects: fine-tune on what you committed", section)
    return section
