"""A scripted session in a real napari window, saved as docs/screenshot.png.

Run headless under Xvfb (the canvas is black with the offscreen platform)::

    QT_QPA_PLATFORM=xcb xvfb-run -a -s "-screen 0 1600x1000x24" python scripts/make_screenshot.py

The widget is opened through the plugin entry (as *Plugins → Interactive segmentation* does),
after the canvas has drawn. The "user" clicks coins of scikit-image's ``coins`` sample with the shipped default model:
a first click in each coin, then corrective clicks placed by the benchmark's simulated user
(against a rough threshold mask of the coins) until the IoU reaches 0.85 or 4 clicks, then
commit. The last coin is left in progress so its clicks show.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import napari
import numpy as np
from qtpy.QtWidgets import QApplication
from scipy import ndimage
from skimage import data, filters, measure, morphology
from skimage.io import imsave

from napari_icmformer.clicking import first_eval_click, next_eval_click
from napari_icmformer.metrics import iou


def coin_masks(image: np.ndarray, n: int) -> list[np.ndarray]:
    """Rough per-coin masks (Sobel edges → filled regions), the largest ``n``."""
    edges = filters.sobel(image)
    fg = ndimage.binary_fill_holes(morphology.binary_closing(edges > 0.05, morphology.disk(2)))
    fg = morphology.binary_opening(fg, morphology.disk(4))
    singles = [r for r in measure.regionprops(measure.label(fg)) if r.solidity > 0.93]  # no merged coins
    regions = sorted(singles, key=lambda r: -r.area)[:n]
    regions.sort(key=lambda r: (round(r.centroid[0] / 60), r.centroid[1]))
    masks = []
    for r in regions:
        m = np.zeros(image.shape, bool)
        m[r.coords[:, 0], r.coords[:, 1]] = True
        masks.append(m)
    return masks


def wait(widget, timeout: float = 60) -> None:
    t = time.time()
    while widget.pending and time.time() - t < timeout:
        QApplication.processEvents()
        time.sleep(0.01)
    QApplication.processEvents()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path("docs/screenshot.png"))
    ap.add_argument("--objects", type=int, default=8)
    args = ap.parse_args()
    image = data.coins()
    viewer = napari.Viewer(title="napari-icmformer")
    viewer.window._qt_window.resize(1400, 820)
    viewer.add_image(image, name="coins")
    for _ in range(50):  # the canvas draws first, as for a user who then opens the plugin
        QApplication.processEvents()
        time.sleep(0.01)
    # exactly what Plugins -> Interactive segmentation does
    _, widget = viewer.window.add_plugin_dock_widget("napari-icmformer", "Interactive segmentation")
    widget.device.value = "cpu"
    masks = coin_masks(image, args.objects)
    for k, gt in enumerate(masks):
        pred = np.zeros_like(gt)
        for n in range(4):
            done = widget.annotator.clicks
            c = first_eval_click(gt) if n == 0 else next_eval_click(pred, gt, None, done)
            if c is None:
                break
            widget.click(c.y, c.x, positive=c.positive)
            wait(widget)
            pred = widget.annotator.current_mask
            if iou(pred, gt) >= 0.85:
                break
        if k < len(masks) - 1:
            widget.commit()
    widget.layer("objects").opacity = 0.6
    viewer.reset_view()
    QApplication.processEvents()
    shot = viewer.screenshot(canvas_only=False, flash=False)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    imsave(args.out, shot, check_contrast=False)
    print(f"wrote {args.out} {shot.shape}; objects committed: {int(widget.layer('objects').data.max())}")
    viewer.close()


if __name__ == "__main__":
    main()
