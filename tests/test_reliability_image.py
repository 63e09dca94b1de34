"""Issue 16 (b): a 4-slice grayscale stack stays a stack. Colour with alpha is channel-last only,
as napari reads it, so the API never segments a different picture than the viewer shows."""

import numpy as np
import pytest
import tifffile

from napari_icmformer.cli.segment import main as segment_main
from napari_icmformer.image import to_rgb01


def _stack(n: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 4000, (n, 40, 50), dtype=np.uint16)


def test_four_slices_are_not_rgba():
    with pytest.raises(ValueError, match="4 slices, not RGBA") as info:
        to_rgb01(_stack(4))
    assert "pass one 2-D slice" in str(info.value)
    out = to_rgb01(_stack(4)[2])  # one slice is a grayscale image
    assert out.shape == (40, 50, 3)


def test_channel_last_rgba_and_channels_first_rgb_still_read():
    rgba = np.zeros((40, 50, 4), np.uint8)
    rgba[..., 1] = 255
    assert to_rgb01(rgba)[..., 1].min() == 1 and to_rgb01(rgba).shape == (40, 50, 3)
    rgb = np.zeros((3, 40, 50), np.uint8)
    rgb[2] = 255
    assert to_rgb01(rgb).shape == (40, 50, 3) and to_rgb01(rgb)[..., 2].min() == 1


@pytest.mark.parametrize("shape", [(4, 40, 50), (40, 50, 4), (40, 50, 3), (5, 40, 50), (4, 4, 50)])
def test_colour_agrees_with_napari(shape):
    """Where napari shows colour (its rgb guess), we read colour; where it shows a stack of
    slices, the whole array is refused (the plugin passes one slice)."""
    from napari.layers import Image  # noqa: PLC0415

    data = np.zeros(shape, np.uint8)
    if Image(data).rgb:
        assert to_rgb01(data).shape == (*shape[:2], 3)
    else:
        with pytest.raises(ValueError, match="slice"):
            to_rgb01(data)


def test_segment_cli_refuses_a_four_page_tif(tmp_path, capsys, tiny_checkpoint):
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, _stack(4), photometric="minisblack")
    rc = segment_main([str(path), "--click", "20,20", "--checkpoint", str(tiny_checkpoint),
                       "--out", str(tmp_path / "out"), "--device", "cpu"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.count("\n") == 0 and "not RGBA" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_tiff_pages_stay_pages_and_planar_colour_is_colour(tmp_path):
    """skimage.io.imread would swap the 4 pages to the end (RGBA); the file's own axes decide."""
    from napari_icmformer.image import read_image_file  # noqa: PLC0415

    pages = _stack(4)
    tifffile.imwrite(tmp_path / "pages.tif", pages, photometric="minisblack")
    np.testing.assert_array_equal(read_image_file(tmp_path / "pages.tif"), pages)
    planar = (_stack(4) // 16).astype(np.uint8)
    tifffile.imwrite(tmp_path / "rgba.tif", planar, photometric="rgb", planarconfig="separate",
                     extrasamples=["unassalpha"])
    np.testing.assert_array_equal(read_image_file(tmp_path / "rgba.tif"), np.moveaxis(planar, 0, -1))
    assert to_rgb01(read_image_file(tmp_path / "rgba.tif")).shape == (40, 50, 3)
