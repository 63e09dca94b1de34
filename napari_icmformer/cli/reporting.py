"""What ``icmformer-eval`` writes, for both tasks: the markdown table, summary.csv, the per-item
JSON and the curve, and the samples that were skipped. One bad sample never costs a run its
finished results: it is reported in one line, listed in the outputs and the exit code says so."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ._args import fail

PROG = "icmformer-eval"


@dataclass
class RunLog:
    """The samples a run skipped (with why) and whether it was interrupted."""

    skipped: list[dict] = field(default_factory=list)
    interrupted: bool = False
    empty: dict[str, str] = field(default_factory=dict)  # dataset -> why nothing in it was evaluated

    def skip(self, method: str, dataset: str, index: int, sample: str, exc: Exception) -> None:
        """Record a sample that could not be read or evaluated, and say so in one line."""
        self.skipped.append({"method": method, "dataset": dataset, "index": index, "sample": sample,
                             "error": " ".join(str(exc).split())})
        tqdm.write(f"{PROG}: skipped {dataset} sample {sample}: {self.skipped[-1]['error']}", file=sys.stderr)

    def nothing(self, dataset: str, why: str) -> None:
        """Record a dataset that gave nothing to evaluate (a row of NaN would say nothing)."""
        self.empty.setdefault(dataset, why)

    def notes(self) -> list[str]:
        """The lines under the table that say what is missing from it."""
        lines = [f"skipped: {s['method']} / {s['dataset']} sample {s['sample']}: {s['error']}" for s in self.skipped]
        lines += [f"nothing evaluated in {name}: {why}" for name, why in self.empty.items()]
        if self.interrupted:
            lines.append("interrupted: the rows above hold what was finished before the interruption")
        return [""] + lines if lines else []

    def exit_code(self, out: Path, listing: str) -> int:
        """0 when everything was evaluated, 130 when interrupted, 2 (one line) when samples were
        skipped or a dataset gave nothing to evaluate."""
        if self.interrupted:
            print(f"{PROG}: interrupted; what was finished is in {out}", file=sys.stderr)
            return 130
        problems = [f"{len(self.skipped)} sample(s) could not be evaluated and were skipped (listed in "
                    f"{out / listing})"] if self.skipped else []
        problems += [f"nothing evaluated in {name}: {why}" for name, why in self.empty.items()]
        if problems:
            return fail(PROG, "; ".join(problems) + f"; the results are in {out}")
        return 0


def markdown_table(rows: Sequence[dict], count: str, cols: Sequence[str],
                   fmt: Callable[[dict, str], str]) -> str:
    """``| method | dataset | <count> | cols... |``, one line per row; ``fmt(row, col)`` a cell."""
    lines = [f"| method | dataset | {count} | " + " | ".join(cols) + " |", "|" + "---|" * (3 + len(cols))]
    for r in rows:
        lines.append(f"| {r['method']} | {r['dataset']} | {r[count]} | " + " | ".join(fmt(r, c) for c in cols) + " |")
    return "\n".join(lines)


def plot_curves(rows: list[dict], max_clicks: int, path: Path, *, metric: str = "mIoU", first_k: int = 1,
                xlabel: str = "number of clicks", ylabel: str = "mIoU") -> None:
    """One line per method/dataset row: ``row[f"{metric}@{k}"]`` for k = first_k..max_clicks."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ks = np.arange(first_k, max_clicks + 1)
    for row in rows:
        ax.plot(ks, [row[f"{metric}@{k}"] for k in ks], marker="o", ms=3, label=f"{row['method']} / {row['dataset']}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_xticks(ks[::2] if max_clicks > 10 else ks)
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    if rows:  # a run that evaluated nothing still writes its (empty) plot, without a warning
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


@dataclass
class Report:
    """One run's results, ready to be written: ``rows`` are the table/CSV lines, ``items`` the
    per-object (SOIS) or per-target (MOIS) records stored under ``items_key`` in ``json_name``."""

    table: str
    notes: list[str]  # printed under the table (protocol, clicker), not written
    rows: list[dict]
    items_key: str
    items: list[dict]
    json_name: str
    curve: dict  # plot_curves keyword arguments, ``rows`` included
    fields: list[str] | None = None  # CSV columns; default: the keys of the rows in first-seen order


def write_report(out: Path, args, report: Report, log: RunLog) -> None:
    """table.md, summary.csv, the JSON and miou_vs_clicks.png in ``out``; the table is printed."""
    table = "\n".join([report.table, *log.notes()])
    print(table)
    for note in report.notes:
        print(note)
    (out / "table.md").write_text(table + "\n")
    fields = report.fields or list(dict.fromkeys(k for r in report.rows for k in r))
    with open(out / "summary.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(report.rows)
    (out / report.json_name).write_text(json.dumps(
        {"args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
         "summary": report.rows, report.items_key: report.items, "skipped": log.skipped,
         "empty": log.empty, "interrupted": log.interrupted}, indent=1))
    plot_curves(max_clicks=args.max_clicks, path=out / "miou_vs_clicks.png", **report.curve)
    print(f"wrote {out}/table.md, summary.csv, {report.json_name}, miou_vs_clicks.png")


def finish(out: Path, args, report: Report, log: RunLog) -> int:
    """Write the report and give the exit code; a folder that cannot be written is one line, exit 2."""
    try:
        write_report(out, args, report, log)
    except OSError as exc:
        return fail(PROG, f"cannot write the results to {out}: {exc.strerror or exc}")
    return log.exit_code(out, report.json_name)
