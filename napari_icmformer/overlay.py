"""Overlay rendering for previews: the mask tinted over the image, clicks as dots."""

from __future__ import annotations

import numpy as np
from skimage import draw, segmentation

from src_models import Clicks


def render_overlay(rgb01: np.ndarray, mask: np.ndarray, clicks: Clicks, alpha: float = 0.45) -> np.ndarray:
    """uint8 RGB: mask in blue with a yellow outline, positive clicks green, negative red."""
    out = rgb01.copy()
    tint = np.array([0.15, 0.45, 1.0], np.float32)
    out[mask] = (1 - alpha) * out[mask] + alpha * tint
    out[segmentation.find_boundaries(mask, mode="inner")] = (1.0, 0.9, 0.1)
    radius = max(3, round(min(mask.shape) / 100))
    for c in clicks:
        colour = (0.1, 0.9, 0.2) if c.positive else (0.95, 0.15, 0.15)
        rr, cc = draw.disk((c.y, c.x), radius + 1, shape=mask.shape)
        out[rr, cc] = (1, 1, 1)
        rr, cc = draw.disk((c.y, c.x), radius, shape=mask.shape)
        out[rr, cc] = colour
    return (np.clip(out, 0, 1) * 255).round().astype(np.uint8)
