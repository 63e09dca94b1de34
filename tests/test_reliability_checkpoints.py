"""Issue 16.8 / 16.7 / 16.14: a checkpoint's config is not trusted before its shapes are checked,
every bad file is a CheckpointError that says what the file is."""

import json

import numpy as np
import pytest
import torch

import napari_icmformer.checkpoints as ckpt
from napari_icmformer.checkpoints import CheckpointError, load_model, save_checkpoint
from src_models import ModelConfig
from tests.conftest import tiny_model


@pytest.fixture
def no_big_builds(monkeypatch):
    """Fail (instead of allocating GBs) if a large network is built for real."""
    real = ckpt.build_model

    def guarded(cfg):
        if torch.get_default_device().type != "meta" and cfg.embed_dim * cfg.depth > 100_000:
            raise AssertionError(f"built a {cfg.embed_dim}x{cfg.depth} network before checking shapes")
        return real(cfg)

    monkeypatch.setattr(ckpt, "build_model", guarded)


def test_small_file_cannot_ask_for_a_huge_model(tmp_path, no_big_builds):
    small = tiny_model()
    big = small.cfg.replace(embed_dim=4096, num_heads=16, depth=48, split_depth=24, img_size=896)
    path = tmp_path / "greedy.pt"
    torch.save({"format": "napari-icmformer", "config": big.to_dict(), "state_dict": small.state_dict()}, path)
    assert path.stat().st_size < 50_000_000
    with pytest.raises(CheckpointError, match="does not match"):
        load_model(path)


@pytest.mark.parametrize("bad, match", [
    ({"embed_dim": 50, "num_heads": 3}, "multiple of num_heads"),
    ({"depth": "twelve"}, "depth"),
    ({"depth": 0}, "depth"),
    ({"img_size": 10**9}, "img_size"),
    ({"neck_dims": [16, 16]}, "neck_dims"),
    ({"arch": "resnet"}, "arch"),
    ({"split_depth": 9}, "split_depth"),
    ({"mlp_ratio": float("nan")}, "mlp_ratio"),
    ({"no_such_field": 1}, "unknown model config keys"),
])
def test_bad_configs_are_checkpoint_errors(tmp_path, bad, match):
    small = tiny_model()
    path = tmp_path / "bad.pt"
    torch.save({"format": "napari-icmformer", "config": {**small.cfg.to_dict(), **bad},
                "state_dict": small.state_dict()}, path)
    with pytest.raises(CheckpointError, match=match):
        load_model(path)


def test_config_that_is_not_a_mapping(tmp_path):
    small = tiny_model()
    torch.save({"format": "napari-icmformer", "config": "embed_dim=48", "state_dict": small.state_dict()},
               tmp_path / "s.pt")
    with pytest.raises(CheckpointError, match="not a mapping"):
        load_model(tmp_path / "s.pt")


def test_safetensors_with_broken_config_metadata(tmp_path):
    from safetensors.torch import save_file  # noqa: PLC0415

    state = {k: v.contiguous() for k, v in tiny_model().state_dict().items()}
    save_file(state, str(tmp_path / "m.safetensors"), metadata={"format": "napari-icmformer", "config": "{not json"})
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_model(tmp_path / "m.safetensors")


def test_model_config_checks_its_fields():
    with pytest.raises(ValueError, match="num_heads"):
        ModelConfig(embed_dim=50, num_heads=3)
    with pytest.raises(ValueError, match="global_blocks"):
        ModelConfig(global_blocks=("a",))
    assert ModelConfig(neck_dims=[1, 2, 3, 4]).neck_dims == (1, 2, 3, 4)  # lists become tuples


def test_nan_weights_are_refused(tmp_path):
    model = tiny_model()
    with torch.no_grad():
        model.head.conv_seg.weight[0, 0] = float("nan")
    path = save_checkpoint(tmp_path / "nan.pt", model)
    with pytest.raises(CheckpointError, match="NaN"):
        load_model(path)


def test_random_bytes_are_not_called_pickled_objects(tmp_path):
    path = tmp_path / "random.pt"
    rng = np.random.default_rng(0)
    for first in (None, 0x80):  # also bytes that begin like a pickle (0x80) but are not one
        data = rng.integers(0, 256, 4096, dtype=np.uint8).tobytes()
        if first is not None:
            data = bytes([first, 0x99]) + data[2:]
        path.write_bytes(data)
        with pytest.raises(CheckpointError) as info:
            load_model(path)
        assert "pickled" not in str(info.value) and "not a checkpoint" in str(info.value)
    plain = tmp_path / "plain.pt"
    import pickle  # noqa: PLC0415

    plain.write_bytes(pickle.dumps({"a": [1, 2]}, protocol=4))
    with pytest.raises(CheckpointError, match="plain pickle"):
        load_model(plain)


def test_empty_file_has_a_reason(tmp_path):
    for name in ("empty.pt", "empty.safetensors"):
        (tmp_path / name).write_bytes(b"")
        with pytest.raises(CheckpointError, match=r"empty \(0 bytes\)"):
            load_model(tmp_path / name)


def test_messages_are_one_line(tmp_path):
    path = save_checkpoint(tmp_path / "t.pt", tiny_model())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(CheckpointError, match="truncated or corrupt") as info:
        load_model(path)
    assert "\n" not in str(info.value) and len(str(info.value)) < 400
    json.dumps(str(info.value))
