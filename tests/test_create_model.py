"""``src_models.create_model(name, checkpoint=None)``: the model package builds named networks and
reads its own checkpoint format without the plugin (timm / segment_anything style)."""

from __future__ import annotations

import pytest
import torch

from napari_icmformer.checkpoints import load_model, save_checkpoint
from napari_icmformer.weights import DEFAULTS
from src_models import CheckpointFormatError, ICMFormer, create_model, get_config, list_models
from src_models.icmformer_pp import ICMFormerPP, RecallImageFeatures
from tests.conftest import TINY, tiny_model


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_by_name_builds_the_named_config():
    model = create_model("vit_tiny", **TINY)
    assert isinstance(model, ICMFormer) and model.cfg == get_config("vit_tiny", **TINY)
    pp = create_model("icmformer_pp_vit_tiny", **TINY)
    assert isinstance(pp, ICMFormerPP) and pp.cfg.arch == "icmformer_pp"
    assert "icmformer_pp_vit_tiny" in list_models()


def test_unknown_name_is_a_clear_error():
    with pytest.raises(ValueError, match=r"unknown model 'vit_gigantic'.*icmformer_vit_base"):
        create_model("vit_gigantic")


@pytest.mark.parametrize("name", ["w.pt", "w.safetensors"])
def test_with_a_checkpoint_path_loads_its_weights(tmp_path, name):
    saved = tiny_model(seed=4)
    path = save_checkpoint(tmp_path / name, saved)
    model = create_model("vit_tiny", path, **TINY)
    assert _same_weights(model, saved) and not model.training
    assert _same_weights(model, create_model("vit_tiny", str(path), **TINY))  # str paths too


def test_with_an_official_layout_state_dict(tmp_path):
    """No config in the file: the named network, the official extras dropped, strict otherwise."""
    saved = tiny_model(seed=6)
    sd = dict(saved.state_dict())
    d = saved.cfg.embed_dim
    sd.update({"backbone.cls_token": torch.zeros(1, 1, d), "backbone.fc_norm.weight": torch.ones(d),
               "backbone.head.weight": torch.zeros(1000, d), "backbone.head.bias": torch.zeros(1000)})
    torch.save({"state_dict": {f"module.{k}": v for k, v in sd.items()}}, tmp_path / "official.pth")
    assert _same_weights(create_model("vit_tiny", tmp_path / "official.pth", **TINY), saved)
    assert _same_weights(create_model("vit_tiny", {"model": sd}, **TINY), saved)  # an already-read payload


def test_checkpoint_of_another_config_or_arch_is_refused(tmp_path):
    path = save_checkpoint(tmp_path / "w.pt", tiny_model(window_size=2))
    # window_size changes no tensor shape: loading it into a window-4 model would be silently wrong
    with pytest.raises(CheckpointFormatError, match=r"window_size=2 \(model 4\)"):
        create_model("vit_tiny", path, **TINY)
    with pytest.raises(CheckpointFormatError, match="is an icmformer model, not 'icmformer_pp_vit_tiny'"):
        create_model("icmformer_pp_vit_tiny", path, **{**TINY, "window_size": 2})
    torch.save({"state_dict": tiny_model().state_dict()}, tmp_path / "bare.pt")
    with pytest.raises(CheckpointFormatError, match="shape mismatches"):
        create_model("vit_tiny", tmp_path / "bare.pt", **{**TINY, "embed_dim": 96})


@pytest.mark.parametrize("task", ["sois", "mois"])
def test_shipped_weights_through_create_model_equal_load_model(task):
    if not DEFAULTS[task].is_file():
        pytest.skip("this install ships no default weights")
    ref = load_model(DEFAULTS[task])
    name = "icmformer_vit_tiny" if task == "sois" else "icmformer_pp_vit_tiny"
    model = create_model(name, DEFAULTS[task], img_size=ref.cfg.img_size)
    assert _same_weights(model, ref)


def test_recall_image_features_are_typed_and_cached_decode_matches_forward():
    torch.manual_seed(0)
    model = create_model("icmformer_pp_vit_tiny", **TINY).eval()
    size = TINY["img_size"]
    image = torch.rand(1, 3, size, size)
    ex_maps = torch.zeros(1, 3, size, size)
    ex_maps[:, 0, 30:60, 30:60] = 1
    rec_maps = torch.zeros(1, 3, size, size)
    with torch.no_grad():
        feats = model.encode_recall_image(image)
        assert isinstance(feats, RecallImageFeatures) and len(feats.kv) == model.cfg.num_cross_blocks
        assert feats.to(torch.float64).x.dtype == torch.float64
        cached = model.decode(model.encode_exemplar(image, ex_maps), feats, rec_maps, (size, size))
        torch.testing.assert_close(cached, model(image, ex_maps, rec_maps))
