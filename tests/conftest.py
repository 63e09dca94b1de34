"""Shared fixtures: tiny randomly initialised models (fast on a CPU) and their checkpoints."""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from napari_icmformer.checkpoints import save_checkpoint  # noqa: E402
from src_models import create_model  # noqa: E402

TINY = dict(img_size=96, depth=4, split_depth=2, global_blocks=(1, 3), window_size=4,
            embed_dim=48, num_heads=3, neck_dims=(16, 16, 32, 32), head_channels=16)


def tiny_model(seed: int = 0, **overrides):
    torch.manual_seed(seed)
    return create_model("vit_tiny", **{**TINY, **overrides}).eval()


@pytest.fixture
def tiny():
    return tiny_model()


@pytest.fixture
def tiny_checkpoint(tmp_path):
    return save_checkpoint(tmp_path / "tiny.pt", tiny_model())
