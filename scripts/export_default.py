"""Turn a training run's last.pt into the shipped default (fp16 weights + model card facts).

    python scripts/export_default.py runs/default/last.pt napari_icmformer/weights/icmformer_vit_tiny_default.pt
"""

from __future__ import annotations

import sys
from pathlib import Path

from napari_icmformer.checkpoints import load_model, save_checkpoint


def main(src: str, dst: str) -> None:
    model = load_model(src)
    extra = dict(model.checkpoint_extra)
    train_cfg = extra.get("train_config", {})
    card = {
        "step": extra.get("step"),
        "train_config": train_cfg,
        "data": train_cfg.get("datasets"),
        "note": "trained on CPU by napari-icmformer (see the README model card for data and recipe)",
    }
    path = save_checkpoint(dst, model, half=True, extra=card)
    print(f"wrote {path} ({Path(path).stat().st_size / 2**20:.1f} MiB), step {card['step']}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
