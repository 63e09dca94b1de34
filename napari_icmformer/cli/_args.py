"""Argument checks shared by the console scripts: a bad value is refused while parsing, with
one line on stderr and exit code 2, before any model is loaded or any file written."""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad command line in one line (``prog: error: ...``), exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def fail(prog: str, message: object) -> int:
    """Print the one-line error of a command and give its exit code."""
    text = " ".join(str(message).split()) or "unknown error"
    print(f"{prog}: error: {text}", file=sys.stderr)
    return 2


def int_in(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer in [low, high]."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low or (high is not None and value > high):
            bound = f">= {low}" if high is None else f"in [{low}, {high}]"
            raise argparse.ArgumentTypeError(f"must be an integer {bound}, got {value}")
        return value
    parse.__name__ = "integer"
    return parse


def float_in(low: float, high: float, *, low_open: bool = False, high_open: bool = False) -> Callable[[str], float]:
    """An argparse type: a finite number in the interval (brackets as ``low_open``/``high_open``)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        ok = math.isfinite(value) and (value > low if low_open else value >= low) and (
            value < high if high_open else value <= high)
        if not ok:
            span = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
            raise argparse.ArgumentTypeError(f"must be a number in {span}, got {text}")
        return value
    parse.__name__ = "number"
    return parse


def output_folder(path: Path, create: bool = True) -> Path:
    """``--out`` checked before any work: an existing file there, or a folder that cannot be
    made or written, is an error; ``create`` makes the folder."""
    if path.exists() and not path.is_dir():
        raise ValueError(f"--out {path} is a file, not a folder: choose a folder to write into")
    base = path
    while not base.exists() and base != base.parent:
        base = base.parent
    if not base.is_dir() or not os.access(base, os.W_OK | os.X_OK):
        raise ValueError(f"cannot write into {path}: {base} is not a writable folder")
    if create:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ValueError(f"cannot create the output folder {path}: {exc.strerror or exc}") from None
    return path
