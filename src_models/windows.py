"""Window partitioning for the ViTDet-style windowed attention of the official model."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def window_partition(x: torch.Tensor, window: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """(B, H, W, C) -> (B * nW, window * window, C), zero-padding H and W up to the window."""
    b, h, w, c = x.shape
    pad_h = (window - h % window) % window
    pad_w = (window - w % window) % window
    if pad_h or pad_w:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    hp, wp = h + pad_h, w + pad_w
    x = x.view(b, hp // window, window, wp // window, window, c)
    windows = x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window * window, c)
    return windows, (hp, wp)


def window_unpartition(
    windows: torch.Tensor, window: int, padded: tuple[int, int], size: tuple[int, int]
) -> torch.Tensor:
    """Inverse of :func:`window_partition`, cropping the padding away."""
    hp, wp = padded
    h, w = size
    c = windows.shape[-1]
    b = windows.shape[0] // ((hp // window) * (wp // window))
    x = windows.view(b, hp // window, wp // window, window, window, c)
    x = x.permute(0, 1, 3, 2, 4, 5).reshape(b, hp, wp, c)
    return x[:, :h, :w, :].contiguous()


def to_tokens(x: torch.Tensor, window: int | None) -> tuple[torch.Tensor, tuple[int, int] | None]:
    """(B, H, W, C) -> token sequences: windows when ``window`` is set, else one global sequence."""
    if window:
        return window_partition(x, window)
    b, h, w, c = x.shape
    return x.reshape(b, h * w, c), None


def from_tokens(
    tokens: torch.Tensor, window: int | None, padded: tuple[int, int] | None, size: tuple[int, int]
) -> torch.Tensor:
    if window:
        assert padded is not None
        return window_unpartition(tokens, window, padded, size)
    h, w = size
    return tokens.reshape(tokens.shape[0], h, w, tokens.shape[-1])
