import pickle

import numpy as np
import pytest
import torch

from napari_icmformer.checkpoints import CheckpointError, load_model, save_checkpoint
from napari_icmformer.weights import default_checkpoint
from tests.conftest import tiny_model


def _same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("name", ["m.pt", "m.safetensors"])
def test_round_trip_rebuilds_the_architecture(tmp_path, name):
    model = tiny_model(seed=3)
    path = save_checkpoint(tmp_path / name, model, extra={"step": 7})
    loaded = load_model(path)
    assert loaded.cfg == model.cfg  # the config travels with the weights
    assert _same_weights(model, loaded)
    assert loaded.checkpoint_extra == {"step": 7}


def test_half_storage_loads_as_float32(tmp_path):
    model = tiny_model()
    path = save_checkpoint(tmp_path / "h.pt", model, half=True)
    loaded = load_model(path)
    w = loaded.state_dict()["backbone.blocks.0.attn.qkv.weight"]
    assert w.dtype == torch.float32
    torch.testing.assert_close(w, model.state_dict()["backbone.blocks.0.attn.qkv.weight"], atol=1e-3, rtol=1e-3)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_model(tmp_path / "nope.pt")


def test_truncated_file(tmp_path):
    path = save_checkpoint(tmp_path / "t.pt", tiny_model())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_model(path)


def test_garbage_file(tmp_path):
    path = tmp_path / "g.pt"
    path.write_bytes(b"this is not a checkpoint" * 10)
    with pytest.raises(CheckpointError, match="t.pt|g.pt"):
        load_model(path)
    bad_st = tmp_path / "g.safetensors"
    bad_st.write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match="corrupt"):
        load_model(bad_st)


class _Evil:
    def __reduce__(self):
        import pathlib  # noqa: PLC0415

        return (pathlib.Path.touch, (pathlib.Path(_Evil.target),))


def test_pickled_code_is_never_executed(tmp_path):
    _Evil.target = str(tmp_path / "pwned")
    path = tmp_path / "evil.pt"
    with open(path, "wb") as fh:
        torch.save({"state_dict": tiny_model().state_dict(), "payload": _Evil()}, fh)
    with pytest.raises(CheckpointError, match="pickled"):
        load_model(path)
    assert not (tmp_path / "pwned").exists()
    # a plain pickle file is refused as well
    plain = tmp_path / "plain.pt"
    plain.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(CheckpointError):
        load_model(plain)


def test_wrong_architecture(tmp_path):
    small = tiny_model()
    cfg = tiny_model(embed_dim=96).cfg  # claims a wider model than its tensors
    torch.save({"config": cfg.to_dict(), "state_dict": small.state_dict()}, tmp_path / "w.pt")
    with pytest.raises(CheckpointError, match="shape mismatches"):
        load_model(tmp_path / "w.pt")
    sd = small.state_dict()
    sd.pop("head.conv_seg.weight")
    torch.save({"config": small.cfg.to_dict(), "state_dict": sd}, tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match="missing keys"):
        load_model(tmp_path / "m.pt")
    torch.save({"state_dict": {"some.other.net": torch.zeros(2)}}, tmp_path / "o.pt")
    with pytest.raises(CheckpointError, match="not an iCMFormer checkpoint"):
        load_model(tmp_path / "o.pt")
    with pytest.raises(CheckpointError, match="expected icmformer_pp"):
        load_model(save_checkpoint(tmp_path / "s.pt", small), expect_arch="icmformer_pp")


def test_nested_wrappers_and_module_prefix(tmp_path):
    model = tiny_model(seed=5)
    sd = {f"module.{k}": v for k, v in model.state_dict().items()}
    torch.save({"model": {"state_dict": sd}, "config": model.cfg.to_dict()}, tmp_path / "n.pt")
    assert _same_weights(model, load_model(tmp_path / "n.pt"))


def test_default_checkpoint_loads_or_fails_clearly():
    try:
        path = default_checkpoint("sois")
    except CheckpointError as exc:
        assert "--checkpoint" in str(exc) and "Random weights are never used" in str(exc)
    else:
        model = load_model(path)
        assert model.cfg.arch == "icmformer"
        assert np.isfinite(sum(float(p.abs().sum()) for p in model.parameters()))


def test_files_with_the_legacy_empty_extra_config_field_still_load(tmp_path):
    """Files written before ``ModelConfig.extra`` went carry ``"extra": {}`` in their config (the
    shipped weights, running trainings' checkpoints): they load, and the payload layout is kept."""
    model = tiny_model(seed=2)
    path = save_checkpoint(tmp_path / "new.pt", model, extra={"step": 3})
    payload = torch.load(path, weights_only=True)
    assert set(payload) == {"format", "version", "config", "state_dict", "extra"}
    assert payload["format"] == "napari-icmformer" and payload["version"] == 1
    payload["config"]["extra"] = {}
    torch.save(payload, tmp_path / "old.pt")
    loaded = load_model(tmp_path / "old.pt")
    assert loaded.cfg == model.cfg and _same_weights(model, loaded) and loaded.checkpoint_extra == {"step": 3}
    payload["config"]["extra"] = [1]
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="extra must be a mapping"):
        load_model(tmp_path / "bad.pt")
