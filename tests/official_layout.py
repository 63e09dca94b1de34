"""The official iCMFormer ViT-B/448 state-dict layout, written out from docs/protocols.md §1 (key families,
shapes and counts), independent of our module code, so a test can load such a file."""

from __future__ import annotations

import torch


def official_vit_base_shapes() -> dict[str, tuple[int, ...]]:
    d, hidden = 768, 3072
    s: dict[str, tuple[int, ...]] = {
        "patch_embed_coords.proj.weight": (d, 3, 16, 16),
        "patch_embed_coords.proj.bias": (d,),
        "backbone.cls_token": (1, 1, d),
        "backbone.pos_embed": (1, 785, d),
        "backbone.patch_embed.proj.weight": (d, 3, 16, 16),
        "backbone.patch_embed.proj.bias": (d,),
        "backbone.fc_norm.weight": (d,),
        "backbone.fc_norm.bias": (d,),
        "backbone.head.weight": (1000, d),
        "backbone.head.bias": (1000,),
    }

    def linear(prefix: str, out: int, inp: int) -> None:
        s[f"{prefix}.weight"] = (out, inp)
        s[f"{prefix}.bias"] = (out,)

    def norm(prefix: str, c: int) -> None:
        s[f"{prefix}.weight"] = (c,)
        s[f"{prefix}.bias"] = (c,)

    def conv(prefix: str, out: int, inp: int, k: int) -> None:
        s[f"{prefix}.weight"] = (out, inp, k, k)
        s[f"{prefix}.bias"] = (out,)

    def convt(prefix: str, inp: int, out: int, k: int) -> None:
        s[f"{prefix}.weight"] = (inp, out, k, k)
        s[f"{prefix}.bias"] = (out,)

    for i in range(12):
        p = f"backbone.blocks.{i}"
        norm(f"{p}.norm1", d)
        norm(f"{p}.norm2", d)
        linear(f"{p}.attn.qkv", 3 * d, d)
        linear(f"{p}.attn.proj", d, d)
        linear(f"{p}.mlp.fc1", hidden, d)
        linear(f"{p}.mlp.fc2", d, hidden)
    for i in range(3):
        p = f"backbone.blocks2.{i}"
        for n in ("norm1", "norm2", "norm3"):
            norm(f"{p}.{n}", d)
        for a in ("attn1", "attn2"):
            linear(f"{p}.{a}.qkv", 3 * d, d)
            linear(f"{p}.{a}.proj", d, d)
        linear(f"{p}.mlp.fc1", hidden, d)
        linear(f"{p}.mlp.fc2", d, hidden)
    convt("neck.down_4.0", d, 384, 2)
    norm("neck.down_4.1", 384)
    convt("neck.down_4.3", 384, 192, 2)
    norm("neck.down_4.4", 192)
    conv("neck.down_4.5", 128, 192, 1)
    norm("neck.down_4.6", 128)
    convt("neck.down_8.0", d, 384, 2)
    norm("neck.down_8.1", 384)
    conv("neck.down_8.2", 256, 384, 1)
    norm("neck.down_8.3", 256)
    conv("neck.down_16.0", 512, d, 1)
    norm("neck.down_16.1", 512)
    conv("neck.down_32.0", 1536, d, 2)
    norm("neck.down_32.1", 1536)
    conv("neck.down_32.2", 1024, 1536, 1)
    norm("neck.down_32.3", 1024)
    for i, c in enumerate((128, 256, 512, 1024)):
        conv(f"head.convs.{i}.conv", 256, c, 1)
    conv("head.fusion_conv.conv", 256, 1024, 1)
    conv("head.conv_seg", 1, 256, 1)
    convt("head.up_conv1.0", 256, 128, 2)
    norm("head.up_conv1.1", 128)
    conv("head.up_conv1.2", 128, 128, 1)
    norm("head.up_conv1.3", 128)
    convt("head.up_conv2.0", 128, 64, 2)
    norm("head.up_conv2.1", 64)
    conv("head.up_conv2.2", 64, 64, 1)
    norm("head.up_conv2.3", 64)
    return s


def random_official_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(shape, generator=g) * 0.02 for k, shape in official_vit_base_shapes().items()}
