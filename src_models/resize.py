"""Change a trained network's input size: the position embedding is resampled, nothing else moves.

A stage at a larger input (issue: "a final stage at a larger input size if validation says so")
starts from weights trained at 224²; the patch, click and transformer weights do not depend on the
grid, only ``backbone.pos_embed`` does.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .factory import build_model


def resize_input(model: nn.Module, img_size: int) -> nn.Module:
    """A copy of ``model`` (iCMFormer or iCMFormer++) built for ``img_size`` inputs.

    The position embedding is resampled to the new grid exactly as the backbone itself resamples
    it for an input of another size (``pos_embed_for``, bicubic; the class token kept), so the
    copy computes what the original computes at that size. Windowed blocks keep their window unless
    the window covered the whole old grid (ViT-Tiny at 224²: every block global), in which case it
    covers the whole new grid too, so attention sees what it saw in training.
    """
    cfg = model.cfg
    if img_size == cfg.img_size:
        return model
    new_cfg = cfg.replace(img_size=img_size)  # validates: a multiple of the patch size, in range
    grid = new_cfg.grid_size
    if cfg.window_size >= cfg.grid_size:
        new_cfg = new_cfg.replace(window_size=grid)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    pos = state["backbone.pos_embed"]
    with torch.no_grad():
        patches = model.backbone.pos_embed_for((grid, grid)).reshape(1, grid * grid, -1)
    state["backbone.pos_embed"] = torch.cat([pos[:, :1], patches.to(pos.dtype)], dim=1)
    resized = build_model(new_cfg).to(pos.dtype)
    resized.load_state_dict(state, strict=True)
    resized.train(model.training)
    return resized


__all__ = ["resize_input"]

