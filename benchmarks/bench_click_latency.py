"""Per-click latency of the engine, cached vs uncached, for each model size (random weights).

    python benchmarks/bench_click_latency.py --sizes vit_tiny vit_small vit_base --clicks 20

Cached = ``Predictor.predict`` reusing the per-image features (only the click-dependent part
runs); uncached = the reference full forward for every click. Median over ``--clicks`` clicks
after ``--warmup`` clicks, zoom-in off so every click sees the same 448² view. Peak memory is the
process's max RSS on CPU, ``torch.cuda.max_memory_allocated`` on CUDA.
"""

from __future__ import annotations

import argparse
import platform
import resource
import statistics
import time

import numpy as np
import torch

from napari_icmformer.engine import Predictor, PredictorConfig
from src_models import Clicks, create_model


def time_clicks(pred: Predictor, clicks: list[Clicks], use_cache: bool, sync) -> list[float]:
    out = []
    for c in clicks:
        t = time.perf_counter()
        pred.predict(c, use_cache=use_cache)
        sync()
        out.append(time.perf_counter() - t)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="+", default=["vit_tiny", "vit_small", "vit_base"])
    ap.add_argument("--img-size", type=int, default=448)
    ap.add_argument("--clicks", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="auto")
    args = ap.parse_args()
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    rng = np.random.default_rng(0)
    image = (rng.random((480, 640, 3)) * 255).astype(np.uint8)
    click_sets = [Clicks().add(*rng.uniform(20, 460, 2)).add(*rng.uniform(20, 460, 2), positive=False)
                  for _ in range(args.clicks + args.warmup)]
    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, device {device}")
    print("| model | input | set_image+1st click (ms) | cached click (ms) | uncached click (ms) | "
          "cached/uncached | peak mem (MiB) |")
    print("|---|---|---|---|---|---|---|")
    for size in args.sizes:
        torch.manual_seed(0)
        model = create_model(size, img_size=args.img_size)
        cfg = PredictorConfig(device=args.device, zoom_in=False, precision=args.precision)
        pred = Predictor(model, cfg)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        pred.set_image(image)
        t = time.perf_counter()
        pred.predict(click_sets[0])
        sync()
        first = time.perf_counter() - t
        for c in click_sets[: args.warmup]:
            pred.predict(c)
            pred.predict(c, use_cache=False)
        cached = time_clicks(pred, click_sets[args.warmup:], True, sync)
        uncached = time_clicks(pred, click_sets[args.warmup:], False, sync)
        mc, mu = statistics.median(cached), statistics.median(uncached)
        if device.type == "cuda":
            peak = torch.cuda.max_memory_allocated() / 2**20
        else:
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"| {size} | {args.img_size}² | {first * 1e3:.0f} | {mc * 1e3:.1f} | {mu * 1e3:.1f} | "
              f"{mc / mu:.2f} | {peak:.0f} |", flush=True)
        del pred, model


if __name__ == "__main__":
    main()
