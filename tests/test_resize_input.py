"""A stage at a larger input starts from weights trained at a smaller one: the position embedding
is resampled, nothing else changes, and the trainer saves the size it trained at."""

import torch

from napari_icmformer.checkpoints import load_model, save_checkpoint
from napari_icmformer.training.trainer import Trainer
from src_models import coord_maps, resize_input
from tests.conftest import tiny_model
from tests.test_training import _synthetic_pool, _tiny_cfg


def _inputs(size: int):
    torch.manual_seed(1)
    image = torch.rand(1, 3, size, size)
    clicks = torch.tensor([[[size / 2, size / 2, 1.0]]])
    return image, coord_maps(clicks, torch.zeros(1, 1, size, size), (size, size))


def test_resized_network_computes_what_the_original_computes_at_that_size():
    model = tiny_model()  # 96² input, windows of 4 tokens on a 6-token grid
    resized = resize_input(model, 128)
    assert resized.cfg.img_size == 128 and resized.cfg.window_size == 4
    assert resized.backbone.pos_embed.shape == (1, 8 * 8 + 1, model.cfg.embed_dim)
    own, new = model.state_dict(), resized.state_dict()
    assert all(torch.equal(own[k], new[k]) for k in own if k != "backbone.pos_embed")
    image, maps = _inputs(128)
    with torch.no_grad():  # the original interpolates its embedding on the fly: the same numbers
        assert torch.allclose(model(image, maps), resized(image, maps), atol=1e-5)
    assert resize_input(model, 96) is model


def test_whole_grid_windows_stay_whole_grid():
    model = tiny_model(window_size=6)  # 96² -> 6 tokens a side: every block global
    resized = resize_input(model, 144)
    assert resized.cfg.window_size == 9 and resized.cfg.grid_size == 9
    image, maps = _inputs(144)
    with torch.no_grad():
        out = resized(image, maps)
    assert out.shape[-2:] == (144, 144) and torch.isfinite(out).all()


def test_training_from_a_smaller_checkpoint_saves_the_trained_size(tmp_path):
    init = save_checkpoint(tmp_path / "small.pt", tiny_model())
    cfg = _tiny_cfg(tmp_path, 1)
    cfg.init_from, cfg.img_size = str(init), 128
    trainer = Trainer(cfg, _synthetic_pool())
    assert trainer.model.cfg.img_size == 128
    saved = load_model(trainer.fit())
    assert saved.cfg.img_size == 128 and saved.backbone.pos_embed.shape[1] == 8 * 8 + 1
