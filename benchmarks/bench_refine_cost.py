"""What the graph-cut refinement adds to a click: the shipped default, refine="none" vs
"graphcut", on identical click sequences, at several image sizes (scikit-image's bundled
``coins``, upscaled; the object is its largest coin).

    python benchmarks/bench_refine_cost.py --sizes 500 2000 --clicks 10 --repeats 3

The clicks come from the benchmark's simulated user against the coin mask (run once with
refine="none"), then both settings replay them, each feeding back its own previous output.
Reports the median seconds per click of each, and their ratio.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import numpy as np
import torch
from scipy import ndimage
from skimage import data, filters, transform

from napari_icmformer.clicking import first_eval_click, next_eval_click
from napari_icmformer.engine import Predictor, PredictorConfig
from napari_icmformer.runtime import DEFAULT_THRESHOLD
from src_models import Clicks


def scene(size: int) -> tuple[np.ndarray, np.ndarray]:
    image = data.coins()
    fg = ndimage.binary_fill_holes(image > filters.threshold_otsu(image))
    labels, _ = ndimage.label(fg)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    gt = labels == int(np.argmax(sizes))
    scale = size / max(image.shape)
    out_shape = (round(image.shape[0] * scale), round(image.shape[1] * scale))
    big = (transform.resize(image, out_shape, order=1, preserve_range=True)).astype(np.uint8)
    big_gt = transform.resize(gt.astype(float), out_shape, order=0) > 0.5
    return big, big_gt


def click_sequence(predictor: Predictor, image: np.ndarray, gt: np.ndarray, n: int) -> list[Clicks]:
    predictor.set_image(image)
    predictor.reset_object()
    clicks, prob, seq = Clicks(), None, []
    for k in range(n):
        c = first_eval_click(gt) if k == 0 else next_eval_click(prob > DEFAULT_THRESHOLD, gt, None, clicks)
        if c is None:
            break
        clicks = clicks.add(c.y, c.x, c.positive)
        seq.append(clicks)
        prob = predictor.predict(clicks, prob)
    return seq


def time_sequence(predictor: Predictor, image: np.ndarray, seq: list[Clicks]) -> list[float]:
    predictor.set_image(image)
    predictor.reset_object()
    predictor.predict(seq[0])  # the image embedding is not what a click costs
    predictor.reset_object()
    prob, out = None, []
    for clicks in seq:
        t = time.perf_counter()
        prob = predictor.predict(clicks, prob)
        out.append(time.perf_counter() - t)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[500, 2000])
    ap.add_argument("--clicks", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model = Predictor.from_checkpoint().model
    plain = Predictor(model, PredictorConfig(device="cpu", refine="none"))
    refined = Predictor(model, PredictorConfig(device="cpu", refine="graphcut"))
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    print("| image | clicks | refine=none (s/click) | refine=graphcut (s/click) | ratio |")
    print("|---|---|---|---|---|")
    for size in args.sizes:
        image, gt = scene(size)
        seq = click_sequence(plain, image, gt, args.clicks)
        t_plain, t_ref = [], []
        for _ in range(args.repeats):  # interleaved, so host noise hits both alike
            t_plain += time_sequence(plain, image, seq)
            t_ref += time_sequence(refined, image, seq)
        a, b = statistics.median(t_plain), statistics.median(t_ref)
        print(f"| {image.shape[0]}×{image.shape[1]} | {len(seq)} | {a:.3f} | {b:.3f} | {b / a:.2f} |", flush=True)


if __name__ == "__main__":
    main()
