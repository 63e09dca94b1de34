import numpy as np
import pytest

from napari_icmformer.engine import Predictor, PredictorConfig, box_iou, object_roi
from napari_icmformer.runtime import resolve_device
from src_models import Clicks
from tests.conftest import tiny_model


@pytest.fixture
def predictor():
    return Predictor(tiny_model(), PredictorConfig(device="cpu"))


def test_cached_equals_uncached_through_the_engine(predictor):
    rng = np.random.default_rng(0)
    predictor.set_image((rng.random((150, 210, 3)) * 255).astype(np.uint8))
    clicks = Clicks().add(70, 100).add(20, 30, False)
    cached = predictor.predict(clicks)
    uncached = predictor.predict(clicks, use_cache=False)
    assert cached.shape == (150, 210)
    assert np.abs(cached - uncached).max() <= 1e-5
    # with a previous mask and zoom-in the crop path must agree too
    prev = np.zeros((150, 210), np.float32)
    prev[50:90, 80:130] = 0.9
    a = predictor.predict(clicks, prev)
    b = predictor.predict(clicks, prev, use_cache=False)
    assert np.abs(a - b).max() <= 1e-5


def test_image_features_are_computed_once_per_view(predictor):
    predictor.set_image(np.zeros((100, 100), np.uint8))
    clicks = Clicks().add(50, 50)
    for _ in range(3):
        predictor.predict(clicks)
    assert predictor.stats == {"encodes": 1, "decodes": 3}
    predictor.set_image(np.ones((100, 100), np.uint8))
    predictor.predict(clicks)
    assert predictor.stats["encodes"] == 2  # a new image invalidates the cache


def test_flip_tta_runs_and_stays_a_probability():
    p = Predictor(tiny_model(), PredictorConfig(device="cpu", flip=True))
    p.set_image(np.random.default_rng(1).random((96, 96, 3)))
    prob = p.predict(Clicks().add(40, 40))
    assert prob.shape == (96, 96) and 0 <= prob.min() and prob.max() <= 1
    assert p.stats["encodes"] == 2  # the flipped view has its own cached features


def test_object_roi_geometry():
    mask = np.zeros((1000, 800), bool)
    mask[400:500, 300:420] = True  # 100 x 120 object
    roi = object_roi(mask, Clicks().add(450, 350), expansion=1.4, min_size=200)
    y0, x0, y1, x1 = roi
    assert (y1 - y0, x1 - x0) == (200, 200)  # 140 x 168 raised to the 200 px minimum
    assert (y0 + y1) / 2 == pytest.approx(450, abs=1) and (x0 + x1) / 2 == pytest.approx(360, abs=1)
    big = np.zeros((1000, 800), bool)
    big[100:600, 100:500] = True
    y0, x0, y1, x1 = object_roi(big, Clicks(), expansion=1.4, min_size=200)
    assert (y1 - y0, x1 - x0) == (700, 560)  # 500 x 400 expanded x1.4 about the centre
    corner = np.zeros((300, 300), bool)
    corner[:20, :20] = True
    assert object_roi(corner, Clicks(), 1.4, 200)[:2] == (0, 0)  # clipped to the image


def test_zoom_in_crop_and_paste_back():
    # a small object's crop is at least zoom_min_crop on a side
    predictor = Predictor(tiny_model(), PredictorConfig(device="cpu", zoom_min_crop=200))
    predictor.set_image(np.random.default_rng(2).random((600, 600, 3)))
    prev = np.zeros((600, 600), np.float32)
    prev[280:320, 280:320] = 1.0
    clicks = Clicks().add(300, 300)
    prob = predictor.predict(clicks, prev)
    roi = predictor._roi
    assert roi is not None and roi[2] - roi[0] == 200
    outside = np.ones_like(prob, bool)
    outside[roi[0]:roi[2], roi[1]:roi[3]] = False
    assert prob[outside].max() == 0  # nothing is pasted outside the zoom window
    # a click inside the window and a similar object keeps the window (features reused)
    encodes = predictor.stats["encodes"]
    predictor.predict(clicks.add(310, 305), prev)
    assert predictor._roi == roi and predictor.stats["encodes"] == encodes
    # a click outside the window moves it
    predictor.predict(clicks.add(300, 590), prev)
    assert predictor._roi != roi
    assert box_iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0


def test_zoom_in_off_uses_whole_image():
    p = Predictor(tiny_model(), PredictorConfig(device="cpu", zoom_in=False))
    p.set_image(np.zeros((300, 300, 3)))
    prev = np.zeros((300, 300), np.float32)
    prev[100:120, 100:120] = 1
    p.predict(Clicks().add(110, 110), prev)
    assert p._roi is None


def test_click_mapping_puts_the_disk_where_the_click_is(predictor):
    """The click's disk at network resolution must sit at the click's place in the view."""
    import torch  # noqa: PLC0415

    from src_models import coord_maps  # noqa: PLC0415
    from src_models.clicks import clicks_to_tensor  # noqa: PLC0415

    predictor.set_image(np.zeros((300, 150), np.uint8))
    click = Clicks().add(150, 75)
    s = predictor.size
    view = click.map(s / 300, s / 150, 0 - 0.5 + 0.5 * 300 / s, 0 - 0.5 + 0.5 * 150 / s)
    maps = coord_maps(clicks_to_tensor(view), torch.zeros(1, 1, s, s), (s, s))
    ys, xs = np.nonzero(maps[0, 1].numpy())
    assert abs(ys.mean() - (s - 1) / 2) <= 0.5 and abs(xs.mean() - (s - 1) / 2) <= 0.5


def test_no_clicks_gives_empty_map(predictor):
    predictor.set_image(np.zeros((50, 60)))
    assert predictor.predict(Clicks()).max() == 0


@pytest.mark.parametrize("y, x", [(-3, 5), (5, 60), (50, 5), (np.nan, 3)])
def test_clicks_outside_the_image_raise(predictor, y, x):
    predictor.set_image(np.zeros((50, 60)))
    with pytest.raises(ValueError, match="outside the image|non-finite"):
        predictor.predict(Clicks().add(y, x))


def test_predict_without_image_and_bad_prev_mask(predictor):
    with pytest.raises(RuntimeError, match="set_image"):
        predictor.predict(Clicks().add(1, 1))
    predictor.set_image(np.zeros((50, 60)))
    with pytest.raises(ValueError, match="prev_mask shape"):
        predictor.predict(Clicks().add(1, 1), np.zeros((60, 50)))


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((64, 80), np.uint8),  # grayscale
        np.zeros((64, 80, 4), np.uint8),  # RGBA
        (np.arange(64 * 80).reshape(64, 80) * 7).astype(np.uint16),  # 16-bit
        np.random.default_rng(0).normal(size=(64, 80)).astype(np.float32),  # float
    ],
)
def test_user_image_types(predictor, image):
    predictor.set_image(image)
    assert predictor.predict(Clicks().add(30, 40)).shape == (64, 80)


def test_volume_is_rejected(predictor):
    with pytest.raises(ValueError, match="3-D stack"):
        predictor.set_image(np.zeros((10, 64, 64), np.uint16))


def test_device_choice():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("tpu")
    with pytest.raises(ValueError, match="fp32 on the CPU"):
        Predictor(tiny_model(), PredictorConfig(device="cpu", precision="fp16"))


def test_large_image_predicts_in_a_window_around_the_clicks():
    pred = Predictor(tiny_model(), PredictorConfig(device="cpu", max_view=256))
    image = np.zeros((1500, 2000), np.uint8)
    pred.set_image(image)
    clicks = Clicks().add(700, 1200)
    prob = pred.predict(clicks)
    y0, x0, y1, x1 = pred._roi
    assert (y1 - y0, x1 - x0) == (256, 256) and y0 <= 700 < y1 and x0 <= 1200 < x1
    outside = np.ones(prob.shape, bool)
    outside[y0:y1, x0:x1] = False
    assert not prob[outside].any()  # nothing predicted far from the clicks
    # a second click inside the window reuses its cached features
    pred.config.zoom_in = False
    pred.predict(clicks.add(720, 1210))
    assert pred.stats["encodes"] == 1
    # a click far away moves the window
    pred.predict(clicks.add(100, 100))
    assert pred.stats["encodes"] == 2


def test_small_images_are_never_windowed():
    pred = Predictor(tiny_model(), PredictorConfig(device="cpu", max_view=256, zoom_in=False))
    pred.set_image(np.zeros((200, 250), np.uint8))
    pred.predict(Clicks().add(10, 10))
    assert pred._roi is None


def test_keyed_images_keep_their_features(predictor):
    rng = np.random.default_rng(1)
    stack = (rng.random((3, 64, 80)) * 255).astype(np.uint8)
    clicks = Clicks().add(30, 40)
    first = []
    for z in range(3):
        predictor.set_image(stack[z], key=("stack", z))
        first.append(predictor.predict(clicks))
    assert predictor.stats["encodes"] == 3
    for z in (0, 2, 1):  # back to earlier slices: no new embedding, same output
        predictor.set_image(stack[z], key=("stack", z))
        np.testing.assert_array_equal(predictor.predict(clicks), first[z])
    assert predictor.stats["encodes"] == 3
    assert not np.array_equal(first[0], first[1])


def _fake_network(predictor, radius: float, calls: list):
    """The network replaced by a disk of ``radius`` image px around the first click, in any view."""
    def network(box, clicks, prev_mask, use_cache):
        calls.append((box, prev_mask is not None))
        y0, x0, y1, x1 = box
        yy, xx = np.mgrid[y0:y1, x0:x1]
        c = clicks[0]
        return (((yy - c.y) ** 2 + (xx - c.x) ** 2) <= radius ** 2).astype(np.float32)
    predictor._network = network


@pytest.mark.parametrize("radius, refocused", [(6, True), (120, False)])
def test_a_small_object_seen_whole_is_predicted_again_in_its_crop(radius, refocused):
    """A nucleus in a whole 500 px view is a few network pixels wide: the first click looks
    again in a crop around the first prediction, a large object keeps the whole view."""
    p = Predictor(tiny_model(), PredictorConfig(device="cpu", refine="none", zoom_refocus=0.5, zoom_min_crop=64))
    p.set_image(np.zeros((500, 500, 3), np.uint8))
    calls: list = []
    _fake_network(p, radius, calls)
    prob = p.predict(Clicks().add(250, 250))
    assert calls[0] == ((0, 0, 500, 500), False)
    if not refocused:
        assert len(calls) == 1 and p._roi is None
        return
    assert len(calls) == 2
    (y0, x0, y1, x1), with_prev = calls[1]
    assert not with_prev  # the crop starts afresh, as a first click
    assert (y1 - y0, x1 - x0) == (64, 64) and y0 <= 244 and y1 >= 256  # min crop around the blob
    assert p._roi == (y0, x0, y1, x1)  # the next click zooms from here
    outside = np.ones_like(prob, bool)
    outside[y0:y1, x0:x1] = False
    assert prob[outside].max() == 0 and prob[250, 250] == 1
    # a second click with the previous mask zooms in as before: no refocus
    calls.clear()
    p.predict(Clicks().add(250, 250).add(240, 240, False), prob)
    assert len(calls) == 1


def test_refocus_off_by_zero():
    p = Predictor(tiny_model(), PredictorConfig(device="cpu", refine="none", zoom_refocus=0.0))
    p.set_image(np.zeros((500, 500, 3), np.uint8))
    calls: list = []
    _fake_network(p, 6, calls)
    p.predict(Clicks().add(250, 250))
    assert len(calls) == 1


@pytest.mark.parametrize("bad", [dict(zoom_refocus=-0.1), dict(zoom_refocus=float("nan")),
                                 dict(zoom_refocus_expansion=0.5), dict(zoom_expansion="2")])
def test_bad_zoom_settings_are_refused(bad):
    with pytest.raises(ValueError, match="PredictorConfig.zoom"):
        PredictorConfig(**bad)


def _focus_predictor(**cfg):
    """A predictor whose network says "object" on a 200 px square in its normal views and a
    constant 0.9 in focus crops (uncached calls), so the test sees where each lands."""
    p = Predictor(tiny_model(), PredictorConfig(device="cpu", refine="none", zoom_refocus=0.0, focus=True, **cfg))
    p.set_image(np.zeros((400, 400, 3), np.uint8))
    calls: list = []

    def network(box, clicks, prev_mask, use_cache):
        calls.append((box, use_cache, None if prev_mask is None else prev_mask.copy()))
        y0, x0, y1, x1 = box
        if not use_cache:
            return np.full((y1 - y0, x1 - x0), 0.9, np.float32)
        yy, xx = np.mgrid[y0:y1, x0:x1]
        return ((abs(yy - 200) < 100) & (abs(xx - 200) < 100)).astype(np.float32)

    p._network = network
    return p, calls


def test_a_correction_is_looked_at_again_in_a_focus_crop_around_what_it_changed():
    p, calls = _focus_predictor(focus_min_crop=64, focus_feather=0.3, focus_max_share=0.9)
    first = p.predict(Clicks().add(200, 200))
    assert len(calls) == 1 and p.stats.get("focus", 0) == 0  # a first click has nothing to correct
    # the previous mask missed the square's bottom-right quarter: the click there changes it
    prev = first.copy()
    prev[200:, 200:] = 0
    calls.clear()
    clicks = Clicks().add(200, 200).add(250, 250)
    out = p.predict(clicks, prev)
    assert len(calls) == 2 and calls[1][1] is False  # focus crops are never cached
    (y0, x0, y1, x1), _, fed = calls[1]
    assert y0 <= 250 < y1 and x0 <= 250 < x1
    # the click's changed part (the quarter 200..300) expanded ×1.75 about its centre, clipped
    assert (y0, x0) == (162, 162) and (y1, x1) == (338, 338)
    np.testing.assert_array_equal(fed[:, :], first)  # the current probability is its prev mask
    assert out[250, 250] == pytest.approx(0.9)  # the crop's centre is the focus network's
    np.testing.assert_array_equal(out[:y0], first[:y0])  # outside the crop nothing moves
    np.testing.assert_array_equal(out[:, x1:], first[:, x1:])
    row = out[250, x0:250]  # towards the crop's edge the view's own probability returns
    assert row[0] > 0.9 and abs(row[0] - 1.0) < 0.1 and np.all(np.abs(row[-20:] - 0.9) < 1e-6)
    assert p.stats["focus"] == 1


def test_focus_is_skipped_when_its_crop_would_be_the_view_again():
    p, calls = _focus_predictor(focus_min_crop=64, focus_max_share=0.2)
    first = p.predict(Clicks().add(200, 200))
    prev = first.copy()
    prev[200:, 200:] = 0
    calls.clear()
    p.predict(Clicks().add(200, 200).add(250, 250), prev)
    assert len(calls) == 1


def test_focus_off_calls_the_network_once_per_click():
    p, calls = _focus_predictor()
    p.config.focus = False
    first = p.predict(Clicks().add(200, 200))
    prev = first.copy()
    prev[200:, 200:] = 0
    p.predict(Clicks().add(200, 200).add(250, 250), prev)
    assert len(calls) == 2 and all(c[1] for c in calls)


def test_a_focus_crop_on_the_image_border_is_not_feathered_there():
    p, calls = _focus_predictor(focus_min_crop=64, focus_feather=0.5, zoom_in=False)
    first = p.predict(Clicks().add(200, 200))
    prev = np.zeros_like(first)
    prev[150:250, 150:250] = 1
    calls.clear()
    # a positive click at the image's corner: the change is the square minus prev
    out = p.predict(Clicks().add(200, 200).add(2, 2), prev)
    (y0, x0, y1, x1), _, _ = calls[-1]
    assert (y0, x0) == (0, 0) and y1 <= 400 and x1 <= 400
    assert out[0, 0] == pytest.approx(0.9)  # full weight at the image's own edge


def test_focus_with_graphcut_keeps_every_click():
    p = Predictor(tiny_model(), PredictorConfig(device="cpu", focus=True, focus_min_crop=32))
    rng = np.random.default_rng(0)
    image = (rng.random((120, 160, 3)) * 255).astype(np.uint8)
    p.set_image(image)
    clicks = Clicks().add(60, 80)
    prob = p.predict(clicks)
    clicks = clicks.add(30, 40, False).add(90, 120)
    for k in range(2, len(clicks) + 1):
        prob = p.predict(clicks[:k], prob)
    mask = prob > p.config.threshold
    assert mask[60, 80] and mask[90, 120] and not mask[30, 40]


@pytest.mark.parametrize("bad", [dict(focus_expansion=0.5), dict(focus_max_share=-1.0),
                                 dict(focus_feather=float("nan"))])
def test_bad_focus_settings_are_refused(bad):
    with pytest.raises(ValueError, match="PredictorConfig.focus"):
        PredictorConfig(**bad)
