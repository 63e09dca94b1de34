"""Turn the images users have into the RGB float input the network expects, or say why not."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def to_rgb01(image: object) -> np.ndarray:
    """(H, W, 3) float32 in [0, 1] from a 2-D grayscale, RGB or RGBA image of any numeric dtype.

    * uint8 is divided by 255; bool maps to 0/1;
    * other integer types (16-bit microscopy, …) and floats outside [0, 1] are contrast-stretched
      to their 0.5–99.5 percentile range, since their nominal range (0–65535) is rarely used;
    * grayscale (H, W) or (H, W, 1) is repeated to 3 channels; RGBA drops alpha;
      channels-first RGB (3, H, W) is accepted. Colour with alpha is channel-last only, as napari
      reads it: a leading axis of 4 is a stack of 4 slices (one per z or t), not RGBA.
    Raises ``ValueError`` for empty arrays, 3-D volumes, more dimensions, NaN/inf, other dtypes.
    """
    arr = np.asarray(image)
    if arr.dtype == object or np.iscomplexobj(arr) or not (
        np.issubdtype(arr.dtype, np.number) or arr.dtype == bool
    ):
        raise ValueError(f"image dtype {arr.dtype} is not supported; give a numeric array")
    if arr.size == 0:
        raise ValueError(f"image is empty (shape {arr.shape})")
    if arr.ndim == 3 and arr.shape[-1] not in (1, 3, 4) and arr.shape[0] == 3 and min(arr.shape[1:]) > 4:
        arr = np.moveaxis(arr, 0, -1)  # channels-first RGB
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[-1] not in (1, 3, 4):
        rgba = " (a leading axis of 4 is 4 slices, not RGBA: give RGBA as (H, W, 4))" if (
            arr.ndim == 3 and arr.shape[0] == 4) else ""
        raise ValueError(
            f"expected a 2-D image (H, W), (H, W, 3) or (H, W, 4); got shape {arr.shape}{rgba}. "
            "For a 3-D stack or a time series pass one 2-D slice (the plugin does this per slice)."
        )
    if min(arr.shape[:2]) < 2:
        raise ValueError(f"image of shape {arr.shape[:2]} is too small to segment")
    if arr.shape[-1] == 4:
        arr = arr[..., :3]
    if arr.dtype == bool:
        out = arr.astype(np.float32)
    elif arr.dtype == np.uint8:
        out = arr.astype(np.float32) / 255.0
    else:
        if not np.isfinite(arr).all():
            raise ValueError("image contains NaN or infinite values")
        if np.issubdtype(arr.dtype, np.floating) and np.abs(arr).max() > np.finfo(np.float32).max:
            raise ValueError("image values exceed the float32 range (about 3.4e38): rescale the image first")
        out = arr.astype(np.float32)
        is_unit_float = np.issubdtype(arr.dtype, np.floating) and out.min() >= 0 and out.max() <= 1
        if not is_unit_float:
            lo, hi = np.percentile(out, (0.5, 99.5))
            if hi <= lo:
                lo, hi = float(out.min()), float(out.max())
            out = (out - lo) / (hi - lo) if hi > lo else np.zeros_like(out)
            out = np.clip(out, 0, 1)
    if out.shape[-1] == 1:
        out = np.repeat(out, 3, axis=-1)
    return np.ascontiguousarray(out, dtype=np.float32)


def read_image_file(path: str | Path) -> np.ndarray:
    """An image file as stored, the way napari opens it: a multi-page TIFF stays a stack of pages.

    ``skimage.io.imread`` swaps a leading axis of 3 or 4 to the end, so a 4-page grayscale TIFF
    would come back as one RGBA picture; TIFFs are read with ``tifffile`` instead, and only
    planar colour (the file's samples axis before Y, X) is moved channel-last. Raises ``OSError``
    or the reader's error for a file that cannot be read.
    """
    path = Path(path)
    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile  # noqa: PLC0415 - only for TIFFs

        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            arr = series.asarray()
            axes = series.axes
        if len(axes) >= 3 and axes[-3:] == "SYX":
            arr = np.moveaxis(arr, -3, -1)
        return arr
    from skimage import io  # noqa: PLC0415

    return io.imread(path)
