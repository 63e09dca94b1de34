"""``icmformer-segment``: segment one object of an image from clicks; writes mask + overlay PNGs.

Example: icmformer-segment coins --click 50,60 --out out/   (``coins``/``astronaut``/… are
scikit-image's bundled sample images; any image file path works too).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from src_models import Clicks

from ..checkpoints import CheckpointError
from ..engine import Predictor, PredictorConfig
from ..image import to_rgb01
from ..overlay import render_overlay


def parse_point(text: str) -> tuple[float, float]:
    try:
        y, x = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a click as y,x (e.g. 120,200), got {text!r}") from None
    return y, x


def load_image(spec: str) -> np.ndarray:
    """An image file, or the name of one of scikit-image's bundled (offline) images."""
    path = Path(spec)
    if path.is_file():
        from skimage import io  # noqa: PLC0415

        try:
            return io.imread(path)
        except Exception as exc:  # noqa: BLE001
            raise ValueError(f"cannot read image {path}: {exc}") from exc
    from skimage import data  # noqa: PLC0415

    loader = getattr(data, spec, None)
    if loader is None or not callable(loader) or spec.startswith("_"):
        raise ValueError(f"image {spec!r}: no such file, and not a scikit-image sample name")
    return loader()


def clicks_from_json(path: Path) -> Clicks:
    """JSON: ``{"clicks": [{"y": .., "x": .., "positive": true}, ...]}`` or ``[[y, x, 1|0], ...]``."""
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read clicks file {path}: {exc}") from exc
    items = data["clicks"] if isinstance(data, dict) else data
    clicks = Clicks()
    for item in items:
        if isinstance(item, dict):
            clicks = clicks.add(item["y"], item["x"], bool(item.get("positive", True)))
        else:
            clicks = clicks.add(item[0], item[1], bool(item[2]) if len(item) > 2 else True)
    return clicks


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="icmformer-segment", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("image", help="image file, or a scikit-image sample name (coins, astronaut, …)")
    p.add_argument("--click", type=parse_point, action="append", default=[], metavar="Y,X",
                   help="positive click (row, column); repeatable")
    p.add_argument("--neg-click", type=parse_point, action="append", default=[], metavar="Y,X",
                   help="negative click; repeatable")
    p.add_argument("--clicks-json", type=Path, help="clicks from a JSON file (applied before --click)")
    p.add_argument("--checkpoint", type=Path, help="model checkpoint (default: the shipped one)")
    p.add_argument("--out", type=Path, default=Path("out"), help="output folder (default: out/)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    p.add_argument("--zoom-in", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--flip", action="store_true", help="average with the horizontally flipped image")
    p.add_argument("--threshold", type=float, default=0.49)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        image = load_image(args.image)
        clicks = clicks_from_json(args.clicks_json) if args.clicks_json else Clicks()
        for y, x in args.click:
            clicks = clicks.add(y, x, True)
        for y, x in args.neg_click:
            clicks = clicks.add(y, x, False)
        if not clicks.positives:
            raise ValueError("give at least one positive click: --click Y,X")
        cfg = PredictorConfig(zoom_in=args.zoom_in, flip=args.flip, threshold=args.threshold, device=args.device)
        predictor = Predictor.from_checkpoint(args.checkpoint, cfg)
        predictor.set_image(image)
        # Replay the clicks one by one, as a user would, feeding each prediction back.
        prob = None
        for i in range(1, len(clicks) + 1):
            prob = predictor.predict(clicks[:i], prob)
        assert prob is not None
        mask = prob > args.threshold
    except (ValueError, CheckpointError) as exc:
        print(f"icmformer-segment: error: {exc}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    stem = Path(args.image).stem
    mask_path, overlay_path = args.out / f"{stem}_mask.png", args.out / f"{stem}_overlay.png"
    Image.fromarray(mask.astype(np.uint8) * 255).save(mask_path)
    Image.fromarray(render_overlay(to_rgb01(image), mask, clicks)).save(overlay_path)
    print(f"object: {int(mask.sum())} pixels ({100 * mask.mean():.1f} % of the image)")
    print(f"wrote {mask_path}\nwrote {overlay_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
