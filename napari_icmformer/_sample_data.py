"""Sample images for napari's File > Open Sample menu (bundled with scikit-image, no download)."""

from __future__ import annotations

from skimage import data


def coins() -> list[tuple]:
    """Greek coins: many objects of one kind, the exemplar workflow's typical case."""
    return [(data.coins(), {"name": "coins"}, "image")]


def astronaut() -> list[tuple]:
    """A natural RGB photo with several distinct objects."""
    return [(data.astronaut(), {"name": "astronaut", "rgb": True}, "image")]
