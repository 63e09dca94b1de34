import math

import pytest
import torch

from napari_icmformer.checkpoints import load_model
from src_models import create_model, list_models
from tests.conftest import tiny_model
from tests.official_layout import official_vit_base_shapes, random_official_state_dict

OFFICIAL_TOTAL = 126_380_841  # docs/protocols.md §1: every official key


def test_official_layout_table_matches_spec_count():
    total = sum(math.prod(s) for s in official_vit_base_shapes().values())
    assert total == OFFICIAL_TOTAL


def test_vit_base_parameter_count_and_keys():
    model = create_model("vit_base")
    n = sum(p.numel() for p in model.parameters())
    assert 124.81e6 <= n <= 126.38e6 + 1e3
    official = official_vit_base_shapes()
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    # every key we have is an official key with the official shape
    assert set(ours) <= set(official)
    assert all(official[k] == s for k, s in ours.items())
    # what we leave out is exactly the unused families
    left_out = set(official) - set(ours)
    assert {k.split(".")[1] if k.startswith("backbone") else k.split(".")[1] for k in left_out} == {
        "cls_token", "fc_norm", "head", "up_conv1", "up_conv2"}
    fam = lambda prefix: sum(v.numel() for k, v in model.state_dict().items() if k.startswith(prefix))  # noqa: E731
    assert fam("backbone.blocks.") == 12 * 7_087_872
    assert fam("backbone.blocks2.") == 3 * 9_451_776
    assert fam("neck.") == 9_475_008


def test_official_state_dict_loads_strict(tmp_path):
    sd = random_official_state_dict()
    path = tmp_path / "official.pth"
    torch.save({"state_dict": sd, "config": {"class": "isegm.model.is_plainvit_model.PlainVitModel"}}, path)
    model = load_model(path)
    assert model.cfg.embed_dim == 768 and model.cfg.img_size == 448
    own = model.state_dict()
    for key in ("backbone.blocks2.2.attn2.qkv.weight", "neck.down_32.2.weight", "head.conv_seg.bias",
                "backbone.pos_embed", "patch_embed_coords.proj.weight"):
        assert torch.equal(own[key], sd[key])
    # strict round trip: our state dict + the dropped unused keys is the official one again
    assert set(own) | {k for k in sd if k not in own} == set(sd)


def test_unknown_extra_key_is_an_error(tmp_path):
    sd = {k: v for k, v in tiny_model().state_dict().items()}
    sd["backbone.blocks.0.attn.extra"] = torch.zeros(3)
    path = tmp_path / "x.pt"
    torch.save({"model": sd, "config": tiny_model().cfg.to_dict()}, path)
    with pytest.raises(Exception, match="unexpected keys"):
        load_model(path)


@pytest.mark.parametrize("size", [96, 128, 80])
def test_cached_equals_uncached(size):
    model = tiny_model(img_size=96)
    image = torch.rand(1, 3, size, size)
    maps = torch.zeros(1, 3, size, size)
    maps[:, 1, 20:30, 20:30] = 1
    maps[:, 2, 50:60, 40:50] = 1
    maps[:, 0] = torch.rand(size, size)
    with torch.no_grad():
        ref = model(image, maps)
        cached = model.decode(model.encode_image(image), maps)
    assert ref.shape == (1, 1, size, size)
    assert (ref - cached).abs().max() <= 1e-5
    assert ref.std() > 0  # not a constant output


def test_clicks_change_the_output():
    model = tiny_model()
    image = torch.rand(1, 3, 96, 96)
    a, b = torch.zeros(1, 3, 96, 96), torch.zeros(1, 3, 96, 96)
    b[:, 1, 40:50, 40:50] = 1
    with torch.no_grad():
        assert (model(image, a) - model(image, b)).abs().max() > 1e-4


def test_bad_input_shapes():
    model = tiny_model()
    with pytest.raises(ValueError, match="multiples of 16"):
        model(torch.rand(1, 3, 90, 96), torch.zeros(1, 3, 90, 96))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        model(torch.rand(1, 4, 96, 96), torch.zeros(1, 3, 96, 96))


def test_list_models_has_sizes():
    names = list_models()
    for size in ("vit_base", "vit_small", "vit_tiny"):
        assert f"icmformer_{size}" in names
    with pytest.raises(ValueError, match="unknown model"):
        create_model("vit_huge_banana")
