"""``icmformer-train``: train iCMFormer from dataclass defaults, a YAML file and CLI overrides."""

from __future__ import annotations

import argparse
import os
from dataclasses import fields
from pathlib import Path

import yaml

from ..checkpoints import CheckpointError
from ..runtime import resolve_device
from ..training.distributed import shutdown_distributed
from ..training.trainer import TrainConfig
from ._args import OneLineParser, fail


def build_parser() -> argparse.ArgumentParser:  # a OneLineParser: bad arguments are one line, exit 2
    p = OneLineParser(prog="icmformer-train", description=__doc__)
    p.add_argument("--config", type=Path, help="YAML file with TrainConfig fields")
    p.add_argument("--resume", action="store_true", help="continue from OUT_DIR/last.pt")
    p.add_argument("--overwrite", action="store_true",
                   help="start afresh in an OUT_DIR that already holds a run (its files are replaced)")
    for f in fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.name == "model_overrides":
            continue
        if f.name == "task":
            p.add_argument(flag, choices=["sois", "mois"], default=None,
                           help="sois (default): iCMFormer on single objects; mois: iCMFormer++ on exemplar + "
                                "category targets (datasets default to the instance-annotated ones; --init-from "
                                "an iCMFormer checkpoint initialises both branches)")
            continue
        if f.name in ("datasets", "val_dataset"):
            p.add_argument(flag, nargs="+", default=None)
        elif f.type in ("bool", bool):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=None)
        elif f.type in ("int", int) or "int" in str(f.type):
            p.add_argument(flag, type=int, default=None)
        elif f.type in ("float", float):
            p.add_argument(flag, type=float, default=None)
        else:
            p.add_argument(flag, type=str, default=None)
    return p


def read_config(path: Path) -> dict:
    """The TrainConfig fields of a YAML file, or one clear error (unreadable, not YAML, not a
    mapping, unknown field)."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read --config {path}: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"--config {path} is not valid YAML: {' '.join(str(exc).split())}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"--config {path} must hold TrainConfig fields (name: value), got a {type(data).__name__}")
    names = [f.name for f in fields(TrainConfig)]
    unknown = sorted(str(k) for k in data if k not in names)
    if unknown:
        raise ValueError(f"--config {path}: unknown field(s) {', '.join(unknown)}; TrainConfig has {', '.join(names)}")
    return data


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    values: dict = {}
    if args.config:
        values.update(read_config(args.config))
    for f in fields(TrainConfig):
        v = getattr(args, f.name, None)
        if v is not None:
            values[f.name] = v
    if values.get("data_root") is None and os.environ.get("ICMFORMER_DATA"):
        values["data_root"] = os.environ["ICMFORMER_DATA"]
    return TrainConfig(**values)


RUN_FILES = ("last.pt", "last.state", "best.pt", "log.csv", "val.csv")


def check_out_dir(out_dir: Path, resume: bool, overwrite: bool) -> None:
    """A run never silently replaces another: an OUT_DIR holding one needs --resume or --overwrite."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"--out-dir {out_dir} is a file, not a folder: choose a folder for the run")
    found = [n for n in RUN_FILES if (out_dir / n).exists()]
    if resume:
        if not (out_dir / "last.pt").is_file():
            raise ValueError(f"--resume: no last.pt in {out_dir} (start a new run without --resume)")
        return
    if found and not overwrite:
        raise ValueError(f"{out_dir} already holds a run ({', '.join(found)}): pass --resume to continue it "
                         "or --overwrite to replace it")
    if found:
        for n in found:
            (out_dir / n).unlink()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = config_from_args(args)
        check_device(cfg.device)
        check_out_dir(Path(cfg.out_dir), args.resume, args.overwrite)
        return run(args, cfg)
    except (ValueError, CheckpointError, TypeError) as exc:
        return fail("icmformer-train", exc)
    except OSError as exc:  # a folder that cannot be made, a disk that is full
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        return fail("icmformer-train", f"{exc.strerror or exc}{where}")


def check_device(name: str) -> None:
    """An unknown device, or CUDA/MPS on a machine without one: one line before any data is loaded."""
    if name == "auto":
        raise ValueError("--device auto is not supported for training: give cpu, cuda, cuda:N or mps")
    resolve_device(name)


def run(args: argparse.Namespace, cfg: TrainConfig) -> int:
    from ..training.mois_trainer import make_trainer  # noqa: PLC0415

    trainer = make_trainer(cfg)
    say = print if trainer.dist.is_main else (lambda *a, **k: None)
    if trainer.dist.enabled:
        say(f"distributed: {trainer.dist.world_size} processes, global batch "
            f"{trainer.dist.world_size * cfg.batch_size}")
    if args.resume:
        trainer.resume()
        say(f"resumed from {trainer.last_path} at step {trainer.step}")
    try:
        path = trainer.fit()
    except KeyboardInterrupt:
        return 130
    finally:
        shutdown_distributed()
    say(f"saved {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
