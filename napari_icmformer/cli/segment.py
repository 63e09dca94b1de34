"""``icmformer-segment``: segment one object of an image from clicks; writes mask + overlay PNGs.

Example: icmformer-segment coins --click 50,60 --out out/   (``coins``/``astronaut``/… are
scikit-image's bundled sample images; any image file path works too). Existing output files
are never replaced unless ``--overwrite``; every error is one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import contextlib
import json
from pathlib import Path

import numpy as np
from PIL import Image

from src_models import Clicks

from ..checkpoints import CheckpointError
from ..engine import Predictor, PredictorConfig
from ..image import read_image_file, to_rgb01
from ..overlay import render_overlay
from ..runtime import DEFAULT_THRESHOLD
from ._args import OneLineParser, fail, float_in, output_folder

# scikit-image sample images whose files ship inside the package: loading them never touches the
# network (``skimage.data`` also holds downloaders such as ``cells3d`` and ``download_all``).
SAMPLE_IMAGES = (
    "astronaut", "brick", "camera", "cat", "cell", "checkerboard", "chelsea", "clock", "coffee", "coins",
    "colorwheel", "grass", "gravel", "horse", "hubble_deep_field", "immunohistochemistry", "logo",
    "microaneurysms", "moon", "page", "retina", "rocket", "shepp_logan_phantom", "text",
)


def parse_point(text: str) -> tuple[float, float]:
    try:
        y, x = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a click as y,x (e.g. 120,200), got {text!r}") from None
    return y, x


def load_image(spec: str) -> np.ndarray:
    """An image file, or the name of one of scikit-image's bundled (offline) images."""
    path = Path(spec)
    if path.is_dir():
        raise ValueError(f"image {spec!r} is a folder, not an image file")
    if path.is_file():
        try:
            return read_image_file(path)
        except Exception as exc:  # noqa: BLE001
            raise ValueError(f"cannot read image {path}: {exc}") from exc
    if spec not in SAMPLE_IMAGES:
        raise ValueError(f"image {spec!r}: no such file, and not a scikit-image sample name "
                         f"(bundled samples: {', '.join(SAMPLE_IMAGES)})")
    from skimage import data  # noqa: PLC0415

    return getattr(data, spec)()


def _number(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{what} must be a number, got {value!r}")
    return float(value)


def _positive(value: object, what: str) -> bool:
    """true/false (or 1/0); a string such as "false" is refused, not read as true."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise ValueError(f"{what} must be true or false (or 1 / 0), got {value!r}")


def parse_clicks(data: object) -> Clicks:
    """Clicks from parsed JSON: ``{"clicks": [...]}`` or a bare list; each click is
    ``{"y": .., "x": .., "positive": true}`` or ``[y, x]`` / ``[y, x, 1|0]``."""
    items = data.get("clicks") if isinstance(data, dict) else data
    if isinstance(data, dict) and (set(data) - {"clicks"} or "clicks" not in data):
        raise ValueError('expected {"clicks": [...]} or a list of clicks, got an object with keys '
                         f"{sorted(data)}")
    if not isinstance(items, list):
        raise ValueError(f"expected a list of clicks, got {type(items).__name__}")
    clicks = Clicks()
    for i, item in enumerate(items):
        what = f"click {i}"
        if isinstance(item, dict):
            unknown = sorted(set(item) - {"y", "x", "positive"})
            if unknown or "y" not in item or "x" not in item:
                raise ValueError(f'{what} must have "y", "x" and optionally "positive", got keys {sorted(item)}')
            y, x = _number(item["y"], f"{what} y"), _number(item["x"], f"{what} x")
            positive = _positive(item.get("positive", True), f'{what} "positive"')
        elif isinstance(item, list) and len(item) in (2, 3):
            y, x = _number(item[0], f"{what} y"), _number(item[1], f"{what} x")
            positive = _positive(item[2], f"{what} label") if len(item) == 3 else True
        else:
            raise ValueError(f'{what} must be {{"y": .., "x": .., "positive": true}} or [y, x, 1|0], got {item!r}')
        clicks = clicks.add(y, x, positive)
    return clicks


def clicks_from_json(path: Path) -> Clicks:
    """JSON: ``{"clicks": [{"y": .., "x": .., "positive": true}, ...]}`` or ``[[y, x, 1|0], ...]``."""
    if path.is_dir():
        raise ValueError(f"clicks file {path} is a folder")
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"clicks file not found: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ValueError(f"cannot read clicks file {path}: {exc}") from None
    try:
        return parse_clicks(data)
    except ValueError as exc:
        raise ValueError(f"clicks file {path}: {exc}") from None


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="icmformer-segment", description=__doc__,
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("image", help="image file, or a bundled scikit-image sample name (coins, astronaut, …)")
    p.add_argument("--click", type=parse_point, action="append", default=[], metavar="Y,X",
                   help="positive click (row, column); repeatable")
    p.add_argument("--neg-click", type=parse_point, action="append", default=[], metavar="Y,X",
                   help="negative click; repeatable")
    p.add_argument("--clicks-json", type=Path, help="clicks from a JSON file (applied before --click)")
    p.add_argument("--checkpoint", type=Path, help="model checkpoint (default: the shipped one)")
    p.add_argument("--out", type=Path, default=Path("out"), help="output folder (default: out/)")
    p.add_argument("--overwrite", action="store_true", help="replace mask/overlay files already in --out")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    p.add_argument("--zoom-in", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--flip", action="store_true", help="average with the horizontally flipped image")
    p.add_argument("--threshold", type=float_in(0.0, 1.0, low_open=True, high_open=True), default=DEFAULT_THRESHOLD,
                   help="probability above which a pixel is the object, in (0, 1)")
    return p


def output_paths(out: Path, image: str, overwrite: bool) -> tuple[Path, Path]:
    """The mask and overlay paths, checked before predicting: never over a file unless asked."""
    output_folder(out, create=False)
    stem = Path(image).stem
    paths = out / f"{stem}_mask.png", out / f"{stem}_overlay.png"
    for path in paths:
        if path.is_dir() or (path.exists() and not overwrite):
            raise ValueError(f"{path} already exists; pass --overwrite to replace it or choose another --out")
    return paths


def save_png(array: np.ndarray, path: Path) -> None:
    """Write through a temporary file so an interrupted write never leaves half a PNG."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(array).save(tmp, format="PNG")
        tmp.replace(path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise ValueError(f"cannot write {path}: {exc.strerror or exc}") from None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        clicks = clicks_from_json(args.clicks_json) if args.clicks_json else Clicks()
        for y, x in args.click:
            clicks = clicks.add(y, x, True)
        for y, x in args.neg_click:
            clicks = clicks.add(y, x, False)
        if not clicks.positives:
            raise ValueError("give at least one positive click: --click Y,X")
        image = load_image(args.image)
        mask_path, overlay_path = output_paths(args.out, args.image, args.overwrite)
        cfg = PredictorConfig(zoom_in=args.zoom_in, flip=args.flip, threshold=args.threshold, device=args.device)
        predictor = Predictor.from_checkpoint(args.checkpoint, cfg)
        predictor.set_image(image)
        # Replay the clicks one by one, as a user would, feeding each prediction back.
        prob = None
        for i in range(1, len(clicks) + 1):
            prob = predictor.predict(clicks[:i], prob)
        assert prob is not None
        mask = prob > args.threshold
        save_png(mask.astype(np.uint8) * 255, mask_path)
        save_png(render_overlay(to_rgb01(image), mask, clicks), overlay_path)
    except (ValueError, CheckpointError) as exc:
        return fail("icmformer-segment", exc)
    print(f"object: {int(mask.sum())} pixels ({100 * mask.mean():.1f} % of the image)")
    print(f"wrote {mask_path}\nwrote {overlay_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
