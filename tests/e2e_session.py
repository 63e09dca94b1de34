"""A user's session, run in its own process by test_plugin_e2e.py: napari first (canvas drawn),
then the dock widget opened the way the Plugins menu opens it, then real Qt mouse and key events
on the canvas. Prints one JSON line of findings; exit code 0 only when every step behaved.

Usage: python tests/e2e_session.py [CHECKPOINT]  (no argument: the shipped default)
"""

from __future__ import annotations

import json
import sys
import time

import napari
import numpy as np
from qtpy.QtCore import QEvent, QPointF, Qt
from qtpy.QtGui import QKeyEvent, QMouseEvent
from qtpy.QtWidgets import QApplication
from skimage import data


def pump(seconds: float = 0.05) -> None:
    end = time.time() + seconds
    while time.time() < end:
        QApplication.processEvents()
        time.sleep(0.005)


def wait_until(cond, timeout: float = 60.0) -> bool:
    end = time.time() + timeout
    while time.time() < end:
        if cond():
            return True
        pump(0.02)
    return False


def canvas_pixel(viewer, y: float, x: float) -> QPointF:
    """Screen position on the canvas of world point (y, x) in a 2-D view."""
    canvas = viewer.window._qt_viewer.canvas.native
    cy, cx = viewer.camera.center[-2:]
    zoom = viewer.camera.zoom
    return QPointF((x - cx) * zoom + canvas.width() / 2, (y - cy) * zoom + canvas.height() / 2)


def mouse(widget, kind, pos: QPointF, buttons) -> None:
    types = {"press": QEvent.Type.MouseButtonPress, "move": QEvent.Type.MouseMove,
             "release": QEvent.Type.MouseButtonRelease}
    button = Qt.MouseButton.NoButton if kind == "move" else Qt.MouseButton.LeftButton
    glob = widget.mapToGlobal(pos.toPoint())
    event = QMouseEvent(types[kind], pos, QPointF(glob), button, buttons, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(widget, event)
    pump(0.02)


def key(widget, code, modifiers=Qt.KeyboardModifier.NoModifier, text: str = "") -> None:
    for kind in (QEvent.Type.KeyPress, QEvent.Type.KeyRelease):
        QApplication.sendEvent(widget, QKeyEvent(kind, code, modifiers, text))
    pump(0.1)


def main() -> int:
    found: dict = {}
    viewer = napari.Viewer()
    viewer.add_image(data.coins(), name="coins")
    viewer.window._qt_window.resize(1400, 900)
    pump(1.0)  # the canvas has drawn (Mesa's GL is loaded) before any model import
    _, widget = viewer.window.add_plugin_dock_widget("napari-icmformer", "Interactive segmentation")
    found["widget"] = type(widget).__name__
    found["triton_blocked"] = sys.modules.get("triton", "absent") is None
    widget.device.value = "cpu"
    if len(sys.argv) > 1:
        widget.checkpoint.value = sys.argv[1]
    viewer.reset_view()
    pump(0.5)
    canvas = viewer.window._qt_viewer.canvas.native
    left = Qt.MouseButton.LeftButton
    none = Qt.MouseButton.NoButton

    # 1. a click on a coin makes a mask near it
    p = canvas_pixel(viewer, 54, 44)
    mouse(canvas, "press", p, left)
    mouse(canvas, "release", p, none)
    ok = wait_until(lambda: widget.pending == 0 and len(widget.annotator.clicks) == 1)
    mask = widget.layer("current object").data
    found["click_clicks"] = len(widget.annotator.clicks)
    found["click_mask_pixels"] = int(mask.sum())
    ys, xs = np.nonzero(mask)
    found["click_mask_centre"] = [float(ys.mean()), float(xs.mean())] if len(ys) else None
    click_ok = bool(ok and mask[54, 44] and 0 < mask.sum() < 0.2 * mask.size)

    # 2. a left-drag pans and adds no click
    centre_before = tuple(viewer.camera.center)
    q = canvas_pixel(viewer, 150, 200)
    mouse(canvas, "press", q, left)
    for k in range(1, 11):
        mouse(canvas, "move", QPointF(q.x() + 6 * k, q.y() + 4 * k), left)
    mouse(canvas, "release", QPointF(q.x() + 60, q.y() + 40), none)
    pump(0.5)
    found["drag_clicks"] = len(widget.annotator.clicks)
    found["drag_panned"] = bool(tuple(viewer.camera.center) != centre_before)
    drag_ok = found["drag_clicks"] == 1 and found["drag_panned"]

    # 3. C commits, Ctrl+Z undoes (keys sent to the canvas, as a user types them)
    key(canvas, Qt.Key.Key_C, text="c")
    objects = widget.layer("objects").data
    found["commit_ids"] = sorted(int(v) for v in np.unique(objects) if v)
    commit_ok = found["commit_ids"] == [1] and len(widget.annotator.clicks) == 0
    key(canvas, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    found["undo_ids"] = sorted(int(v) for v in np.unique(widget.layer("objects").data) if v)
    found["undo_clicks"] = len(widget.annotator.clicks)
    undo_ok = found["undo_ids"] == [] and found["undo_clicks"] == 1

    # 4. after typing in a field, C goes to the canvas again (sent to whatever has the focus)
    viewer.window._qt_window.activateWindow()
    spin = widget.threshold.native
    spin.setFocus()
    pump(0.2)
    found["field_had_focus"] = QApplication.focusWidget() is not None and QApplication.focusWidget() is not canvas
    widget.threshold.value = 0.45  # the user edited the threshold
    pump(0.2)
    target = QApplication.focusWidget() or canvas
    found["focus_after_edit"] = type(target).__name__
    key(target, Qt.Key.Key_C, text="c")
    focus_ok = sorted(int(v) for v in np.unique(widget.layer("objects").data) if v) == [1]

    found.update(click_ok=click_ok, drag_ok=drag_ok, commit_ok=commit_ok, undo_ok=undo_ok, focus_ok=focus_ok)
    print("E2E " + json.dumps(found), flush=True)
    viewer.close()
    return 0 if (click_ok and drag_ok and commit_ok and undo_ok and focus_ok and found["triton_blocked"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
