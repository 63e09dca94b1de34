import numpy as np
import torch

from src_models import Click, Clicks, coord_maps, disk_maps


def test_disk_radius_5_has_81_pixels_and_right_sign():
    pts = torch.tensor([[[30.0, 40.0, 1.0], [10.0, 10.0, 0.0], [0.0, 0.0, -1.0]]])
    maps = disk_maps(pts, (64, 64), radius=5)
    assert maps.shape == (1, 2, 64, 64)
    assert maps[0, 0].sum() == 81  # lattice points with dy²+dx² ≤ 25
    assert maps[0, 0, 30, 40] == 1 and maps[0, 0, 30, 46] == 0 and maps[0, 0, 30, 45] == 1
    assert maps[0, 1, 10, 10] == 1 and maps[0, 1].sum() == 81
    assert maps[0, 1, 0, 0] == 0  # the padding point (-1) draws nothing


def test_coord_maps_order_prev_mask_first():
    prev = torch.zeros(1, 1, 32, 32)
    prev[..., :5, :5] = 0.7
    maps = coord_maps(torch.tensor([[[16.0, 16.0, 1.0]]]), prev, (32, 32))
    assert torch.allclose(maps[:, 0:1], prev)
    assert maps[0, 1, 16, 16] == 1 and maps[0, 2].sum() == 0


def test_clicks_are_values():
    c1 = Clicks()
    c2 = c1.add(3, 4, True).add(5, 6, False)
    assert len(c1) == 0 and len(c2) == 2
    assert c2[1] == Click(5.0, 6.0, False, 1)
    assert [c.index for c in c2] == [0, 1]
    assert c2.positives == [Click(3.0, 4.0, True, 0)]
    np.testing.assert_array_equal(c2.to_array(), [[3, 4, 1], [5, 6, 0]])
    assert c2.flipped(10)[0].x == 5
    assert c2.map(2, 3, 1, 1)[0] == Click(4.0, 9.0, True, 0)
