import numpy as np
import pytest

from napari_icmformer.image import to_rgb01


def test_uint8_rgb_is_divided_by_255():
    img = np.zeros((8, 9, 3), np.uint8)
    img[0, 0] = (255, 128, 0)
    out = to_rgb01(img)
    assert out.shape == (8, 9, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out[0, 0], [1, 128 / 255, 0])


def test_grayscale_and_single_channel_become_rgb():
    g = (np.arange(64, dtype=np.uint8) * 4).reshape(8, 8)
    for img in (g, g[..., None]):
        out = to_rgb01(img)
        assert out.shape == (8, 8, 3)
        np.testing.assert_array_equal(out[..., 0], out[..., 2])
        np.testing.assert_allclose(out[..., 1], g / 255)


def test_rgba_drops_alpha():
    img = np.zeros((4, 4, 4), np.uint8)
    img[..., 3] = 255
    img[..., 0] = 51
    out = to_rgb01(img)
    assert out.shape == (4, 4, 3)
    np.testing.assert_allclose(out[..., 0], 0.2)


def test_16bit_is_contrast_stretched():
    img = np.full((20, 20), 1000, np.uint16)
    img[5:10, 5:10] = 3000  # uses a small part of the 16-bit range, as microscopy does
    out = to_rgb01(img)
    assert out.min() == 0 and out.max() == pytest.approx(1)
    assert out[7, 7, 0] > 0.99 and out[0, 0, 0] < 0.01


def test_float_images():
    unit = np.random.default_rng(0).random((6, 6, 3)).astype(np.float32)
    np.testing.assert_allclose(to_rgb01(unit), unit)  # already in [0, 1]: unchanged
    wide = unit * 500 - 100
    out = to_rgb01(wide)
    assert 0 <= out.min() and out.max() <= 1


def test_channels_first_rgb():
    img = np.zeros((3, 10, 12), np.uint8)
    img[1] = 255
    out = to_rgb01(img)
    assert out.shape == (10, 12, 3) and out[..., 1].min() == 1


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.zeros((0, 5)), "empty"),
        (np.zeros((5, 32, 32), np.uint16), "3-D stack"),
        (np.zeros((2, 5, 32, 32)), "expected a 2-D image"),
        (np.array([[1.0, np.nan], [0.0, 1.0]]), "NaN"),
        (np.array([["a", "b"]]), "dtype"),
        (np.zeros((1, 40)), "too small"),
    ],
)
def test_bad_images_raise_clear_errors(bad, match):
    with pytest.raises(ValueError, match=match):
        to_rgb01(bad)
