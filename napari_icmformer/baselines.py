"""A classical click-seeded method that needs no training: scikit-image's random walker.

Positive clicks seed the object, negative clicks the background (disks of radius 5). With no
negative click yet, the image border seeds the background, the usual trick for one-click use.
It runs at ≤ ``max_side`` px on the longer side (the random walker is slow at full size) and the
probability map is resized back.
"""

from __future__ import annotations

import numpy as np
from skimage import draw, segmentation, transform

from src_models import Clicks

from .image import to_rgb01


class RandomWalkerMethod:
    name = "random-walker"

    def __init__(self, beta: float = 130.0, max_side: int = 256, radius: int = 5) -> None:
        self.beta, self.max_side, self.radius = beta, max_side, radius
        self._small: np.ndarray | None = None
        self._shape: tuple[int, int] = (0, 0)

    def set_image(self, image: object) -> None:
        rgb = to_rgb01(image)
        self._shape = rgb.shape[:2]
        scale = min(1.0, self.max_side / max(self._shape))
        self._scale = scale
        self._small = transform.rescale(rgb, scale, channel_axis=-1, anti_aliasing=True) if scale < 1 else rgb

    def reset_object(self) -> None:
        pass

    def predict(self, clicks: Clicks, prev_mask: np.ndarray | None = None) -> np.ndarray:
        assert self._small is not None, "call set_image first"
        h, w = self._small.shape[:2]
        labels = np.zeros((h, w), np.int32)
        if not clicks.negatives:
            labels[0, :] = labels[-1, :] = labels[:, 0] = labels[:, -1] = 2
        r = max(1, round(self.radius * self._scale))
        for c in clicks:
            rr, cc = draw.disk((c.y * self._scale, c.x * self._scale), r + 0.5, shape=(h, w))
            labels[rr, cc] = 1 if c.positive else 2
        if not (labels == 1).any():
            return np.zeros(self._shape, np.float32)
        prob = segmentation.random_walker(self._small, labels, beta=self.beta, mode="cg_j", tol=1e-3,
                                          channel_axis=-1, return_full_prob=True)[0]
        if prob.shape != self._shape:
            prob = transform.resize(prob, self._shape, order=1, anti_aliasing=False)
        return prob.astype(np.float32)
