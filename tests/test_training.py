from pathlib import Path

import numpy as np
import pytest
import torch

from napari_icmformer.checkpoints import load_model
from napari_icmformer.clicking import (
    first_eval_click,
    next_eval_click,
    sample_error_click,
    sample_initial_points,
)
from napari_icmformer.data import Sample
from napari_icmformer.training.dataset import ObjectPool
from napari_icmformer.training.trainer import TrainConfig, Trainer
from src_models import NormalizedFocalLoss
from tests.conftest import TINY


def test_nfl_matches_hand_computation():
    logits = torch.tensor([[[[0.0, 2.0], [-1.0, 3.0]]]])
    target = torch.tensor([[[[1.0, 0.0], [0.0, -1.0]]]])  # last pixel ignored
    p = torch.sigmoid(logits).flatten()[:3]
    pt = torch.stack([p[0], 1 - p[1], 1 - p[2]])
    beta = (1 - pt) ** 2
    scale = 3 / beta.sum()
    expected = (-0.5 * beta * scale * torch.log(pt)).sum() / 3
    got = NormalizedFocalLoss(alpha=0.5, gamma=2)(logits, target)
    assert got == pytest.approx(float(expected), rel=1e-5)


def test_initial_points_respect_the_mask():
    rng = np.random.default_rng(0)
    mask = np.zeros((80, 90), bool)
    mask[20:50, 30:70] = True
    for _ in range(200):
        pts = sample_initial_points(mask, rng)
        ys, xs, labels = pts[:, 0].astype(int), pts[:, 1].astype(int), pts[:, 2]
        assert labels[0] == 1
        assert mask[ys[labels == 1], xs[labels == 1]].all()
        assert not mask[ys[labels == 0], xs[labels == 0]].any()


def test_error_click_sign_and_place():
    rng = np.random.default_rng(1)
    gt = np.zeros((50, 50), bool)
    gt[10:40, 10:40] = True
    pred = gt.copy()
    pred[10:40, 10:20] = False  # a false-negative strip
    for _ in range(50):
        y, x, label = sample_error_click(pred, gt, rng)
        assert label == 1 and gt[int(y), int(x)] and not pred[int(y), int(x)]
    assert sample_error_click(gt, gt, rng) is None


def test_eval_clicker_first_and_next_click():
    gt = np.zeros((41, 61), bool)
    gt[10:31, 20:41] = True  # 21 x 21 square, centre (20, 30)
    c = first_eval_click(gt)
    assert (c.y, c.x, c.positive) == (20, 30, True)
    pred = gt.copy()
    pred[0:5, 0:61] = True  # a false-positive band larger than any FN
    n = next_eval_click(pred, gt)
    assert not n.positive and n.y < 5


def _synthetic_pool(n: int = 6) -> ObjectPool:
    rng = np.random.default_rng(0)
    pool = ObjectPool(max_side=96)
    for i in range(n):
        img = (rng.random((96, 96, 3)) * 60).astype(np.uint8)
        m = np.zeros((96, 96), bool)
        y, x = rng.integers(20, 60, 2)
        m[y:y + 24, x:x + 24] = True
        img[m] = 220
        pool.add_sample(Sample(f"s{i}", img, [m]), "synthetic")
    return pool


def _tiny_cfg(tmp_path, iterations: int) -> TrainConfig:
    overrides = {k: v for k, v in TINY.items() if k != "img_size"}
    return TrainConfig(model="vit_tiny", model_overrides=overrides, img_size=96, iterations=iterations,
                       batch_size=2, out_dir=str(tmp_path / "run"), save_every=1, warmup=1, lr=1e-3)


def test_two_iterations_then_resume_continues_the_step_count(tmp_path):
    pool = _synthetic_pool()
    trainer = Trainer(_tiny_cfg(tmp_path, 2), pool)
    path = trainer.fit()
    assert trainer.step == 2
    model = load_model(path)
    assert model.checkpoint_extra["step"] == 2
    resumed = Trainer(_tiny_cfg(tmp_path, 4), pool)
    resumed.resume()
    assert resumed.step == 2
    for k, v in model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[k], v)
    resumed.fit()
    assert resumed.step == 4
    lines = (tmp_path / "run" / "log.csv").read_text().strip().splitlines()
    assert [int(line.split(",")[0]) for line in lines[1:]] == [1, 2, 3, 4]


def test_resume_and_data_workers_train_exactly_the_uninterrupted_run(tmp_path):
    """Batches are drawn per step (StepBatches): a run stopped at step 2 and resumed ends with the
    very same weights, and a DataLoader worker process prepares the same batches as the training
    process (up to float rounding, which may differ with the thread count)."""
    pool = _synthetic_pool()

    def weights(trainer):
        return {k: v.clone() for k, v in trainer.model.state_dict().items()}

    straight = Trainer(_tiny_cfg(tmp_path / "a", 4), pool)
    straight.fit()
    half = Trainer(_tiny_cfg(tmp_path / "b", 4), pool)
    half.train_step()
    half.train_step()
    half.save()
    resumed = Trainer(_tiny_cfg(tmp_path / "b", 4), pool)
    resumed.resume()
    resumed.fit()
    first, second = weights(straight), weights(resumed)
    assert all(torch.equal(first[k], second[k]) for k in first)
    here = [b for _, b in zip(range(3), straight.batches(5), strict=False)]
    cfg = _tiny_cfg(tmp_path / "c", 4)
    cfg.workers = 1
    worked = Trainer(cfg, pool)
    there = [b for _, b in zip(range(3), worked.batches(5), strict=False)]
    for (img_a, mask_a, pts_a), (img_b, mask_b, pts_b) in zip(here, there, strict=True):
        assert torch.allclose(img_a, img_b, atol=1e-5) and torch.equal(pts_a, pts_b)
        assert (mask_a != mask_b).float().mean() < 1e-3
    other = Trainer(_tiny_cfg(tmp_path / "d", 4), pool)
    other.cfg.seed = 1
    assert not torch.equal(next(iter(other.batches(5)))[0], here[0][0])


@pytest.mark.slow
def test_loss_decreases_on_a_learnable_task(tmp_path):
    torch.manual_seed(0)
    trainer = Trainer(_tiny_cfg(tmp_path, 40), _synthetic_pool(12))
    trainer.cfg.max_iter_clicks = 0
    losses = [trainer.train_step() for _ in range(40)]
    assert np.mean(losses[-8:]) < 0.8 * np.mean(losses[:8])


def test_pool_from_instance_labels_keeps_every_object_box():
    from napari_icmformer.data.readers import instance_labels  # noqa: PLC0415

    labels = np.zeros((40, 50), np.uint16)
    labels[2:12, 3:15] = 1
    labels[20:35, 30:48] = 7
    masks, _ = instance_labels(labels)
    assert len(masks) == 2 and masks[1].sum() == 15 * 18
    pool = ObjectPool(max_side=100, min_area=10)
    pool.add_sample(Sample("lab", np.zeros((40, 50, 3), np.uint8), masks), "t")
    assert [o.box for o in pool.objects] == [(2, 3, 12, 15), (20, 30, 35, 48)]
    assert all(o.crop.all() for o in pool.objects)
    np.testing.assert_array_equal(pool.full_mask(pool.objects[1]), labels == 7)


def _toy_folder_and_config(tmp_path):
    import yaml  # noqa: PLC0415
    from PIL import Image  # noqa: PLC0415

    root = tmp_path / "toy"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(3):
        img = np.zeros((64, 64, 3), np.uint8)
        img[10 + i:40 + i, 12:44] = 200
        m = (img[..., 0] > 0).astype(np.uint8) * 255
        Image.fromarray(img).save(root / "images" / f"t{i}.png")
        Image.fromarray(m).save(root / "masks" / f"t{i}.png")
    cfg = tmp_path / "cfg.yaml"
    overrides = {k: v for k, v in TINY.items() if k != "img_size"}
    cfg.write_text(yaml.safe_dump({"model_overrides": {k: list(v) if isinstance(v, tuple) else v
                                                       for k, v in overrides.items()},
                                   "img_size": 96, "batch_size": 2, "warmup": 1}))
    return root, cfg


def test_train_cli_with_yaml_config_and_resume(tmp_path):
    from napari_icmformer.cli.train import main as train_main  # noqa: PLC0415

    root, cfg = _toy_folder_and_config(tmp_path)
    out = tmp_path / "run"
    args = ["--config", str(cfg), "--datasets", str(root), "--iterations", "2", "--out-dir", str(out)]
    assert train_main(args) == 0
    assert load_model(out / "last.pt").checkpoint_extra["step"] == 2
    assert train_main([*args[:-4], "--iterations", "3", "--out-dir", str(out), "--resume"]) == 0
    assert load_model(out / "last.pt").checkpoint_extra["step"] == 3


def test_validation_writes_val_csv_and_best_checkpoint(tmp_path):
    from PIL import Image  # noqa: PLC0415

    root = tmp_path / "dev"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(2):
        img = np.zeros((64, 64, 3), np.uint8)
        img[10 + i:40 + i, 12:44] = 200
        Image.fromarray(img).save(root / "images" / f"v{i}.png")
        Image.fromarray((img[..., 0] > 0).astype(np.uint8) * 255).save(root / "masks" / f"v{i}.png")
    cfg = _tiny_cfg(tmp_path, 2)
    cfg.val_dataset, cfg.val_every, cfg.val_max_clicks, cfg.val_min_area = str(root), 1, 3, 10
    trainer = Trainer(cfg, _synthetic_pool())
    assert len(trainer.validation.objects) == 2
    trainer.fit()
    rows = (tmp_path / "run" / "val.csv").read_text().strip().splitlines()
    assert rows[0].split(",")[:3] == ["step", "NoC@85", "NoC@90"]
    assert [int(r.split(",")[0]) for r in rows[1:]] == [1, 2]
    best = load_model(tmp_path / "run" / "best.pt")
    assert best.checkpoint_extra["validation"]["NoC@85"] == trainer.best_noc
    assert 1 <= trainer.best_noc <= 3


def test_validation_refuses_a_benchmark():
    from napari_icmformer.training.validation import ValidationSet  # noqa: PLC0415

    with pytest.raises(ValueError, match="benchmark"):
        ValidationSet.from_dataset("GrabCut", "/nonexistent", 5, 96, 10)


@pytest.mark.slow
def test_torchrun_two_cpu_processes_with_gloo(tmp_path):
    """The same trainer under torchrun: 2 processes, gloo, DDP keeps the replicas identical."""
    import os  # noqa: PLC0415
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    root, cfg = _toy_folder_and_config(tmp_path)
    out = tmp_path / "ddp"
    worker = Path(__file__).with_name("ddp_worker.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(worker.parents[1])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(worker),
           "--config", str(cfg), "--datasets", str(root), "--iterations", "2", "--out-dir", str(out),
           "--threads", "1"]
    proc = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [(out / f"rank{r}.txt").read_text().split() for r in (0, 1)]
    assert ranks[0][0] == ranks[1][0] == "2"
    assert ranks[0][1] == ranks[1][1]  # identical weights after 2 synchronised steps
    assert ranks[0][2] != ranks[1][2]  # ...trained on different samples
    ckpt = load_model(out / "last.pt")
    assert ckpt.checkpoint_extra["step"] == 2 and ckpt.checkpoint_extra["world_size"] == 2


def _instance_pool(n: int = 4) -> ObjectPool:
    rng = np.random.default_rng(1)
    pool = ObjectPool(max_side=96, min_area=4)
    for i in range(n):
        img = (rng.random((96, 96, 3)) * 50).astype(np.uint8)
        masks = []
        for y, x in ((10, 10), (10, 60), (60, 30), (55, 70)):
            m = np.zeros((96, 96), bool)
            m[y:y + 14, x:x + 14] = True
            img[m] = 210
            masks.append(m)
        pool.add_sample(Sample(f"m{i}", img, masks, [3, 3, 3, 5]), "synthetic")  # category 5 has one: no group
    return pool


def test_mois_groups_and_samples_follow_alg1():
    from napari_icmformer.training.mois_dataset import make_mois_sample, mois_groups  # noqa: PLC0415

    pool = _instance_pool(2)
    groups = mois_groups(pool)
    assert [len(g) for g in groups] == [3, 3]  # the lone category-5 object makes no group
    rng = np.random.default_rng(0)
    samples = [s for s in (make_mois_sample(pool, groups[0], 64, rng) for _ in range(20)) if s is not None]
    assert samples
    for _img, exemplar, target, ex_points, true_neg in samples:
        ex, tg = exemplar[0].numpy() > 0.5, target[0].numpy() > 0.5
        assert ex.any() and (ex <= tg).all() and tg.sum() > ex.sum()  # exemplar ⊂ target, others too
        for y, x, label in ex_points:
            assert ex[int(y), int(x)] == (label == 1)
        for y, x, _ in true_neg:
            assert not tg[int(y), int(x)]  # pseudo negatives (on other instances) never reach recall


def _two_kind_pool() -> ObjectPool:
    """Bright squares (dataset "squares") and dark discs (dataset "discs"), 3 of each per image."""
    rng = np.random.default_rng(2)
    pool = ObjectPool(max_side=96, min_area=4)
    yy, xx = np.mgrid[:96, :96]
    for name, value in (("squares", 220), ("discs", 20)):
        for i in range(2):
            img = (100 + rng.random((96, 96, 3)) * 30).astype(np.uint8)
            masks = []
            for y, x in ((20, 20), (20, 70), (70, 45)):
                m = (abs(yy - y) < 8) & (abs(xx - x) < 8) if name == "squares" else (yy - y) ** 2 + (xx - x) ** 2 < 64
                img[m] = value
                masks.append(m)
            pool.add_sample(Sample(f"{name}{i}", img, masks, [1, 1, 1]), name)
    return pool


def test_other_kind_pasted_in_and_the_exemplar_decides_the_target():
    from napari_icmformer.training.mois_dataset import PASTED, kind_of, make_mois_sample, mois_groups, paste_other_kind  # noqa: PLC0415

    pool = _two_kind_pool()
    groups = mois_groups(pool)
    squares = [g for g in groups if kind_of(pool, g)[0] == "squares"]
    discs = [g for g in groups if kind_of(pool, g)[0] == "discs"]
    assert len(squares) == len(discs) == 2
    rng = np.random.default_rng(0)
    # the pasted discs are labelled apart and drawn dark, at the size of the view's squares
    lab = np.zeros((64, 64), np.int64)
    lab[5:15, 5:15], lab[40:50, 40:50] = 1, 2
    img, out = paste_other_kind(pool, lab, torch.full((3, 64, 64), 0.5), discs[0], rng)
    pasted = out >= PASTED
    assert pasted.any() and (lab[~pasted] == out[~pasted]).all()
    assert float(img[0][pasted].mean()) < 0.3 and 30 < pasted.sum() / len(np.unique(out[pasted])) < 250
    kinds_seen = set()
    for _ in range(40):
        s = make_mois_sample(pool, squares[0], 64, rng, other=discs[1])
        if s is None:
            continue
        image, exemplar, target = s[0][0].numpy(), s[1][0].numpy() > 0.5, s[2][0].numpy() > 0.5
        assert exemplar.any() and (exemplar <= target).all() and target.sum() > exemplar.sum()
        # the target is one kind only: the exemplar's (bright squares or pasted dark discs)
        bg = np.median(image[~target])  # the noise background (colour jitter moves all of it)
        bright = image[target].mean() > bg
        kinds_seen.add(bright)
        step = (image - bg) if bright else (bg - image)
        assert (step[target] > 0.2).mean() > 0.8
        assert (~target & (step < -0.2)).sum() > 20  # the other kind is in view and is background
    assert kinds_seen == {True, False}  # both kinds get to be the target


def test_mois_trainer_draws_other_kind_batches(tmp_path, tiny_checkpoint):
    from napari_icmformer.training.mois_trainer import MoisTrainer  # noqa: PLC0415

    cfg = _tiny_cfg(tmp_path, 1)
    cfg.init_from, cfg.other_kinds = str(tiny_checkpoint), 1.0
    trainer = MoisTrainer(cfg, _two_kind_pool())
    groups = trainer.groups
    for k in range(len(groups)):  # the other kind's draw: the 2 groups of the other set
        p = trainer.other_kind_p[int(trainer.kind_of_group[k])]
        assert np.count_nonzero(p) == 2 and not p[trainer.kind_of_group == trainer.kind_of_group[k]].any()
    images, exemplars, targets, _, _ = trainer.draw_batch(np.random.default_rng(0))
    assert images.shape[0] == cfg.batch_size and (exemplars <= targets).all()
    with pytest.raises(ValueError, match="other_kinds"):
        TrainConfig(task="mois", other_kinds=1.5)


def test_msrc_classes_make_one_group_per_thing_and_none_for_stuff(tmp_path):
    import json  # noqa: PLC0415

    from PIL import Image  # noqa: PLC0415

    from napari_icmformer.data.readers import ClassedFolderDataset  # noqa: PLC0415
    from napari_icmformer.training.mois_dataset import mois_groups  # noqa: PLC0415

    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    labels = np.zeros((40, 60), np.uint16)
    for k, (y, x) in enumerate(((5, 5), (5, 25), (25, 5), (25, 25), (5, 45)), start=1):
        labels[y:y + 10, x:x + 10] = k
    labels[labels == 0] = 6  # the rest is grass
    Image.fromarray(np.full((40, 60, 3), 90, np.uint8)).save(tmp_path / "images" / "a.jpg")
    Image.fromarray(labels).save(tmp_path / "labels" / "a.png")
    classes = {"a": {"1": "cow", "2": "cow", "3": "sheep", "4": "sheep", "5": "cow", "6": "grass"}}
    (tmp_path / "classes.json").write_text(json.dumps(classes))
    ds = ClassedFolderDataset(tmp_path / "images", tmp_path / "labels", tmp_path / "classes.json",
                              ("cow", "sheep"))
    assert ds[0].categories == [1, 1, 2, 2, 1, 0]
    pool = ObjectPool(max_side=96, min_area=4)
    pool.add_sample(ds[0], "msrc")
    groups = mois_groups(pool)
    assert sorted(len(g) for g in groups) == [2, 3]  # cows, sheep; the grass is no target
    from napari_icmformer.mois import build_mois_targets  # noqa: PLC0415

    targets = build_mois_targets(ds[0], np.random.default_rng(0))  # evaluation: the same two targets
    assert sorted((t.category, len(t.instances)) for t in targets) == [(1, 3), (2, 2)]
    (tmp_path / "classes.json").write_text("[not json")
    with pytest.raises(ValueError, match="segment classes"):
        ClassedFolderDataset(tmp_path / "images", tmp_path / "labels", tmp_path / "classes.json", ("cow",))


def test_mois_training_runs_loads_and_resumes(tmp_path, tiny_checkpoint):
    from napari_icmformer.training.mois_trainer import MoisTrainer  # noqa: PLC0415

    cfg = _tiny_cfg(tmp_path, 2)
    cfg.init_from = str(tiny_checkpoint)  # both branches start from an iCMFormer
    trainer = MoisTrainer(cfg, _instance_pool())
    sois = load_model(tiny_checkpoint).state_dict()
    own = trainer.model.state_dict()
    key = "backbone.blocks.0.attn.qkv.weight"
    assert torch.equal(own[f"recall_branch.{key}"], sois[key])
    path = trainer.fit()
    model = load_model(path)
    assert model.cfg.arch == "icmformer_pp" and model.checkpoint_extra["step"] == 2
    resumed = MoisTrainer(_tiny_cfg(tmp_path, 3), _instance_pool())
    resumed.resume()
    assert resumed.step == 2
    resumed.fit()
    assert load_model(path).checkpoint_extra["step"] == 3


def _nuclei_folder(root, prefix: str, n: int = 2):
    from PIL import Image  # noqa: PLC0415

    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for i in range(n):
        lab = np.zeros((64, 64), np.uint16)
        lab[5:20, 5:20], lab[30:45, 10:25], lab[20:35, 40:55] = 1, 2, 3
        Image.fromarray(np.where(lab[..., None] > 0, 200, 20).astype(np.uint8).repeat(3, -1)).save(
            root / "images" / f"{prefix}{i}.png")
        Image.fromarray(lab).save(root / "labels" / f"{prefix}{i}.png")
    return root


def test_mois_validation_shares_its_targets_among_several_datasets(tmp_path):
    from napari_icmformer.training.mois_trainer import MoisTrainer  # noqa: PLC0415

    a = _nuclei_folder(tmp_path / "fluo", "f", 3)
    b = _nuclei_folder(tmp_path / "histo", "h", 3)
    cfg = _tiny_cfg(tmp_path, 1)
    cfg.val_dataset, cfg.val_objects, cfg.val_every = [str(a), str(b)], 4, 1
    trainer = MoisTrainer(cfg, _instance_pool())
    samples = [t.target.sample for t in trainer.validation.targets]
    assert len(samples) == 4  # 2 from each, not 4 from the first
    assert sum(s.startswith("f") for s in samples) == 2 and sum(s.startswith("h") for s in samples) == 2
    cfg.val_dataset = ["auto", str(a)]  # "auto" is not a dataset name
    with pytest.raises(ValueError, match="stand alone"):
        MoisTrainer(cfg, _instance_pool())


def test_train_cli_task_mois(tmp_path, tiny_checkpoint):
    from napari_icmformer.cli.train import main as train_main  # noqa: PLC0415

    root = _nuclei_folder(tmp_path / "nuclei", "n")
    out = tmp_path / "mois"
    args = ["--task", "mois", "--datasets", str(root), "--init-from", str(tiny_checkpoint), "--iterations", "1",
            "--batch-size", "2", "--warmup", "1", "--out-dir", str(out),
            "--val-dataset", str(root), "--val-every", "1", "--val-max-clicks", "2"]
    assert train_main(args) == 0
    assert load_model(out / "last.pt").cfg.arch == "icmformer_pp"
    # MOIS validation: the category target of each held-out image, golden exemplar + recall clicks
    rows = (out / "val.csv").read_text().strip().splitlines()
    assert rows[0].split(",") == ["step", "NoC@85", "NoC@90", "mIoU+@0", "mIoU+@5"]
    assert [int(r.split(",")[0]) for r in rows[1:]] == [0, 1]  # the init checkpoint's score first
    best = load_model(out / "best.pt")
    assert best.cfg.arch == "icmformer_pp"
    assert 0 <= best.checkpoint_extra["validation"]["mIoU+@0"] <= 1


def test_mois_validation_refuses_a_benchmark_and_needs_two_objects(tmp_path):
    from PIL import Image  # noqa: PLC0415

    from napari_icmformer.training.validation import MoisValidationSet  # noqa: PLC0415

    with pytest.raises(ValueError, match="benchmark"):
        MoisValidationSet.from_dataset("Berkeley", "/nonexistent", 5, 96)
    root = tmp_path / "single"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    lab = np.zeros((32, 32), np.uint16)
    lab[5:20, 5:20] = 1  # one object: no MOIS target
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(root / "images" / "a.png")
    Image.fromarray(lab).save(root / "labels" / "a.png")
    with pytest.raises(ValueError, match="two objects"):
        MoisValidationSet.from_dataset(str(root), None, 5, 96)


def test_copy_paste_keeps_the_target_honest():
    """Both kinds of paste: the mask only loses occluded pixels, the image changes."""
    from napari_icmformer.training.dataset import _view_tensors, copy_paste  # noqa: PLC0415

    pool = _synthetic_pool()
    changed = 0
    for seed in range(20):
        rng = np.random.default_rng(seed)
        img, m = _view_tensors(pool, pool.objects[0], 64, rng)
        m = (m > 0.5).float()
        out_img, out_m = copy_paste(pool, 0, img, m, 64, rng, 1.0)
        assert out_img.shape == img.shape and out_m.shape == m.shape
        assert (out_m <= m).all()  # a distractor may hide target pixels, never add any
        assert (out_m > 0.5).sum() >= 0.5 * (m > 0.5).sum()
        changed += int(not torch.equal(out_img, img))
    assert changed >= 10
    img, m = _view_tensors(pool, pool.objects[0], 64, np.random.default_rng(0))
    same = copy_paste(pool, 0, img, m, 64, np.random.default_rng(0), 0.0)
    assert same[0] is img and same[1] is m  # probability 0: untouched, no random draws


def test_resume_refuses_a_state_file_that_needs_pickled_code(tmp_path):
    import pickle  # noqa: PLC0415

    from napari_icmformer.checkpoints import CheckpointError  # noqa: PLC0415

    pool = _synthetic_pool()
    trainer = Trainer(_tiny_cfg(tmp_path, 1), pool)
    trainer.fit()
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    state = trainer.last_path.with_suffix(".state")
    torch.save({"optimizer": Evil(), "step": 1, "rng": {}}, state, pickle_protocol=pickle.DEFAULT_PROTOCOL)
    with pytest.raises(CheckpointError, match="safely"):
        Trainer(_tiny_cfg(tmp_path, 2), pool).resume()
    assert not marker.exists()


def test_resume_detects_weights_and_state_from_different_saves(tmp_path):
    from napari_icmformer.checkpoints import CheckpointError  # noqa: PLC0415

    pool = _synthetic_pool()
    trainer = Trainer(_tiny_cfg(tmp_path, 2), pool)
    trainer.fit()
    state_path = trainer.last_path.with_suffix(".state")
    state = torch.load(state_path, weights_only=True)
    state["step"] = 1
    torch.save(state, state_path)
    with pytest.raises(CheckpointError, match="do not belong together"):
        Trainer(_tiny_cfg(tmp_path, 3), pool).resume()


def test_train_cli_refuses_to_replace_a_run_and_a_resume_without_one(tmp_path, capsys):
    from napari_icmformer.cli.train import main as train_main  # noqa: PLC0415

    root, cfg = _toy_folder_and_config(tmp_path)
    out = tmp_path / "run"
    args = ["--config", str(cfg), "--datasets", str(root), "--iterations", "1", "--out-dir", str(out)]
    assert train_main([*args[:-2], "--out-dir", str(tmp_path / "none"), "--resume"]) == 2
    assert "no last.pt" in capsys.readouterr().err
    assert train_main(args) == 0
    before = (out / "last.pt").read_bytes()
    assert train_main(args) == 2
    assert "--resume" in capsys.readouterr().err
    assert (out / "last.pt").read_bytes() == before
    assert train_main([*args, "--overwrite"]) == 0


def test_task_is_a_config_field_that_a_yaml_sets_and_checkpoints_record(tmp_path):
    """`task: mois` in a YAML (or --task) picks iCMFormer++ training with the instance-annotated
    datasets and validation left on ('auto'); a bad task is refused before any data loads."""
    from napari_icmformer.cli.train import build_parser, config_from_args  # noqa: PLC0415
    from napari_icmformer.training.mois_trainer import MoisTrainer, make_trainer  # noqa: PLC0415
    from napari_icmformer.training.trainer import MOIS_DATASETS, SOIS_DATASETS  # noqa: PLC0415

    yaml_file = tmp_path / "mois.yaml"
    yaml_file.write_text("task: mois\n")
    cfg = config_from_args(build_parser().parse_args(["--config", str(yaml_file)]))
    assert cfg.task == "mois" and cfg.datasets == MOIS_DATASETS and cfg.val_dataset == "auto"
    assert TrainConfig().datasets == SOIS_DATASETS and TrainConfig(task="mois", datasets=["X"]).datasets == ["X"]
    with pytest.raises(ValueError, match="task must be"):
        TrainConfig(task="segment")
    pool = ObjectPool(max_side=96, min_area=4)
    img = np.zeros((96, 96, 3), np.uint8)
    masks = [np.zeros((96, 96), bool) for _ in range(2)]
    masks[0][5:20, 5:20] = True
    masks[1][30:50, 30:50] = True
    pool.add_sample(Sample(image=img, masks=masks, name="a", categories=[1, 1]), "tiny")
    out = tmp_path / "run"
    overrides = {k: v for k, v in TINY.items() if k != "img_size"}
    trainer = make_trainer(TrainConfig(task="mois", img_size=TINY["img_size"], iterations=1, batch_size=1,
                                       val_dataset=None, out_dir=str(out), model_overrides=overrides), pool)
    assert isinstance(trainer, MoisTrainer)
    trainer.save()
    assert load_model(out / "last.pt").checkpoint_extra["train_config"]["task"] == "mois"
