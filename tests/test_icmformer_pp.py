import numpy as np
import pytest
import torch

from napari_icmformer.postprocess import split_negative_clicks
from src_models import Clicks, create_model
from src_models.icmformer import ICMFormer
from src_models.icmformer_pp import ICMFormerPP, exemplar_boxes, init_from_icmformer
from tests.conftest import TINY


def tiny_pp(seed=0, **kw):
    torch.manual_seed(seed)
    return create_model("icmformer_pp_vit_tiny", **{**TINY, **kw}).eval()


def test_vit_base_parameter_counts():
    model = create_model("icmformer_pp_vit_base")
    total = sum(p.numel() for p in model.parameters())
    assert abs(total - 178.73e6) / 178.73e6 <= 0.025
    assert sum(p.numel() for p in model.fusion.parameters()) == 2_959_104


def _maps(size, rng):
    m = torch.zeros(1, 3, size, size)
    m[:, 0, size // 4: size // 2, size // 4: size // 2] = 1  # exemplar mask
    m[:, 1, size // 3, size // 3] = 1
    return m


@pytest.mark.parametrize("size", [96, 128])
def test_shapes_and_cached_recall_equals_uncached(size):
    model = tiny_pp()
    rng = np.random.default_rng(0)
    image = torch.rand(1, 3, size, size)
    ex_maps = _maps(size, rng)
    rec_maps = torch.zeros(1, 3, size, size)
    rec_maps[:, 1, 3 * size // 4, 3 * size // 4] = 1
    with torch.no_grad():
        ref = model(image, ex_maps, rec_maps)
        ex = model.encode_exemplar(image, ex_maps)
        cached = model.decode(ex, model.encode_recall_image(image), rec_maps, (size, size))
    assert ref.shape == (1, 1, size, size)
    assert (ref - cached).abs().max() <= 1e-5
    grid = size // 16
    assert ex.exemplar.shape == (1, grid, grid, TINY["embed_dim"]) and ex.guide.shape == ex.exemplar.shape


def test_eim_response_is_a_distribution_over_exemplars():
    model = tiny_pp()
    image = torch.rand(2, 3, 128, 128)
    mask = torch.zeros(2, 1, 128, 128)
    mask[0, :, 10:40, 20:60] = 1
    mask[1, :, 70:120, 5:30] = 1
    with torch.no_grad():
        weights, resp = model.eim.response(model.normalize(image), mask)
    assert weights.shape[1] == 3 and weights.shape == resp.shape
    torch.testing.assert_close(weights.sum(dim=1), torch.ones_like(weights[:, 0]))
    assert (weights >= 0).all()


def test_exemplar_boxes_three_scales_clipped():
    mask = np.zeros((100, 120), bool)
    mask[40:60, 50:90] = True  # 20 x 40 box centred at (50, 70)
    b08, b10, b12 = exemplar_boxes(mask, (0.8, 1.0, 1.2))
    assert b10 == (40, 50, 60, 90)
    assert b08 == pytest.approx((42, 54, 58, 86))
    assert b12 == pytest.approx((38, 46, 62, 94))
    edge = np.zeros((100, 120), bool)
    edge[0:30, 100:120] = True
    y0, x0, y1, x1 = exemplar_boxes(edge, (1.2,))[0]
    assert y0 == 0 and x1 == 120 and y1 == pytest.approx(33) and x0 == pytest.approx(98)
    with pytest.raises(ValueError, match="empty"):
        exemplar_boxes(np.zeros((5, 5), bool), (1.0,))


def test_pseudo_and_true_negatives():
    same_category = np.zeros((50, 50), bool)
    same_category[10:20, 10:20] = True  # another object of the exemplar's category
    negatives = Clicks().add(15, 15, False).add(40, 40, False).add(12, 18, False)
    true, pseudo = split_negative_clicks(negatives, same_category)
    assert [(c.y, c.x) for c in pseudo] == [(15, 15), (12, 18)]
    assert [(c.y, c.x) for c in true] == [(40, 40)]


def test_init_from_icmformer_copies_front_ends_neck_and_head():
    torch.manual_seed(1)
    sois = ICMFormer(tiny_pp().cfg.replace(arch="icmformer"))
    pp = tiny_pp()
    left = init_from_icmformer(pp, sois.state_dict())
    s = sois.state_dict()
    p = pp.state_dict()
    for branch in ("exemplar_branch", "recall_branch"):
        assert torch.equal(p[f"{branch}.backbone.blocks.1.attn.qkv.weight"], s["backbone.blocks.1.attn.qkv.weight"])
        assert torch.equal(p[f"{branch}.patch_embed_coords.proj.weight"], s["patch_embed_coords.proj.weight"])
    assert torch.equal(p["head.conv_seg.weight"], s["head.conv_seg.weight"])
    assert all(k.startswith(("eim.", "eq3.", "fusion.")) for k in left)
    assert isinstance(pp, ICMFormerPP)
