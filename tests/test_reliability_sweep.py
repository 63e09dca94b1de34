"""Issue 16 (c): an independent sweep of bad inputs over every entry point.

Each case must give one clear error: a console script exits 2 with one line ``prog: error: ...``
on stderr (no traceback); the Python API raises ``ValueError`` or one of our error classes
(``CheckpointError``; ``RuntimeError`` only where a call comes before its set-up call); and no
file that was there before is changed. ``python tests/test_reliability_sweep.py`` prints the
table of every case and the count of defects; pytest runs each case as a test.
"""

from __future__ import annotations

import contextlib
import io
import json
import pickle
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

if __name__ == "__main__":  # run as a script from the repository root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from napari_icmformer.annotator import Annotator, RecallAnnotator  # noqa: E402
from napari_icmformer.checkpoints import CheckpointError, load_model, save_checkpoint  # noqa: E402
from napari_icmformer.cli.evaluate import main as eval_main  # noqa: E402
from napari_icmformer.cli.segment import main as segment_main  # noqa: E402
from napari_icmformer.cli.train import main as train_main  # noqa: E402
from napari_icmformer.engine import Predictor, PredictorConfig  # noqa: E402
from napari_icmformer.exemplar import ExemplarPredictor, RecallConfig  # noqa: E402
from napari_icmformer.export import labels_to_coco, load_coco, save_coco  # noqa: E402
from napari_icmformer.image import to_rgb01  # noqa: E402
from napari_icmformer.object_files import write_objects  # noqa: E402
from napari_icmformer.training.trainer import TrainConfig  # noqa: E402
from src_models import Clicks, create_model  # noqa: E402

TINY = dict(img_size=96, depth=4, split_depth=2, global_blocks=(1, 3), window_size=4,
            embed_dim=48, num_heads=3, neck_dims=(16, 16, 32, 32), head_channels=16)
API_ERRORS = (ValueError, CheckpointError)


class _Started(Exception):
    """Raised instead of training: a bad config got as far as Trainer.fit."""


@dataclass
class Env:
    """Files every case may use, made once in a temporary folder."""

    root: Path
    files: dict[str, Path] = field(default_factory=dict)
    _sois: object = None
    _pp: object = None

    def __getitem__(self, name: str) -> Path:
        return self.files[name]

    def predictor(self) -> Predictor:
        if self._sois is None:
            self._sois = Predictor.from_checkpoint(self["sois.pt"], PredictorConfig(device="cpu"))
        return self._sois

    def recaller(self) -> ExemplarPredictor:
        if self._pp is None:
            self._pp = ExemplarPredictor.from_checkpoint(self["pp.pt"], RecallConfig(device="cpu", view=64))
        return self._pp


def make_env(root: Path) -> Env:
    env = Env(root)
    f = env.files
    torch.manual_seed(0)
    f["sois.pt"] = save_checkpoint(root / "sois.pt", create_model("vit_tiny", **TINY).eval())
    f["pp.pt"] = save_checkpoint(root / "pp.pt", create_model("icmformer_pp_vit_tiny", **TINY).eval())
    yy, xx = np.mgrid[:64, :64]
    disk = (yy - 32) ** 2 + (xx - 30) ** 2 <= 144
    img = np.where(disk[..., None], 210, 30).astype(np.uint8).repeat(3, -1)
    Image.fromarray(img).save(root / "img.png")
    f["img.png"] = root / "img.png"
    for name, data in (("empty.png", b""), ("text.png", b"hello, not an image\n"),
                       ("trunc.png", (root / "img.png").read_bytes()[:60]), ("zero.pt", b""),
                       ("text.pt", b"not a checkpoint at all"), ("bad.yaml", b"iterations: [1, 2\n"),
                       ("list.yaml", b"- 1\n- 2\n"), ("unknown.yaml", b"iterationz: 5\n"),
                       ("type.yaml", b"iterations: lots\n"),
                       ("overrides.yaml", b"model_overrides: {depth: -1}\n"), ("latin1.yaml", b"model: caf\xe9\n"),
                       ("notjson.json", b"{not json"), ("list.json", b"[1, 2, 3]"), ("keep.txt", b"keep me")):
        (root / name).write_bytes(data)
        f[name] = root / name
    tifffile.imwrite(root / "pages.tif", np.zeros((4, 64, 64), np.uint16), photometric="minisblack")
    f["pages.tif"] = root / "pages.tif"
    (root / "adir").mkdir()
    f["adir"] = root / "adir"
    # a checkpoint that runs code when unpickled: must be refused, never executed
    marker = root / "pwned"
    f["pwned"] = marker

    class Evil:
        def __reduce__(self):
            return (Path.write_text, (marker, "x"))

    with open(root / "evil.pt", "wb") as fh:
        pickle.dump({"state_dict": Evil()}, fh)
    f["evil.pt"] = root / "evil.pt"
    full = (root / "sois.pt").read_bytes()
    (root / "trunc.pt").write_bytes(full[: len(full) // 2])
    f["trunc.pt"] = root / "trunc.pt"
    torch.save({"format": "napari-icmformer", "version": 1, "config": {"arch": "icmformer", "depth": "x"},
                "state_dict": {}}, root / "badcfg.pt")
    f["badcfg.pt"] = root / "badcfg.pt"
    torch.save({"w": torch.zeros(3)}, root / "alien.pt")
    f["alien.pt"] = root / "alien.pt"
    # a toy dataset (images/ + masks/) and a MOIS one (images/ + labels/)
    for name, sub in (("Toy", "masks"), ("Nuc", "labels")):
        d = root / name
        (d / "images").mkdir(parents=True)
        (d / sub).mkdir()
        for i in range(2):
            Image.fromarray(img).save(d / "images" / f"s{i}.png")
            lab = np.zeros((64, 64), np.uint16)
            lab[disk] = 1
            lab[5:15, 5:15] = 2
            Image.fromarray(lab if sub == "labels" else (disk * 255).astype(np.uint8)).save(d / sub / f"s{i}.png")
        f[name] = d
    (root / "NoMasks" / "images").mkdir(parents=True)
    (root / "NoMasks" / "masks").mkdir()
    Image.fromarray(img).save(root / "NoMasks" / "images" / "a.png")
    f["NoMasks"] = root / "NoMasks"
    (root / "outs").mkdir()
    (root / "outs" / "img_mask.png").write_bytes(b"users mask")
    f["outs"] = root / "outs"
    (root / "run").mkdir()
    (root / "run" / "last.pt").write_bytes(b"users run")
    (root / "run" / "last.state").write_bytes(b"users state")
    f["run"] = root / "run"
    (root / "run_nostate").mkdir()
    (root / "run_nostate" / "last.pt").write_bytes(full)
    (root / "run_nostate" / "last.state").write_bytes(b"garbage state")
    f["run_nostate"] = root / "run_nostate"
    save_coco(root / "objects.json", np.pad(np.ones((4, 4), np.int32), 10))
    f["objects.json"] = root / "objects.json"
    # a PNG whose header claims 100000 x 100000 pixels (a decompression bomb)
    (root / "bomb.png").write_bytes(_png_header(100_000, 100_000))
    f["bomb.png"] = root / "bomb.png"
    (root / "junk.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    f["junk.safetensors"] = root / "junk.safetensors"
    import zipfile  # noqa: PLC0415

    with zipfile.ZipFile(root / "zip.pt", "w") as z:
        z.writestr("hello.txt", "a zip, not a checkpoint")
    f["zip.pt"] = root / "zip.pt"
    # datasets that are bad as a whole or in part
    for name, fill in (("EmptyMasks", 0), ("BadMask", None)):
        d = root / name
        (d / "images").mkdir(parents=True)
        (d / "masks").mkdir()
        for i in range(2):
            Image.fromarray(img).save(d / "images" / f"s{i}.png")
            if fill is None and i == 1:
                (d / "masks" / f"s{i}.png").write_bytes(b"broken mask")
            else:
                Image.fromarray(np.zeros((64, 64), np.uint8) if fill == 0 else (disk * 255).astype(np.uint8)).save(
                    d / "masks" / f"s{i}.png")
        f[name] = d
    (root / "coco").mkdir()
    coco = _coco([[10, 10, 30, 10, 30, 30, 10, 30]])
    coco["images"][0].update(file_name="missing.png", height=64, width=64)
    (root / "coco" / "ann.json").write_text(json.dumps(coco))
    f["coco_missing_image"] = root / "coco" / "ann.json"
    return env


def _png_header(w: int, h: int) -> bytes:
    import struct  # noqa: PLC0415
    import zlib  # noqa: PLC0415

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) + \
        chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")


@dataclass
class Case:
    name: str
    run: Callable[[Env], object]  # a CLI case returns its argv and names its program
    prog: str | None = None  # icmformer-segment / -eval / -train: a console script
    keep: tuple[str, ...] = ()  # files (env keys) that must not change
    allow: tuple[type, ...] = API_ERRORS
    known: str | None = None  # a defect found, reported and not fixed here (the test is a strict xfail)


CLIS = {"icmformer-segment": segment_main, "icmformer-eval": eval_main, "icmformer-train": train_main}


def check(case: Case, env: Env) -> str | None:
    """None when the case gives one clear error; else what went wrong."""
    before = {k: env[k].read_bytes() for k in case.keep}
    problem = _run(case, env)
    for k, data in before.items():
        if not env[k].exists() or env[k].read_bytes() != data:
            problem = (problem + "; " if problem else "") + f"{k} was changed"
    if env["pwned"].exists():
        problem = (problem + "; " if problem else "") + "unpickled code ran"
    return problem


def _run(case: Case, env: Env) -> str | None:
    if case.prog is None:
        try:
            case.run(env)
        except case.allow as exc:
            text = str(exc).strip()
            return None if text and "\n" not in text else f"unclear message {text!r}"
        except Exception as exc:  # noqa: BLE001 - this is what the sweep looks for
            return f"raised {type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
        return "accepted without an error"
    argv = [str(a) for a in case.run(env)]
    err, out = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            rc = CLIS[case.prog](argv)
    except SystemExit as exc:
        rc = exc.code
    except _Started:
        return "training started"
    except Exception as exc:  # noqa: BLE001
        return f"traceback {type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
    lines = [ln for ln in err.getvalue().splitlines() if ln.strip() and not ln.lstrip().startswith(
        ("warnings.warn", "UserWarning", "return func"))]
    lines = [ln for ln in lines if "Warning" not in ln and "it/s]" not in ln and "%|" not in ln]  # tqdm
    lines = [ln for ln in lines if not ln.startswith(f"{case.prog}: skipped ")]  # one line per skipped sample
    if rc != 2:
        return f"exit code {rc}: {' '.join(lines)[:200]}"
    if len(lines) != 1 or not lines[0].startswith(f"{case.prog}: error: "):
        return f"not one error line: {lines!r}"[:300]
    return None


def _api(name, fn, allow=API_ERRORS, keep=()):
    return Case(name, fn, None, keep, allow)


def _cli(prog, name, argv, keep=()):
    return Case(name, argv, prog, keep)


def _with_defaults(argv: list, defaults: dict) -> list:
    """``argv`` plus each default flag the case does not set itself."""
    given = {str(a) for a in argv}
    return [*argv, *[v for k, vs in defaults.items() if k not in given for v in (k, *vs)]]


def _seg(name, argv, keep=()):
    return _cli("icmformer-segment", name, lambda e: _with_defaults(argv(e), {
        "--checkpoint": [e["sois.pt"]], "--device": ["cpu"], "--out": [e.root / "so"]}), keep)


def _eval(name, argv, keep=()):
    return _cli("icmformer-eval", name, lambda e: _with_defaults(argv(e), {
        "--device": ["cpu"], "--max-clicks": ["2"], "--out": [e.root / "eo"]}), keep)


def _train(name, argv, keep=()):
    def args(e):
        small = {} if "--config" in map(str, argv(e)) else {
            "--iterations": ["1"], "--batch-size": ["1"], "--img-size": ["96"], "--device": ["cpu"]}
        return _with_defaults(argv(e), {"--out-dir": [e.root / "to"], "--datasets": [e["Toy"]],
                                        "--val-dataset": ["none"], **small})
    return _cli("icmformer-train", name, args, keep)


def _pred(e, image=None):
    p = e.predictor()
    p.set_image(e["img.png"] and np.asarray(Image.open(e["img.png"])) if image is None else image)
    return p


def _rec(e, mask=None):
    r = e.recaller()
    r.set_image(np.asarray(Image.open(e["img.png"])))
    if mask is not None:
        r.set_exemplar(mask)
    return r


def _disk_mask():
    yy, xx = np.mgrid[:64, :64]
    return (yy - 32) ** 2 + (xx - 30) ** 2 <= 144


def _full_uint8(e):
    ann = Annotator((8, 8), objects=np.zeros((8, 8), np.uint8), next_id=lambda: 256)
    ann.apply(ann.add_click(3, 3), np.ones((8, 8), np.float32))
    ann.commit()


def _big_id(value, dtype=np.int64):
    a = np.zeros((4, 4), dtype)
    a[1, 1] = value
    return a


def _coco(segmentation, label_id=None):
    ann = {"id": 1, "image_id": 1, "category_id": 1, "segmentation": segmentation, "iscrowd": 0}
    if label_id is not None:
        ann["label_id"] = label_id
    return {"images": [{"id": 1, "height": 8, "width": 8, "file_name": "a"}], "annotations": [ann],
            "categories": [{"id": 1, "name": "o"}]}


def _json(e, data) -> Path:
    path = e.root / f"case{abs(hash(json.dumps(data, sort_keys=True)))}.json"
    path.write_text(json.dumps(data))
    return path


def _napari_write(path: Path, data: np.ndarray):
    from napari_icmformer.export import write_labels_coco  # noqa: PLC0415

    return write_labels_coco(str(path), data, {"name": "objects"})


def _undo_nothing():
    """Undo on a fresh annotator says there is nothing to undo (None), it does not fail."""
    if Annotator((8, 8)).undo() is None:
        raise ValueError("nothing to undo")


def _read_layers(path: Path):
    from napari_icmformer.export import get_coco_reader  # noqa: PLC0415

    reader = get_coco_reader(str(path))
    if reader is None:
        raise ValueError("the reader declined the file")  # napari then says it has no reader: fine
    return reader(str(path))


ONE = Clicks().add(32, 30)

CASES: list[Case] = [
    # -- images (Python API) ---------------------------------------------------------------
    *[_api(f"to_rgb01 {n}", lambda e, a=a: to_rgb01(a)) for n, a in [
        ("None", None), ("string", "abc"), ("1-D", np.zeros(10)), ("4-D", np.zeros((2, 2, 8, 8))),
        ("2 channels", np.zeros((8, 8, 2))), ("5 channels", np.zeros((8, 8, 5))),
        ("complex", np.zeros((8, 8), complex)), ("object", np.array([[1, None]], dtype=object)),
        ("NaN", np.full((8, 8), np.nan)), ("inf", np.full((8, 8), np.inf)), ("empty", np.zeros((0, 0))),
        ("1x1", np.zeros((1, 1))), ("4-slice stack", np.zeros((4, 32, 32), np.uint16)),
        ("ragged list", [[1, 2], [3]]), ("datetime", np.zeros((4, 4), "datetime64[s]")),
    ]],
    # -- Predictor (Python API) ------------------------------------------------------------
    _api("predict before set_image", lambda e: Predictor(e.predictor().model).predict(ONE),
         allow=(*API_ERRORS, RuntimeError)),
    *[_api(f"predict click {n}", lambda e, c=c: _pred(e).predict(Clicks().add(*c))) for n, c in [
        ("below the image", (64, 3)), ("left of the image", (3, -0.6)), ("NaN", (np.nan, 3)),
        ("inf", (3, np.inf)), ("huge", (1e300, 1e300))]],
    *[_api(f"predict prev_mask {n}", lambda e, m=m: _pred(e).predict(ONE, m)) for n, m in [
        ("wrong shape", np.zeros((10, 10))), ("NaN", np.full((64, 64), np.nan)),
        ("0/255 float", np.full((64, 64), 255.)),
        ("values 0..7", np.arange(64 * 64).reshape(64, 64) % 8), ("strings", np.full((64, 64), "a")),
        ("complex", np.zeros((64, 64), complex)), ("3-D", np.zeros((64, 64, 3)))]],
    _api("predict clicks not Clicks", lambda e: _pred(e).predict([(3, 3, True)]), allow=(*API_ERRORS, TypeError)),
    _api("PredictorConfig threshold 1.5", lambda e: PredictorConfig(threshold=1.5)),
    _api("PredictorConfig refine 'crf'", lambda e: PredictorConfig(refine="crf")),
    _api("Predictor device 'gpu0'", lambda e: Predictor(e.predictor().model, PredictorConfig(device="gpu0"))),
    _api("Predictor device cuda (none here)", lambda e: Predictor(e.predictor().model,
                                                                  PredictorConfig(device="cuda"))),
    _api("Predictor precision fp8", lambda e: Predictor(e.predictor().model, PredictorConfig(precision="fp8"))),
    _api("Predictor.from_checkpoint iCMFormer++ file", lambda e: Predictor.from_checkpoint(e["pp.pt"])),
    # -- ExemplarPredictor (Python API) ----------------------------------------------------
    _api("recall before set_image", lambda e: ExemplarPredictor(e.recaller().model).recall(Clicks()),
         allow=(*API_ERRORS, RuntimeError)),
    _api("recall before set_exemplar", lambda e: _rec(e).recall(Clicks()), allow=(*API_ERRORS, RuntimeError)),
    _api("set_exemplar empty mask", lambda e: _rec(e, np.zeros((64, 64), bool))),
    _api("set_exemplar wrong shape", lambda e: _rec(e, np.ones((10, 10), bool))),
    _api("set_exemplar whole image", lambda e: _rec(e, np.ones((64, 64), bool))),
    _api("set_exemplar float mask 0.3", lambda e: _rec(e, np.full((64, 64), 0.3))),
    _api("set_exemplar NaN mask", lambda e: _rec(e, np.full((64, 64), np.nan))),
    _api("recall click outside", lambda e: _rec(e, _disk_mask()).recall(Clicks().add(70, 3))),
    _api("recall prev_mask wrong shape", lambda e: _rec(e, _disk_mask()).recall(Clicks(), np.zeros((3, 3)))),
    _api("ExemplarPredictor.from_checkpoint iCMFormer file", lambda e: ExemplarPredictor.from_checkpoint(e["sois.pt"])),
    # -- Annotator ---------------------------------------------------------------------------
    _api("Annotator objects of another shape", lambda e: Annotator((8, 8), objects=np.zeros((4, 4), np.int32))),
    _api("Annotator click below", lambda e: Annotator((8, 8)).add_click(7.5, 1)),
    _api("Annotator click NaN", lambda e: Annotator((8, 8)).add_click(np.nan, 1)),
    _api("Annotator commit_labels wrong shape", lambda e: Annotator((8, 8)).commit_labels(np.ones((4, 4), int))),
    _api("Annotator commit_labels negative", lambda e: Annotator((8, 8)).commit_labels(-np.ones((8, 8), int))),
    _api("Annotator commit_labels float", lambda e: Annotator((8, 8)).commit_labels(np.full((8, 8), 1.5))),
    _api("Annotator uint8 objects at id 256", _full_uint8),
    _api("Annotator threshold 2", lambda e: Annotator((8, 8), threshold=2.0)),
    _api("Annotator shape (0, 5)", lambda e: Annotator((0, 5))),
    _api("RecallAnnotator click before start", lambda e: RecallAnnotator(Annotator((8, 8))).add_click(1, 1)),
    _api("RecallAnnotator start with no object", lambda e: RecallAnnotator(Annotator((8, 8))).start()),
    _api("RecallAnnotator start unknown id", lambda e: RecallAnnotator(Annotator((8, 8))).start(5)),
    # -- checkpoints -------------------------------------------------------------------------
    *[_api(f"load_model {n}", lambda e, n=n: load_model(e[n] if n in e.files else e.root / n)) for n in (
        "missing.pt", "adir", "zero.pt", "text.pt", "evil.pt", "trunc.pt", "badcfg.pt", "alien.pt", "img.png")],
    _api("load_model junk safetensors", lambda e: load_model(e["junk.safetensors"])),
    _api("load_model a zip that is no checkpoint", lambda e: load_model(e["zip.pt"])),
    _api("napari COCO reader on a bad RLE", lambda e: _read_layers(_json(e, _coco([{"size": [8, 8],
                                                                                     "counts": "\u00ff!!"}])))),
    _api("napari COCO reader on a polygon of strings", lambda e: _read_layers(_json(e, _coco([["a", "b", "c"]])))),
    _api("napari COCO reader, images without size", lambda e: _read_layers(_json(e, {
        "images": [{"id": 1}], "annotations": []}))),
    _api("predict prev_mask a list", lambda e: _pred(e).predict(ONE, [[0.5] * 64] * 63)),
    _api("to_rgb01 float64 beyond float32", lambda e: to_rgb01(np.array([[np.finfo(np.float64).max, 0],
                                                                       [0, -np.finfo(np.float64).max]]))),
    _api("load_model expect the other arch", lambda e: load_model(e["sois.pt"], expect_arch="icmformer_pp")),
    # -- export / import (COCO json, tif, png) -----------------------------------------------
    _api("save_coco over an existing file", lambda e: save_coco(e["objects.json"], np.ones((4, 4), int)),
         keep=("objects.json",)),
    _api("save_coco into a folder", lambda e: save_coco(e["adir"], np.ones((4, 4), int))),
    _api("labels_to_coco float labels", lambda e: labels_to_coco(np.full((4, 4), 1.5))),
    _api("labels_to_coco negative", lambda e: labels_to_coco(-np.ones((4, 4), int))),
    _api("labels_to_coco 1-D", lambda e: labels_to_coco(np.ones(4, int))),
    _api("labels_to_coco one pixel of id 2**40", lambda e: labels_to_coco(_big_id(2**40))),
    _api("labels_to_coco uint64 id 2**63", lambda e: labels_to_coco(_big_id(2**63, np.uint64))),
    *[_api(f"load_coco {n}", lambda e, n=n: load_coco(e[n] if n in e.files else e.root / n)) for n in (
        "missing.json", "adir", "notjson.json", "list.json", "img.png", "empty.png")],
    *[_api(f"load_coco {n}", lambda e, d=d: load_coco(_json(e, d))) for n, d in [
        ("no annotations key", {"images": []}),
        ("height a string", {"images": [{"id": 1, "height": "8", "width": 8}], "annotations": []}),
        ("negative RLE counts", _coco([{"size": [8, 8], "counts": [10, -5, 59]}])),
        ("RLE size mismatch", _coco([{"size": [9, 8], "counts": [72]}])),
        ("polygon at 1e12", _coco([[0, 0, 1e12, 0, 1e12, 1e12]])),
        ("annotation of an unknown image", {**_coco([[0, 0, 4, 0, 4, 4]]), "images": [
            {"id": 7, "height": 8, "width": 8}]}),
        ("label_id 0", _coco([[0, 0, 4, 0, 4, 4]], label_id=0)),
        ("image 0 x 0", {"images": [{"id": 1, "height": 0, "width": 0}], "annotations": []}),
        ("image 1e6 x 1e6", {"images": [{"id": 1, "height": 10**6, "width": 10**6}], "annotations": []}),
        ("segmentation a number", _coco(5)),
    ]],
    *[_api(f"write_objects {n}", lambda e, a=a, n=n, s=s: write_objects(e.root / f"w{abs(hash(n))}{s}", a, "img"))
      for n, a, s in [
        (".png ids above 65535", _big_id(70000), ".png"), (".png stack", np.ones((2, 4, 4), int), ".png"),
        (".tif float labels", np.full((4, 4), 1.7), ".tif"), (".tif negative labels", -np.ones((4, 4), int), ".tif"),
        (".png float labels", np.full((4, 4), 1.7), ".png"), (".tif NaN labels", np.full((4, 4), np.nan), ".tif"),
        (".jpg", np.ones((4, 4), int), ".jpg"), (".tif 1-D labels", np.ones(4, int), ".tif")]],
    _api("napari writer float labels", lambda e: _napari_write(e.root / "nw.json", np.full((4, 4), 0.5))),
    _api("napari writer into a folder", lambda e: _napari_write(e["adir"], np.ones((4, 4), int))),
    _api("napari writer 1-D labels", lambda e: _napari_write(e.root / "nw1.json", np.ones(4, int))),
    _api("load_coco stack slices of two lengths", lambda e: load_coco(_json(e, {
        "images": [{"id": 1, "height": 4, "width": 4, "slice": [0]}, {"id": 2, "height": 4, "width": 4,
                                                                     "slice": [0, 1]}], "annotations": []}))),
    _api("load_coco slice index -1", lambda e: load_coco(_json(e, {
        "images": [{"id": 1, "height": 4, "width": 4, "slice": [-1]}], "annotations": []}))),
    _api("Annotator undo with nothing done", lambda e: _undo_nothing()),
    _api("write_objects over an existing file", lambda e: write_objects(e["objects.json"], np.ones((4, 4), int), "x"),
         allow=(*API_ERRORS, FileExistsError), keep=("objects.json",)),
    _api("write_objects into a missing folder", lambda e: write_objects(e.root / "nope" / "a.tif",
                                                                        np.ones((4, 4), int), "x")),
    # -- training config -------------------------------------------------------------------
    *[_api(f"TrainConfig {k}={v!r}", lambda e, k=k, v=v: TrainConfig(**{k: v})) for k, v in [
        ("iterations", -3), ("lr", -1.0), ("datasets", [""]), ("val_dataset", ""), ("max_side", 10**9),
        ("weight_decay", float("inf"))]],
    *[_train(f"--{k} {v}", lambda e, k=k, v=v: [f"--{k}", v]) for k, v in [
        ("img-size", "33"), ("model", "vit_gigantic"), ("device", "gpu"), ("device", "cuda"), ("batch-size", "-1"),
        ("threads", "abc")]],
    _train("--config model_overrides depth -1", lambda e: ["--config", e["overrides.yaml"]]),
    # -- icmformer-segment -----------------------------------------------------------------
    _seg("missing image", lambda e: [e.root / "nope.png", "--click", "3,3"]),
    _seg("image is a folder", lambda e: [e["adir"], "--click", "3,3"]),
    _seg("0-byte png", lambda e: [e["empty.png"], "--click", "3,3"]),
    _seg("text as png", lambda e: [e["text.png"], "--click", "3,3"]),
    _seg("truncated png", lambda e: [e["trunc.png"], "--click", "3,3"]),
    _seg("4-page tif", lambda e: [e["pages.tif"], "--click", "3,3"]),
    _seg("click outside", lambda e: [e["img.png"], "--click", "99,3"]),
    _seg("click nan", lambda e: [e["img.png"], "--click", "nan,3"]),
    _seg("click with 3 numbers", lambda e: [e["img.png"], "--click", "1,2,3"]),
    _seg("only a negative click", lambda e: [e["img.png"], "--neg-click", "3,3"]),
    _seg("checkpoint corrupt", lambda e: [e["img.png"], "--click", "3,3", "--checkpoint", e["text.pt"]]),
    _seg("checkpoint is iCMFormer++", lambda e: [e["img.png"], "--click", "3,3", "--checkpoint", e["pp.pt"]]),
    _seg("checkpoint that runs code", lambda e: [e["img.png"], "--click", "3,3", "--checkpoint", e["evil.pt"]]),
    _seg("outputs exist", lambda e: [e["img.png"], "--click", "3,3", "--out", e["outs"]], keep=("outs/img_mask.png",)),
    _seg("--out is a file", lambda e: [e["img.png"], "--click", "3,3", "--out", e["keep.txt"]], keep=("keep.txt",)),
    _seg("--threshold 1", lambda e: [e["img.png"], "--click", "3,3", "--threshold", "1"]),
    _seg("--device bogus", lambda e: [e["img.png"], "--click", "3,3", "--device", "tpu"]),
    _seg("--clicks-json is a folder", lambda e: [e["img.png"], "--clicks-json", e["adir"]]),
    _seg("--clicks-json not json", lambda e: [e["img.png"], "--clicks-json", e["notjson.json"]]),
    _seg("--clicks-json list of numbers", lambda e: [e["img.png"], "--clicks-json", e["list.json"]]),
    _seg("unknown flag", lambda e: [e["img.png"], "--click", "3,3", "--zoom", "2"]),
    _seg("decompression bomb png", lambda e: [e["bomb.png"], "--click", "3,3"]),
    _seg("--out under a file", lambda e: [e["img.png"], "--click", "3,3", "--out", e["keep.txt"] / "sub"],
         keep=("keep.txt",)),
    _seg("checkpoint a zip", lambda e: [e["img.png"], "--click", "3,3", "--checkpoint", e["zip.pt"]]),
    _seg("checkpoint junk safetensors", lambda e: [e["img.png"], "--click", "3,3", "--checkpoint",
                                                   e["junk.safetensors"]]),
    _seg("--clicks-json empty file", lambda e: [e["img.png"], "--clicks-json", e["empty.png"]]),
    _seg("sample name that downloads", lambda e: ["cells3d", "--click", "3,3"]),
    # -- icmformer-eval ----------------------------------------------------------------------
    _eval("unknown dataset path", lambda e: ["--datasets", e.root / "nope"]),
    _eval("named dataset without --data-root", lambda e: ["--datasets", "GrabCut", "--data-root", ""]),
    _eval("named dataset, --data-root missing", lambda e: ["--datasets", "GrabCut", "--data-root", e.root / "nd"]),
    _eval("images without masks", lambda e: ["--datasets", e["NoMasks"]]),
    _eval("slice beyond the dataset", lambda e: ["--datasets", f"{e['Toy']}[5:9]"]),
    _eval("slice not numbers", lambda e: ["--datasets", f"{e['Toy']}[a:b]"]),
    _eval("COCO json broken", lambda e: ["--datasets", e["notjson.json"]]),
    _eval("COCO json a list", lambda e: ["--datasets", e["list.json"]]),
    _eval("--checkpoint corrupt", lambda e: ["--datasets", e["Toy"], "--checkpoint", e["trunc.pt"]]),
    _eval("--checkpoint runs code", lambda e: ["--datasets", e["Toy"], "--checkpoint", e["evil.pt"]]),
    _eval("--mois-checkpoint is iCMFormer", lambda e: ["--task", "mois", "--datasets", e["Nuc"], "--checkpoint",
                                                        e["sois.pt"], "--mois-checkpoint", e["sois.pt"]]),
    _eval("mois --checkpoint is iCMFormer++", lambda e: ["--task", "mois", "--datasets", e["Nuc"], "--checkpoint",
                                                          e["pp.pt"], "--mois-checkpoint", e["pp.pt"]]),
    _eval("--out is a file", lambda e: ["--datasets", e["Toy"], "--out", e["keep.txt"]], keep=("keep.txt",)),
    _eval("--max-clicks 0", lambda e: ["--datasets", e["Toy"], "--max-clicks", "0"]),
    _eval("--iou-thresholds nan", lambda e: ["--datasets", e["Toy"], "--iou-thresholds", "nan"]),
    _eval("--device bogus", lambda e: ["--datasets", e["Toy"], "--checkpoint", e["sois.pt"], "--device", "tpu"]),
    _eval("--graphcut-pairwise -1", lambda e: ["--datasets", e["Toy"], "--checkpoint", e["sois.pt"],
                                               "--graphcut-pairwise", "-1"]),
    _eval("--graphcut-band nan", lambda e: ["--datasets", e["Toy"], "--checkpoint", e["sois.pt"],
                                            "--graphcut-band", "nan"]),
    _eval("--mois-view 7", lambda e: ["--task", "mois", "--datasets", e["Nuc"], "--mois-view", "7"]),
    _eval("--task other", lambda e: ["--task", "both", "--datasets", e["Toy"]]),
    _eval("every mask empty", lambda e: ["--datasets", e["EmptyMasks"], "--method", "random-walker"]),
    _eval("one mask corrupt", lambda e: ["--datasets", e["BadMask"], "--method", "random-walker"]),
    _eval("COCO image file missing", lambda e: ["--datasets", e["coco_missing_image"], "--method", "random-walker"]),
    _eval("mois on single-object images", lambda e: ["--task", "mois", "--datasets", e["Toy"], "--checkpoint",
                                                     e["sois.pt"], "--mois-checkpoint", e["pp.pt"],
                                                     "--mois-view", "64", "--mois-mode", "additional"]),
    _eval("mois one mask corrupt", lambda e: ["--task", "mois", "--datasets", e["BadMask"], "--checkpoint",
                                              e["sois.pt"], "--mois-checkpoint", e["pp.pt"], "--mois-view", "64",
                                              "--mois-mode", "additional"]),
    _eval("--data-root is a file", lambda e: ["--datasets", "GrabCut", "--data-root", e["keep.txt"]],
          keep=("keep.txt",)),
    _eval("--out under a file", lambda e: ["--datasets", e["Toy"], "--out", e["keep.txt"] / "sub"], keep=("keep.txt",)),
    # -- icmformer-train ---------------------------------------------------------------------
    _train("--data-root is a file", lambda e: ["--datasets", "DSB2018", "--data-root", e["keep.txt"]],
           keep=("keep.txt",)),
    _train("dataset with no images", lambda e: ["--datasets", e["adir"]]),
    _train("--init-from is iCMFormer++ (sois task)", lambda e: ["--init-from", e["pp.pt"]]),
    _train("--init-from a zip", lambda e: ["--init-from", e["zip.pt"]]),
    _train("--max-side 1", lambda e: ["--max-side", "1"]),
    _train("--save-every -1", lambda e: ["--save-every", "-1"]),
    _train("--copy-paste 2", lambda e: ["--copy-paste", "2"]),
    _train("--limit-per-dataset 0", lambda e: ["--limit-per-dataset", "0"]),
    _train("--config empty file", lambda e: ["--config", e["empty.png"], "--iterations", "0"]),
    _train("--config missing", lambda e: ["--config", e.root / "nope.yaml"]),
    _train("--config a folder", lambda e: ["--config", e["adir"]]),
    _train("--config bad YAML", lambda e: ["--config", e["bad.yaml"]]),
    _train("--config a list", lambda e: ["--config", e["list.yaml"]]),
    _train("--config unknown key", lambda e: ["--config", e["unknown.yaml"]]),
    _train("--config wrong type", lambda e: ["--config", e["type.yaml"]]),
    _train("--config not UTF-8", lambda e: ["--config", e["latin1.yaml"]]),
    _train("--iterations 0", lambda e: ["--iterations", "0"]),
    _train("--iterations abc", lambda e: ["--iterations", "abc"]),
    _train("--lr nan", lambda e: ["--lr", "nan"]),
    _train("unknown dataset", lambda e: ["--datasets", "NoSuchSet", "--data-root", e.root, "--val-dataset", "none"]),
    _train("--data-root missing", lambda e: ["--datasets", "DSB2018", "--data-root", e.root / "nd"]),
    _train("--init-from corrupt", lambda e: ["--datasets", e["Toy"], "--init-from", e["text.pt"], "--val-dataset",
                                             "none"]),
    _train("--init-from runs code", lambda e: ["--datasets", e["Toy"], "--init-from", e["evil.pt"],
                                               "--val-dataset", "none"]),
    _train("--init-from missing", lambda e: ["--datasets", e["Toy"], "--init-from", e.root / "nope.pt",
                                             "--val-dataset", "none"]),
    _train("--resume without a run", lambda e: ["--resume", "--out-dir", e.root / "empty_run"]),
    _train("--resume with a corrupt state", lambda e: ["--resume", "--datasets", e["Toy"], "--val-dataset", "none",
                                                       "--out-dir", e["run_nostate"]], keep=("run_nostate/last.pt",)),
    _train("--out-dir holds a run", lambda e: ["--datasets", e["Toy"], "--out-dir", e["run"]],
           keep=("run/last.pt", "run/last.state")),
    _train("--out-dir is a file", lambda e: ["--datasets", e["Toy"], "--out-dir", e["keep.txt"], "--val-dataset",
                                             "none"], keep=("keep.txt",)),
    _train("--task other", lambda e: ["--task", "both"]),
    _train("--val-dataset unknown", lambda e: ["--datasets", e["Toy"], "--val-dataset", e.root / "nope"]),
]


def _keep_paths(env: Env) -> None:
    for c in CASES:
        for k in c.keep:
            if k not in env.files:
                env.files[k] = env.root / k


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    e = make_env(tmp_path_factory.mktemp("sweep"))
    _keep_paths(e)
    return e


@pytest.fixture(autouse=True)
def _no_training(monkeypatch):
    from napari_icmformer.training import mois_trainer, trainer  # noqa: PLC0415

    def started(self, *a, **k):
        raise _Started

    monkeypatch.setattr(trainer.Trainer, "fit", started)
    monkeypatch.setattr(mois_trainer.MoisTrainer, "fit", started)


@pytest.mark.parametrize("case", [pytest.param(c, marks=pytest.mark.xfail(reason=c.known, strict=True))
                                  if c.known else c for c in CASES],
                         ids=[f"{c.prog or 'api'}: {c.name}" for c in CASES])
def test_bad_input_gives_one_clear_error(case, env):
    problem = check(case, env)
    assert problem is None, problem


# -- the fixes the sweep asked for, beyond "one clear error" ----------------------------------
def test_sparse_object_ids_round_trip_without_a_slot_per_id():
    """find_objects keeps a slot per possible id: one object with id 2**31 - 1 asked for 16 GB."""
    from napari_icmformer.export import coco_to_labels  # noqa: PLC0415

    labels = np.zeros((30, 40), np.int64)
    labels[2:5, 3:9], labels[10:20, 20:25] = 2**31 - 1, 7
    data = labels_to_coco(labels)
    assert [a["label_id"] for a in data["annotations"]] == [7, 2**31 - 1]
    np.testing.assert_array_equal(coco_to_labels(data), labels)


def test_refused_labels_leave_no_file(tmp_path):
    for labels in (np.full((4, 4), 1.7), -np.ones((4, 4), int), np.ones(4, int)):
        with pytest.raises(ValueError):
            write_objects(tmp_path / "objects.tif", labels, "img")
    assert list(tmp_path.iterdir()) == []
    write_objects(tmp_path / "objects.tif", np.eye(4, dtype=bool), "img")  # a boolean mask is one object
    assert tifffile.imread(tmp_path / "objects.tif").max() == 1


def test_train_device_auto_and_config_errors_are_one_line(tmp_path, capsys):
    (tmp_path / "c.yaml").write_text("iterations: [1, 2\n")
    assert train_main(["--config", str(tmp_path / "c.yaml"), "--out-dir", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "not valid YAML" in err and "line 1" in err
    assert train_main(["--device", "auto", "--out-dir", str(tmp_path / "o")]) == 2
    assert "cpu, cuda" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def main() -> int:
    """The sweep as a table: every case, its outcome, and the count of defects."""
    from napari_icmformer.training import mois_trainer, trainer  # noqa: PLC0415

    def started(self, *a, **k):
        raise _Started

    trainer.Trainer.fit = mois_trainer.MoisTrainer.fit = started
    defects = []
    with tempfile.TemporaryDirectory() as tmp:
        env = make_env(Path(tmp))
        _keep_paths(env)
        for case in CASES:
            problem = check(case, env)
            print(f"{'ok ' if problem is None else 'BAD'} {case.prog or 'api'}: {case.name}"
                  + ("" if problem is None else f"  -> {problem}"), flush=True)
            if problem is not None:
                defects.append(case)
    known = sum(1 for c in defects if c.known)
    print(f"{len(CASES)} cases, {len(CASES) - len(defects)} one clear error, {len(defects)} defects "
          f"({known} known and reported)")
    return 1 if defects else 0


if __name__ == "__main__":
    raise SystemExit(main())
