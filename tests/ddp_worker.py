"""Run by tests/test_training.py under torchrun: one rank of a tiny DDP training run.

Writes rank<r>.txt with a checksum of its weights, so the test can check that DDP kept the
ranks' models identical (gradients averaged) while each rank drew its own samples.
"""

import sys
from pathlib import Path

from napari_icmformer.cli.train import build_parser, config_from_args
from napari_icmformer.training.distributed import shutdown_distributed
from napari_icmformer.training.trainer import Trainer

if __name__ == "__main__":
    cfg = config_from_args(build_parser().parse_args(sys.argv[1:]))
    trainer = Trainer(cfg)
    first = trainer.next_batch()[0]
    trainer.fit()
    total = sum(float(p.double().sum()) for p in trainer.model.parameters())
    Path(cfg.out_dir, f"rank{trainer.dist.rank}.txt").write_text(
        f"{trainer.dist.world_size} {total!r} {float(first.sum())!r}\n")
    shutdown_distributed()
