"""Issue 16.9 (training side): TrainConfig values that cannot train are refused up front.

``check_train_config`` is called from ``TrainConfig.__post_init__`` (trainer.py); the last test
runs once that call is in place."""

import dataclasses

import pytest

from napari_icmformer.training.config_checks import check_train_config
from napari_icmformer.training.trainer import TrainConfig

_BAD = [
    ("iterations", 0), ("iterations", "100"), ("batch_size", 0), ("save_every", 0), ("save_every", -5),
    ("lr", 0.0), ("lr", float("nan")), ("warmup", -1), ("img_size", 0), ("max_iter_clicks", -1),
    ("copy_paste", 1.5), ("val_every", 0), ("val_objects", 0), ("val_max_clicks", 0), ("threads", -1),
    ("limit_per_dataset", 0), ("datasets", []), ("datasets", "DSB2018"), ("val_dataset", ["auto", 3]),
    ("seed", -1), ("amp", "yes"), ("model_overrides", [1]), ("iterations", True),
]


def _replaced(name, value):
    cfg = TrainConfig()
    object.__setattr__(cfg, name, value)  # bypass __post_init__: check the function itself
    return cfg


def test_defaults_and_test_recipes_pass():
    check_train_config(TrainConfig())
    check_train_config(dataclasses.replace(TrainConfig(), iterations=2, batch_size=2, save_every=1, warmup=1,
                                           lr=1e-3, img_size=96, val_dataset=["a", "b"], val_every=1))


@pytest.mark.parametrize("name, value", _BAD)
def test_values_that_cannot_train_are_refused(name, value):
    with pytest.raises(ValueError, match=name):
        check_train_config(_replaced(name, value))


@pytest.mark.skipif(not hasattr(TrainConfig, "__post_init__"), reason="TrainConfig.__post_init__ not wired yet")
@pytest.mark.parametrize("name, value", [("iterations", 0), ("batch_size", 0), ("save_every", 0)])
def test_train_config_refuses_them_when_made(name, value):
    with pytest.raises(ValueError, match=name):
        TrainConfig(**{name: value})
