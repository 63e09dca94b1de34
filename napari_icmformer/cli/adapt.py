"""``icmformer-adapt``: fine-tune the models on your own annotated images, in minutes on a CPU.

    icmformer-adapt --images a.png b.png --labels a_objects.png b_objects.png --minutes 3 --out adapted/
    icmformer-adapt --coco a_objects.json b_objects.json --minutes 3 --out adapted/

Writes ``OUT/icmformer_adapted.pt`` (iCMFormer), ``OUT/icmformer_pp_adapted.pt`` (iCMFormer++,
when the images hold several objects each) and ``OUT/adapt_report.json`` (objects used, held-out
NoC@85 / mIoU@3 and Find-similar object F1 before and after). Give the checkpoints to
``icmformer-segment --checkpoint``, ``icmformer-eval`` or the widget's model fields.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from tqdm import tqdm

from ..adapt import MOIS_FILE, REPORT_FILE, SOIS_FILE, AdaptCancelled, AdaptConfig, AdaptProgress, adapt, summary_line
from ..adapt_data import AdaptInputError, read_coco, read_label_images, split_objects
from ..checkpoints import CheckpointError, load_model
from ._args import OneLineParser, fail, float_in, int_in, output_folder

PROG = "icmformer-adapt"


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_argument_group("input (label images or COCO json, as the plugin exports them)")
    src.add_argument("--images", nargs="+", type=Path, help="image files")
    src.add_argument("--labels", nargs="+", type=Path, help="one label image per image (0 = background)")
    src.add_argument("--coco", nargs="+", type=Path, help="COCO instances json files")
    src.add_argument("--image-dir", type=Path, help="where the COCO json's images are (default: beside it)")
    p.add_argument("--minutes", type=float_in(0, 600, low_open=True), default=AdaptConfig.minutes,
                   help="wall time of the whole run, scoring included (default %(default)s)")
    p.add_argument("--out", type=Path, required=True, help="folder for the checkpoints and the report")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier adaptation in --out")
    p.add_argument("--checkpoint", type=Path, help="iCMFormer checkpoint to start from (default: shipped)")
    p.add_argument("--mois-checkpoint", type=Path, help="iCMFormer++ checkpoint to start from (default: shipped)")
    p.add_argument("--mois", choices=["auto", "on", "off"], default="auto",
                   help="adapt iCMFormer++ too: auto = when the images hold several objects each")
    p.add_argument("--held-out", type=float_in(0, 1, low_open=True, high_open=True), default=AdaptConfig.held_out,
                   help="share of each image's objects held out to score (default %(default)s)")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, mps")
    p.add_argument("--seed", type=int_in(0, 2**32 - 1), default=0)
    return p


def read_inputs(args: argparse.Namespace):
    """The annotated images, or AdaptInputError with what is wrong on the command line."""
    if args.coco and (args.images or args.labels):
        raise AdaptInputError("give either --images with --labels or --coco, not both")
    if args.coco:
        items = [item for path in args.coco for item in read_coco(path, args.image_dir)]
    elif args.images and args.labels:
        items = read_label_images(args.images, args.labels)
    else:
        raise AdaptInputError("give --images with --labels (one label image per image) or --coco")
    if not items:
        raise AdaptInputError("the inputs hold no image")
    return items


def check_out(out: Path, overwrite: bool) -> Path:
    """``--out`` refused before any work when it holds an earlier adaptation (no --overwrite)."""
    output_folder(out, create=False)
    found = [n for n in (SOIS_FILE, MOIS_FILE, REPORT_FILE) if (out / n).exists()]
    if found and not overwrite:
        raise AdaptInputError(f"--out {out} already holds {', '.join(found)}: pass --overwrite to replace them "
                              "or choose another folder")
    return out


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        check_out(args.out, args.overwrite)
        for ckpt in (args.checkpoint, args.mois_checkpoint):
            if ckpt is not None:
                load_model(ckpt)  # an unusable checkpoint is refused before the images are read
        items = read_inputs(args)
        cfg = AdaptConfig(minutes=args.minutes, mois=args.mois, held_out=args.held_out, device=args.device,
                          seed=args.seed, sois_checkpoint=str(args.checkpoint) if args.checkpoint else None,
                          mois_checkpoint=str(args.mois_checkpoint) if args.mois_checkpoint else None)
        split_objects(items, cfg.held_out)  # too few objects: said before the progress bar starts
    except (AdaptInputError, CheckpointError, ValueError) as exc:
        return fail(PROG, exc)
    total = math.ceil(cfg.minutes * 60)
    bar = tqdm(total=total, desc="adapting", unit="s", dynamic_ncols=True,
               bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s {postfix}")

    def on_progress(p: AdaptProgress) -> None:
        bar.n = min(total, p.fraction * total)
        bar.set_postfix_str(p.message[:70], refresh=False)
        bar.refresh()

    try:
        result = adapt(items, cfg, on_progress=on_progress)
    except KeyboardInterrupt:
        bar.close()
        print(f"{PROG}: interrupted: nothing was written", flush=True)
        return 130
    except AdaptCancelled:
        bar.close()
        return 130
    except (AdaptInputError, CheckpointError, ValueError) as exc:
        bar.close()
        return fail(PROG, exc)
    bar.close()
    try:
        paths = result.save(args.out, overwrite=args.overwrite)
    except (FileExistsError, OSError) as exc:
        return fail(PROG, exc)
    except KeyboardInterrupt:  # deferred until the files were written whole
        return 130
    print(summary_line(result.report))
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
