"""Segment one coin in scikit-image's `coins` with two clicks, using the Python API.

    python examples/segment_with_python_api.py [--checkpoint PATH] [--out coin_mask.png]
"""

from __future__ import annotations

import argparse

import numpy as np
from PIL import Image
from skimage import data

from napari_icmformer import Predictor, PredictorConfig
from src_models import Clicks


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoint", default=None, help="default: the checkpoint shipped in the package")
    ap.add_argument("--out", default="coin_mask.png")
    args = ap.parse_args()

    predictor = Predictor.from_checkpoint(args.checkpoint, PredictorConfig(device="auto"))
    image = data.coins()  # 2-D grayscale uint8; converted to RGB inside
    predictor.set_image(image)  # image features computed once here, reused by every click

    clicks = Clicks().add(y=54, x=44)  # positive click on the left-most coin of the top row
    prob = predictor.predict(clicks)
    clicks = clicks.add(y=88, x=44, positive=False)  # a negative click on the background below it
    prob = predictor.predict(clicks, prev_mask=prob)  # feed the previous prediction back
    mask = prob > predictor.config.threshold

    Image.fromarray(mask.astype(np.uint8) * 255).save(args.out)
    ys, xs = np.nonzero(mask)
    box = (ys.min(), xs.min(), ys.max(), xs.max()) if mask.any() else None
    print(f"{int(mask.sum())} pixels, bounding box (y0, x0, y1, x1) = {box}; wrote {args.out}")


if __name__ == "__main__":
    main()
