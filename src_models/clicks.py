"""Clicks as values, and their disk encoding (radius 5 at network resolution)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Click:
    """One user click in (row, column) pixel coordinates of the image it was made on."""

    y: float
    x: float
    positive: bool = True
    index: int = 0

    def scaled(self, sy: float, sx: float, dy: float = 0.0, dx: float = 0.0) -> "Click":
        """Coordinates after ``(p - d) * s``: a crop by (dy, dx), then a resize by (sy, sx)."""
        return Click((self.y - dy) * sy, (self.x - dx) * sx, self.positive, self.index)


def on_image(y: float, x: float, shape: tuple[int, int]) -> bool:
    """The one rule for "this click is on the image" (engine, annotator, widget): pixel centres
    are at integers, so an H x W image covers [-0.5, H - 0.5) x [-0.5, W - 0.5)."""
    h, w = shape
    return bool(np.isfinite(y) and np.isfinite(x) and -0.5 <= y < h - 0.5 and -0.5 <= x < w - 0.5)


class Clicks(Sequence[Click]):
    """An ordered, immutable-by-convention list of clicks; ``index`` is the click order."""

    def __init__(self, clicks: Iterable[Click] = ()) -> None:
        self._clicks: list[Click] = list(clicks)

    @classmethod
    def from_points(
        cls, positive: Iterable[Sequence[float]] = (), negative: Iterable[Sequence[float]] = ()
    ) -> "Clicks":
        out = cls()
        for y, x in positive:
            out = out.add(y, x, True)
        for y, x in negative:
            out = out.add(y, x, False)
        return out

    def add(self, y: float, x: float, positive: bool = True) -> "Clicks":
        """Return a new ``Clicks`` with one more click (the original is unchanged)."""
        return Clicks([*self._clicks, Click(float(y), float(x), bool(positive), len(self._clicks))])

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return Clicks(self._clicks[i])
        return self._clicks[i]

    def __len__(self) -> int:
        return len(self._clicks)

    def __iter__(self) -> Iterator[Click]:
        return iter(self._clicks)

    def __repr__(self) -> str:
        return f"Clicks({self._clicks!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Clicks) and self._clicks == other._clicks

    def __hash__(self) -> int:
        return hash(tuple(self._clicks))

    @property
    def positives(self) -> list[Click]:
        return [c for c in self._clicks if c.positive]

    @property
    def negatives(self) -> list[Click]:
        return [c for c in self._clicks if not c.positive]

    def map(self, sy: float, sx: float, dy: float = 0.0, dx: float = 0.0) -> "Clicks":
        return Clicks(c.scaled(sy, sx, dy, dx) for c in self._clicks)

    def flipped(self, width: int) -> "Clicks":
        """Clicks on the horizontally flipped image of the given width."""
        return Clicks(Click(c.y, width - 1 - c.x, c.positive, c.index) for c in self._clicks)

    def to_array(self) -> np.ndarray:
        """(N, 3) float array of (y, x, label) with label 1 = positive, 0 = negative."""
        if not self._clicks:
            return np.zeros((0, 3), np.float32)
        return np.array([(c.y, c.x, 1.0 if c.positive else 0.0) for c in self._clicks], np.float32)


def disk_maps(points: torch.Tensor, size: tuple[int, int], radius: float = 5) -> torch.Tensor:
    """Encode clicks as two binary disk maps (positive, negative).

    points: (B, N, 3) of (y, x, label), label 1 positive, 0 negative, -1 padding (ignored).
    Returns (B, 2, H, W) float32: 1 inside any disk of that sign.
    """
    b = points.shape[0]
    h, w = size
    out = torch.zeros(b, 2, h, w, device=points.device, dtype=torch.float32)
    if points.shape[1] == 0:
        return out
    ys = torch.arange(h, device=points.device, dtype=torch.float32).view(1, 1, h, 1)
    xs = torch.arange(w, device=points.device, dtype=torch.float32).view(1, 1, 1, w)
    py = points[..., 0].float().view(b, -1, 1, 1)
    px = points[..., 1].float().view(b, -1, 1, 1)
    label = points[..., 2].view(b, -1, 1, 1)
    inside = ((ys - py) ** 2 + (xs - px) ** 2) <= radius * radius  # (B, N, H, W)
    out[:, 0] = (inside & (label == 1)).any(dim=1).float()
    out[:, 1] = (inside & (label == 0)).any(dim=1).float()
    return out


def coord_maps(
    points: torch.Tensor, prev_mask: torch.Tensor | None, size: tuple[int, int], radius: float = 5
) -> torch.Tensor:
    """The network's 3 click channels: [previous mask, positive disks, negative disks]."""
    disks = disk_maps(points, size, radius)
    if prev_mask is None:
        prev_mask = torch.zeros(points.shape[0], 1, *size, device=points.device)
    if prev_mask.ndim == 3:
        prev_mask = prev_mask.unsqueeze(1)
    return torch.cat([prev_mask.to(disks.dtype), disks], dim=1)


def clicks_to_tensor(clicks: Clicks, device: torch.device | str = "cpu") -> torch.Tensor:
    """(1, N, 3) tensor for :func:`disk_maps`."""
    return torch.from_numpy(clicks.to_array()).unsqueeze(0).to(device)
