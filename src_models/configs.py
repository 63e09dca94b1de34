"""Model sizes as data (timm style): one frozen dataclass per architecture."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

ARCHS = ("icmformer", "icmformer_pp")
# Upper bounds keep a config from a checkpoint file cheap to check: the network is built on the
# meta device (no memory) before its shapes are compared with the file's, and a depth of 10^6
# blocks would take minutes even there. The largest official model (ViT-H) is well inside.
_INT_RANGES: dict[str, tuple[int, int]] = {
    "img_size": (16, 8192), "patch_size": (1, 256), "embed_dim": (1, 16384), "depth": (1, 256),
    "num_heads": (1, 1024), "window_size": (1, 1024), "split_depth": (0, 256), "num_cross_blocks": (0, 256),
    "head_channels": (1, 16384), "click_radius": (0, 1024), "eim_dim": (1, 16384), "eim_out_index": (1, 4),
}
_FLOAT_RANGES: dict[str, tuple[float, float]] = {
    "mlp_ratio": (1e-3, 64.0), "norm_eps": (1e-12, 1.0), "head_dropout": (0.0, 0.999),
    "drop_path_rate": (0.0, 0.999), "eq3_dropout": (0.0, 0.999),
}
_BOOLS = ("qkv_bias", "with_prev_mask", "use_eim")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _int_tuple(name: str, value: Any, length: int | None = None, low: int = 0) -> tuple[int, ...]:
    if not isinstance(value, (list, tuple)) or not all(_is_int(v) and v >= low for v in value):
        raise ValueError(f"model config {name} must be a list of integers >= {low}, got {value!r}")
    if length is not None and len(value) != length:
        raise ValueError(f"model config {name} must have {length} entries, got {len(value)}")
    return tuple(value)


def check_model_config(cfg: "ModelConfig") -> None:
    """Refuse a config the network cannot be built from, with the field at fault (a
    ``ValueError`` rather than an assertion or a RuntimeError deep inside torch); lists
    become tuples so the frozen config stays hashable."""
    if cfg.arch not in ARCHS:
        raise ValueError(f"model config arch must be one of {list(ARCHS)}, got {cfg.arch!r}")
    for name, (low, high) in _INT_RANGES.items():
        v = getattr(cfg, name)
        if not _is_int(v) or not low <= v <= high:
            raise ValueError(f"model config {name} must be an integer in [{low}, {high}], got {v!r}")
    for name, (low, high) in _FLOAT_RANGES.items():
        v = getattr(cfg, name)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not low <= v <= high:
            raise ValueError(f"model config {name} must be a number in [{low}, {high}], got {v!r}")
    for name in _BOOLS:
        if not isinstance(getattr(cfg, name), bool):
            raise ValueError(f"model config {name} must be true or false, got {getattr(cfg, name)!r}")
    if cfg.patch_size > cfg.img_size:
        raise ValueError(f"model config patch_size {cfg.patch_size} is larger than img_size {cfg.img_size}")
    if cfg.img_size % cfg.patch_size:
        raise ValueError(f"model config img_size {cfg.img_size} is not a multiple of patch_size {cfg.patch_size} "
                         "(the network could not run on it)")
    if cfg.embed_dim % cfg.num_heads:
        raise ValueError(f"model config embed_dim {cfg.embed_dim} is not a multiple of num_heads {cfg.num_heads}")
    if int(cfg.embed_dim * cfg.mlp_ratio) < 1:
        raise ValueError(f"model config mlp_ratio {cfg.mlp_ratio} leaves no hidden units at embed_dim {cfg.embed_dim}")
    if cfg.split_depth > cfg.depth:
        raise ValueError(f"model config split_depth {cfg.split_depth} exceeds depth {cfg.depth}")
    object.__setattr__(cfg, "global_blocks", _int_tuple("global_blocks", cfg.global_blocks))
    neck = _int_tuple("neck_dims", cfg.neck_dims, length=4, low=1)
    if max(neck) > 16384:
        raise ValueError(f"model config neck_dims must be at most 16384, got {list(neck)}")
    object.__setattr__(cfg, "neck_dims", neck)
    scales = cfg.eim_scales
    if (not isinstance(scales, (list, tuple)) or not scales or len(scales) > 16
            or not all(isinstance(s, (int, float)) and not isinstance(s, bool) and 0 < s <= 16 for s in scales)):
        raise ValueError(f"model config eim_scales must be 1 to 16 numbers in (0, 16], got {scales!r}")
    object.__setattr__(cfg, "eim_scales", tuple(scales))
    if not isinstance(cfg.eim_backbone, str) or not cfg.eim_backbone:
        raise ValueError(f"model config eim_backbone must be a timm model name, got {cfg.eim_backbone!r}")


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild an iCMFormer / iCMFormer++ network.

    Defaults are the official ``icmformer_plainvit_base448`` model (docs/protocols.md §1).
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
    # which ResNet stage feeds the EIM: 4 (stride 32, the whole ResNet-18: docs/protocols.md §2) or 3
    # (stride 16, 2.8 M instead of 11.2 M parameters: keeps a shipped ViT-Tiny model under 40 MB)
    eim_out_index: int = 4
    use_eim: bool = True  # False: the paper's Table 5 ablation without the Exemplar-Informed Module
    eq3_dropout: float = 0.1

    def __post_init__(self) -> None:
        check_model_config(self)

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
        if not isinstance(data, dict):
            raise ValueError(f"a model config is a mapping of field names to values, got {type(data).__name__}")
        if "extra" in data:  # older files carry the unused, always empty "extra": read, then dropped
            if not isinstance(data["extra"], dict):
                raise ValueError(f"model config extra must be a mapping, got {type(data['extra']).__name__}")
            data = {k: v for k, v in data.items() if k != "extra"}
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
