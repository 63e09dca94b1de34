"""Model sizes as data (timm style): one frozen dataclass per architecture."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild an iCMFormer / iCMFormer++ network.

    Defaults are the official ``icmformer_plainvit_base448`` model (SPEC §1).
    """

    arch: str = "icmformer"  # "icmformer" (SOIS) or "icmformer_pp" (MOIS)
    img_size: int = 448
    patch_size: int = 16
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    norm_eps: float = 1e-6
    window_size: int = 14  # tokens per window side in windowed blocks
    global_blocks: tuple[int, ...] = (5, 11)  # blocks with global attention
    split_depth: int = 6  # S1 = blocks[:split_depth], S2 = blocks[split_depth:]
    num_cross_blocks: int = 3
    neck_dims: tuple[int, int, int, int] = (128, 256, 512, 1024)
    head_channels: int = 256
    head_dropout: float = 0.1
    drop_path_rate: float = 0.0
    click_radius: int = 5
    with_prev_mask: bool = True
    # iCMFormer++ only: Exemplar-Informed Module trunk and the Eq. 3 block's FFN dropout.
    eim_backbone: str = "resnet18"
    eim_dim: int = 256
    eim_scales: tuple[float, ...] = (0.8, 1.0, 1.2)
    # which ResNet stage feeds the EIM: 4 (stride 32, the whole ResNet-18: SPEC §2's count) or 3
    # (stride 16, 2.8 M instead of 11.2 M parameters: keeps a shipped ViT-Tiny model under 40 MB)
    eim_out_index: int = 4
    use_eim: bool = True  # False: the paper's Table 5 ablation without the Exemplar-Informed Module
    eq3_dropout: float = 0.1
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def grid_size(self) -> int:
        return self.img_size // self.patch_size

    def to_dict(self) -> dict[str, Any]:
        """Plain types only, so a checkpoint loads with ``torch.load(weights_only=True)``."""
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, tuple):
                out[key] = list(value)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ValueError(f"unknown model config keys: {unknown}")
        kwargs = {}
        for key, value in data.items():
            kwargs[key] = tuple(value) if isinstance(value, list) else value
        return cls(**kwargs)

    def replace(self, **overrides: Any) -> "ModelConfig":
        return replace(self, **overrides)


_SIZES: dict[str, dict[str, Any]] = {
    # The paper's model (official config icmformer_plainvit_base448_cocolvis_itermask).
    "vit_base": dict(embed_dim=768, num_heads=12, neck_dims=(128, 256, 512, 1024), head_channels=256),
    # Same structure, narrower: what runs interactively on a laptop CPU.
    "vit_small": dict(embed_dim=384, num_heads=6, neck_dims=(64, 128, 256, 512), head_channels=128),
    "vit_tiny": dict(embed_dim=192, num_heads=3, neck_dims=(32, 64, 128, 256), head_channels=64, eim_out_index=3),
}

MODEL_CONFIGS: dict[str, ModelConfig] = {}
for _size, _kw in _SIZES.items():
    MODEL_CONFIGS[f"icmformer_{_size}"] = ModelConfig(arch="icmformer", **_kw)
    MODEL_CONFIGS[f"icmformer_pp_{_size}"] = ModelConfig(arch="icmformer_pp", **_kw)


def get_config(name: str, **overrides: Any) -> ModelConfig:
    """Look up a named config; bare sizes (``vit_base``) mean the SOIS model."""
    key = name if name in MODEL_CONFIGS else f"icmformer_{name}"
    if key not in MODEL_CONFIGS:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(MODEL_CONFIGS)}")
    cfg = MODEL_CONFIGS[key]
    return cfg.replace(**overrides) if overrides else cfg
