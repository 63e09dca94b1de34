"""``icmformer-batch``: Find similar on every image of a folder, from one exemplar, headless.

    icmformer-batch images/ --exemplar-image images/a.png --exemplar-mask a_nucleus.png --out proposals/
    icmformer-batch images/ --exemplar-image a.png --exemplar-coco objects.json --exemplar-id 3 --out p/

The same inference path as the widget's *Find similar on all images*: the exemplar's own image
is seen by the exemplar branch (``ExemplarPredictor.set_exemplar_from``; plain ``set_exemplar``
on the exemplar's image itself). Writes one output per input, ``<stem>_proposals.tif`` (a label
image; a stack gives a stack) or ``.json`` (COCO instances, ``--format json``). Existing outputs
are refused before any work unless ``--overwrite``. An input that cannot be read or segmented
is reported on stderr and skipped; the others are written and the exit code is 2 (as
``icmformer-eval``); bad arguments: one line and exit code 2, nothing written; Ctrl-C: 130.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..autosave import AutosaveError, atomic_write_bytes, label_bytes
from ..carry import CarriedExemplar, recall_each, stack_planes
from ..checkpoints import CheckpointError
from ..export import CocoExportError, coco_to_labels, labels_to_coco
from ..runtime import DEFAULT_THRESHOLD
from ..series import SeriesError, list_images, read_image_file, spatial_shape
from ._args import OneLineParser, fail, float_in, int_in, output_folder

PROG = "icmformer-batch"


def build_parser() -> OneLineParser:
    p = OneLineParser(prog=PROG, description=__doc__.split("\n\n")[0],
                      epilog="Outputs: <out>/<stem>_proposals.tif (or .json) per input image.")
    p.add_argument("inputs", nargs="+", help="a folder of images, or image files")
    p.add_argument("--exemplar-image", type=Path, required=True, help="the image the exemplar is on")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--exemplar-mask", type=Path, help="a mask or label image of the exemplar's image")
    src.add_argument("--exemplar-coco", type=Path, help="a COCO json of the exemplar's image (or of a series "
                     "saved by the plugin: the image whose file_name is the exemplar image's name)")
    p.add_argument("--exemplar-id", type=int_in(1), default=None,
                   help="which object of the mask / json is the exemplar (needed when it holds several)")
    p.add_argument("--out", type=Path, required=True, help="folder for the proposals")
    p.add_argument("--format", choices=["tif", "json"], default="tif")
    p.add_argument("--checkpoint", type=Path, default=None, help="iCMFormer++ checkpoint (default: shipped)")
    p.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda", "mps"])
    p.add_argument("--threshold", type=float_in(0, 1, low_open=True, high_open=True),
                   default=DEFAULT_THRESHOLD)
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    return p


def pick_object(labels: np.ndarray, exemplar_id: int | None, source: Path) -> np.ndarray:
    """The exemplar's boolean mask from a mask (any non-zero value) or a label image."""
    ids = np.unique(labels[labels != 0])
    if exemplar_id is None:
        if len(ids) == 0:
            raise ValueError(f"{source} holds no object")
        if len(ids) > 1:
            raise ValueError(f"{source} holds {len(ids)} objects (ids {ids[0]}…{ids[-1]}): choose the exemplar "
                             "with --exemplar-id")
        return labels != 0
    if exemplar_id not in ids:
        raise ValueError(f"{source} has no object with id {exemplar_id}")
    return labels == exemplar_id


def coco_labels(path: Path, image_name: str) -> np.ndarray:
    """The label image of ``image_name`` in a COCO json (one image, or a series json)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read COCO json {path}: {getattr(exc, 'strerror', None) or exc}") from None
    if isinstance(data, dict) and isinstance(data.get("images"), list) and len(data["images"]) > 1:
        mine = [im for im in data["images"] if isinstance(im, dict) and im.get("file_name") == image_name]
        if len(mine) != 1:
            raise ValueError(f"{path} lists {len(data['images'])} images and {len(mine)} named {image_name!r}: "
                             "give the json of the exemplar's image")
        keep = mine[0].get("id")
        data = {**data, "images": [{**mine[0], "slice": []}],
                "annotations": [a for a in data.get("annotations", []) if isinstance(a, dict)
                                and a.get("image_id") == keep]}
    try:
        return coco_to_labels(data)
    except CocoExportError as exc:
        raise ValueError(f"{path}: {exc}") from None


def load_exemplar(args) -> tuple[np.ndarray, np.ndarray]:
    """(exemplar image, exemplar mask), checked."""
    image = read_image_file(args.exemplar_image)
    shape = spatial_shape(image)
    if len(shape) != 2:
        raise ValueError(f"the exemplar image {args.exemplar_image} is a stack {shape}: give a 2-D image")
    if args.exemplar_mask is not None:
        labels, source = read_image_file(args.exemplar_mask), args.exemplar_mask
        if labels.ndim == 3 and labels.shape[-1] in (3, 4):  # an RGB(A) mask painted in an editor
            labels = labels[..., :3].max(axis=-1)
    else:
        labels, source = coco_labels(args.exemplar_coco, args.exemplar_image.name), args.exemplar_coco
    if labels.shape != shape:
        raise ValueError(f"{source} is {labels.shape}, the exemplar image {shape}: not the same image")
    mask = pick_object(labels, args.exemplar_id, source)
    if mask.all():
        raise ValueError(f"the exemplar in {source} covers the whole image: it cannot be one object")
    return image, mask


def output_path(out: Path, image: Path, fmt: str) -> Path:
    return out / f"{image.stem}_proposals.{fmt}"


def plan_outputs(inputs: list[Path], out: Path, fmt: str, overwrite: bool) -> list[Path]:
    """One output per input, checked before any work: no two inputs share a name, no existing
    file is replaced without ``overwrite``."""
    targets = [output_path(out, p, fmt) for p in inputs]
    seen: dict[Path, Path] = {}
    for src, dst in zip(inputs, targets, strict=True):
        if dst in seen:
            raise ValueError(f"{seen[dst]} and {src} would both write {dst.name}: rename one")
        seen[dst] = src
    existing = [t for t in targets if t.exists()]
    if existing and not overwrite:
        raise ValueError(f"{len(existing)} output(s) already exist, e.g. {existing[0]} (--overwrite replaces them)")
    return targets


def propose(recaller, image: np.ndarray, path: Path, exemplar: CarriedExemplar) -> np.ndarray:
    """Proposals (instance labels) for one image or every slice of a stack."""
    shape = spatial_shape(image)
    out = np.zeros(shape, np.int32)
    for (_, idx), result, _ in recall_each(recaller, stack_planes(image, shape[:-2], str(path.resolve())), exemplar):
        out[idx] = result.instances
    return out


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        inputs = list_images(args.inputs[0]) if len(args.inputs) == 1 and Path(args.inputs[0]).is_dir() \
            else list_images(args.inputs)
        ex_image, ex_mask = load_exemplar(args)
        exemplar = CarriedExemplar(ex_image, ex_mask, None, (str(args.exemplar_image.resolve()), ()),
                                   args.exemplar_image.name)
        output_folder(args.out)
        targets = plan_outputs(inputs, args.out, args.format, args.overwrite)
        from ..exemplar import ExemplarPredictor, RecallConfig  # noqa: PLC0415 - torch only once the arguments are right

        recaller = ExemplarPredictor.from_checkpoint(args.checkpoint, RecallConfig(device=args.device,
                                                                                   threshold=args.threshold))
    except (SeriesError, ValueError, CheckpointError, OSError) as exc:
        return fail(PROG, exc)
    skipped, written = [], 0
    try:
        for path, target in tqdm(list(zip(inputs, targets, strict=True)), desc=PROG, unit="image",
                                 dynamic_ncols=True):
            try:
                labels = propose(recaller, read_image_file(path), path, exemplar)
                data = label_bytes(labels) if args.format == "tif" else \
                    json.dumps(labels_to_coco(labels, name=path.name)).encode()
                atomic_write_bytes(target, data)
                written += 1
            except (SeriesError, ValueError, AutosaveError, RuntimeError) as exc:
                skipped.append(path)
                tqdm.write(f"{PROG}: skipped {path}: {' '.join(str(exc).split())}", file=sys.stderr)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted: {written} of {len(inputs)} written", file=sys.stderr)
        return 130
    print(f"wrote {written} of {len(inputs)} proposals to {args.out}" +
          (f"; skipped {len(skipped)}: {', '.join(p.name for p in skipped)}" if skipped else ""))
    return 2 if skipped else 0


if __name__ == "__main__":
    raise SystemExit(main())
