"""Issue 16.7 / 16.14: a prev_mask that is not a probability map is read right or refused, and
the recall engine says what is missing first."""

import numpy as np
import pytest

from napari_icmformer.engine import Predictor, PredictorConfig
from napari_icmformer.exemplar import ExemplarPredictor, RecallConfig
from napari_icmformer.runtime import check_prev_mask
from src_models import Clicks
from tests.conftest import tiny_model
from tests.test_icmformer_pp import tiny_pp


@pytest.fixture
def predictor():
    p = Predictor(tiny_model(), PredictorConfig(device="cpu"))
    p.set_image(np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8))
    return p


def _object():
    m = np.zeros((40, 50), bool)
    m[10:25, 15:35] = True
    return m


def test_nan_prev_mask_is_refused_not_spread(predictor):
    prev = _object().astype(np.float32)
    prev[3, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        predictor.predict(Clicks().add(15, 20), prev)
    with pytest.raises(ValueError, match="NaN"):
        predictor.predict(Clicks().add(15, 20), np.full((40, 50), np.inf, np.float32))


def test_a_0_255_mask_is_read_as_the_binary_mask_it_is(predictor):
    clicks = Clicks().add(15, 20)
    as_bool = predictor.predict(clicks, _object())
    as_uint8 = predictor.predict(clicks, _object().astype(np.uint8) * 255)
    np.testing.assert_allclose(as_uint8, as_bool)
    assert np.isfinite(as_uint8).all()
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        predictor.predict(clicks, _object().astype(np.float32) * 255)  # 0/255 as floats: ambiguous, refused
    with pytest.raises(ValueError, match="binary"):
        predictor.predict(clicks, np.arange(40 * 50).reshape(40, 50) % 7)


def test_check_prev_mask_rules():
    assert check_prev_mask(None, (2, 2)) is None
    np.testing.assert_array_equal(check_prev_mask(np.array([[0, 255], [255, 0]], np.uint8), (2, 2)),
                                  [[0, 1], [1, 0]])
    with pytest.raises(ValueError, match="shape"):
        check_prev_mask(np.zeros((3, 2)), (2, 2))
    with pytest.raises(ValueError, match="dtype"):
        check_prev_mask(np.array([["a", "b"], ["c", "d"]]), (2, 2))


def test_recall_before_set_image_says_set_image():
    recaller = ExemplarPredictor(tiny_pp(), RecallConfig(device="cpu"))
    with pytest.raises(RuntimeError, match="set_image"):
        recaller.recall(Clicks())


def test_recall_refuses_a_nan_prev_mask():
    recaller = ExemplarPredictor(tiny_pp(), RecallConfig(device="cpu"))
    recaller.set_image(np.zeros((64, 64, 3), np.uint8))
    exemplar = np.zeros((64, 64), bool)
    exemplar[10:20, 10:20] = True
    recaller.set_exemplar(exemplar)
    with pytest.raises(ValueError, match="NaN"):
        recaller.recall(Clicks(), np.full((64, 64), np.nan, np.float32))
