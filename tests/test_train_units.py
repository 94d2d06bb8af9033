"""Training pieces on hand-made cases: labels, loss, crops and augmentations, pair sampling, optimiser, config."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lorat_plugin.model import build_model, get_config
from lorat_plugin.train.augment import hflip, three_augment
from lorat_plugin.train.config import ConfigError, DataSection, DatasetEntry, OptimSection, load_config, resolve_path
from lorat_plugin.train.data import StepBatchSampler, decode_frame
from lorat_plugin.geometry import normalize_images, template_mask
from lorat_plugin.train.labels import positive_cells
from lorat_plugin.train.loss import box_iou, generalized_iou, tracking_loss
from lorat_plugin.train.optim import WarmupCosine, build_optimizer, parameter_groups
from lorat_plugin.train.pairs import PairRecipe, jittered_search_transform, make_pair
from lorat_plugin.train.source import TrainingSource, compact, epoch_plan, sample_frames, select_sequences
from lorat_plugin.data import Sequence

from conftest import REPO, TINY

# ---- labels -----------------------------------------------------------------------------------------------------


def test_positive_cells_cover_every_cell_the_box_touches() -> None:
    # 56 px crop, 4 x 4 grid (stride 14): x 10..40 -> cells 0..2, y 20..30 -> cells 1..2
    mask = positive_cells(np.array([10.0, 20.0, 40.0, 30.0]), 56, 4)
    expected = np.zeros((4, 4), bool)
    expected[1:3, 0:3] = True
    np.testing.assert_array_equal(mask, expected)
    # An end exactly on a cell border does not reach into the next cell (end exclusive).
    mask = positive_cells(np.array([0.0, 0.0, 28.0, 14.0]), 56, 4)
    assert mask.sum() == 2 and mask[0, 0] and mask[0, 1]
    # The whole crop: every cell.
    assert positive_cells(np.array([0.0, 0.0, 56.0, 56.0]), 56, 4).all()
    # The reference's 224 px / 16 cells.
    assert positive_cells(np.array([100.0, 100.0, 124.0, 124.0]), 224, 16).sum() == 4  # cells 7..8 per axis


def test_template_mask_marks_target_tokens() -> None:
    mask = template_mask(np.array([14.0, 0.0, 28.0, 27.9]), 28, 2)
    assert mask.dtype == np.int64
    np.testing.assert_array_equal(mask, [[0, 1], [0, 1]])


# ---- loss ---------------------------------------------------------------------------------------------------------


def test_iou_and_giou_values() -> None:
    a = torch.tensor([[0.0, 0.0, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0], [0.0, 0.0, 1.0, 0.5]])
    gt = torch.tensor([[0.0, 0.0, 1.0, 0.5]]).expand(3, 4)
    torch.testing.assert_close(box_iou(a, gt), torch.tensor([0.5, 0.0, 1.0]))
    # (2): disjoint, union 0.75, enclosing box 1 -> GIoU = 0 - 0.25 / 1
    torch.testing.assert_close(generalized_iou(a, gt), torch.tensor([0.5, -0.25, 1.0]))
    far = generalized_iou(torch.tensor([[0.0, 0.0, 0.01, 0.01]]), torch.tensor([[0.99, 0.99, 1.0, 1.0]]))
    assert -1.0 < far.item() < -0.99


def _two_positive_case(logit: float):
    score = torch.full((1, 2, 2), logit, requires_grad=True)
    boxes = torch.zeros(1, 2, 2, 4)
    boxes[0, 0, 0] = torch.tensor([0.0, 0.0, 0.5, 0.5])  # IoU 0.5 with GT, GIoU 0.5
    boxes[0, 1, 1] = torch.tensor([0.5, 0.5, 1.0, 1.0])  # IoU 0, GIoU -0.25
    boxes.requires_grad_(True)
    positive = torch.zeros(1, 2, 2, dtype=torch.bool)
    positive[0, 0, 0] = positive[0, 1, 1] = True
    gt = torch.tensor([[0.0, 0.0, 1.0, 0.5]])
    return score, boxes, positive, gt


def test_loss_matches_hand_computation() -> None:
    logit = 0.7
    score, boxes, positive, gt = _two_positive_case(logit)
    total, parts = tracking_loss(score, boxes, positive, gt)
    softplus = math.log1p(math.exp(logit))
    # BCE(l, t) = softplus(l) - t*l; targets: 0.5 (IoU) at one positive, 0 elsewhere; divided by 2 positives.
    assert parts["cls"].item() == pytest.approx((4 * softplus - 0.5 * logit) / 2, rel=1e-6)
    assert parts["box"].item() == pytest.approx(((1 - 0.5) + (1 + 0.25)) / 2, rel=1e-6)
    assert total.item() == pytest.approx(parts["cls"].item() + parts["box"].item(), rel=1e-6)
    total.backward()
    # The IoU target carries no gradient into the boxes through the classification term: only GIoU moves them.
    assert boxes.grad[0, 0, 1].abs().sum() == 0 and boxes.grad[0, 0, 0].abs().sum() > 0
    # Hard targets (the ablation) and weights; a num_positive given from outside (the all-reduced mean).
    _, hard = tracking_loss(*_two_positive_case(logit), iou_aware=False)
    assert hard["cls"].item() == pytest.approx((4 * softplus - 2 * logit) / 2, rel=1e-6)
    weighted, _ = tracking_loss(*_two_positive_case(logit), cls_weight=2.0, box_weight=0.5,
                                num_positive=torch.tensor(4.0))
    assert weighted.item() == pytest.approx(2 * (4 * softplus - 0.5 * logit) / 4 + 0.5 * 1.75 / 4, rel=1e-6)
    # Clamped at one positive: an empty batch is not divided by zero.
    score, boxes, positive, gt = _two_positive_case(logit)
    empty, parts = tracking_loss(score, boxes, torch.zeros_like(positive), gt)
    assert parts["num_positive"].item() == 1.0 and empty.item() == pytest.approx(4 * softplus, rel=1e-6)


# ---- crops, augmentations, sampling --------------------------------------------------------------------------------


def _frame_with_target(box_xyxy, size=(160, 120), colour=(250, 20, 20)) -> torch.Tensor:
    w, h = size
    image = torch.full((3, h, w), 90, dtype=torch.uint8)
    x1, y1, x2, y2 = (int(v) for v in box_xyxy)
    image[:, y1:y2, x1:x2] = torch.tensor(colour, dtype=torch.uint8).view(3, 1, 1)
    return image


def test_hflip_moves_the_box_with_the_pixels() -> None:
    image = _frame_with_target((10, 5, 30, 25), size=(64, 32)).float()
    flipped, box = hflip(image, np.array([10.0, 5.0, 30.0, 25.0]))
    np.testing.assert_allclose(box, [34.0, 5.0, 54.0, 25.0])
    red = flipped[0] > 200
    ys, xs = np.nonzero(red.numpy())
    assert (xs.min(), xs.max() + 1, ys.min(), ys.max() + 1) == (34, 54, 5, 25)


def test_pairs_keep_boxes_on_the_target_through_jitter_and_flips() -> None:
    recipe = PairRecipe(template_size=28, search_size=56, template_grid=2, search_grid=4, template_factor=2.0,
                        search_factor=4.0, brightness=0.0, contrast=0.0, saturation=0.0, three_augment=False,
                        min_object_size=4.0)
    box = np.array([60.0, 40.0, 92.0, 72.0])
    frame = _frame_with_target(box)
    for seed in range(20):
        sample = make_pair(frame, box, frame, box, recipe, np.random.default_rng(seed))
        assert sample is not None
        x = sample["x"].float()
        x1, y1, x2, y2 = (sample["box"].numpy() * 56).tolist()
        inside = x[0, math.ceil(y1) + 1:int(y2) - 1, math.ceil(x1) + 1:int(x2) - 1]
        assert inside.numel() > 0 and (inside > 200).float().mean() > 0.95  # the box sits on the red target
        red = (x[0] > 200) & (x[1] < 60)
        assert red.sum() <= (x2 - x1 + 2) * (y2 - y1 + 2)  # and holds all of it
        assert sample["positive"].any() and sample["z_feat_mask"].sum() >= 1
        # The template is not jittered: the target sits in its centre half (area factor 2).
        z_red = (sample["z"][0].float() > 200) & (sample["z"][1].float() < 60)
        ys, xs = np.nonzero(z_red.numpy())
        assert 5 <= xs.mean() <= 23 and 5 <= ys.mean() <= 23
    assert sample["x"].dtype == torch.uint8 and sample["z_feat_mask"].dtype == torch.int64


def test_search_jitter_respects_min_size_and_can_fail() -> None:
    recipe = PairRecipe(template_size=112, search_size=224, template_grid=8, search_grid=16, template_factor=2.0,
                        search_factor=4.0)
    box = np.array([100.0, 100.0, 140.0, 160.0])
    rng = np.random.default_rng(0)
    scales = []
    for _ in range(200):
        scale, translation = jittered_search_transform(box, recipe, rng)
        out = np.clip(box * np.tile(scale, 2) + np.tile(translation, 2), 0, 224)
        assert (out[2:] - out[:2] >= 10).all()
        scales.append(scale)
    scales = np.array(scales)
    assert not np.allclose(scales[:, 0], scales[:, 1])  # independent per axis
    assert np.std(np.log(scales[:, 0])) == pytest.approx(0.25, rel=0.2)
    impossible = PairRecipe(**{**recipe.__dict__, "min_object_size": 500.0})
    assert jittered_search_transform(box, impossible, rng) is None


def test_three_augment_is_joint() -> None:
    images = [torch.rand(3, 20, 20), torch.rand(3, 30, 30)]
    for seed in range(6):
        z, x = three_augment(images, np.random.default_rng(seed))
        choice = int(np.random.default_rng(seed).integers(3))
        if choice == 0:
            assert torch.allclose(z[0], z[1]) and torch.allclose(x[0], x[2])
        elif choice == 1:
            assert torch.allclose(z, torch.where(images[0] >= 128 / 255, 1 - images[0], images[0]))
            assert torch.allclose(x, torch.where(images[1] >= 128 / 255, 1 - images[1], images[1]))
        else:
            assert z.std() < images[0].std() and x.std() < images[1].std()


def test_frame_pairs_stay_within_the_gap_among_visible_frames() -> None:
    valid = np.ones(400, bool)
    valid[150:250] = False
    rng = np.random.default_rng(0)
    for _ in range(500):
        z, x = sample_frames(valid, 100, rng)
        assert valid[z] and valid[x] and z != x and abs(z - x) <= 100
    isolated = np.zeros(300, bool)
    isolated[[10, 200]] = True
    assert all(z == x for z, x in (sample_frames(isolated, 100, rng) for _ in range(20)))  # same-frame fallback
    assert sample_frames(np.array([True]), 100, rng) == (0, 0)


def _sequences(n: int, prefix: str, length: int = 5) -> list[Sequence]:
    return [Sequence(f"{prefix}{i}", [Path(f"/d/{prefix}{i}/{k:08d}.jpg") for k in range(length)],
                     np.tile([1.0, 2.0, 3.0, 4.0], (length, 1))) for i in range(n)]


def test_epoch_plan_follows_weights_and_is_reproducible() -> None:
    source = TrainingSource([compact("a", 1.0, _sequences(3, "a")), compact("b", 3.0, _sequences(50, "b"))])
    datasets, videos = epoch_plan(source, 1000, seed=1, epoch=0)
    assert (datasets == 0).sum() == 250 and (datasets == 1).sum() == 750
    counts = np.bincount(videos[datasets == 0], minlength=3)
    assert counts.max() - counts.min() <= 1  # whole permutations: every video equally often
    again = epoch_plan(source, 1000, seed=1, epoch=0)
    assert np.array_equal(again[0], datasets) and np.array_equal(again[1], videos)
    assert not np.array_equal(epoch_plan(source, 1000, seed=1, epoch=1)[1], videos)


def test_tracks_sharing_frames_form_one_video_and_bad_tracks_are_dropped() -> None:
    image = [Path("/coco/train2017/000000000001.jpg")]
    objects = [Sequence(f"1_{k}", image, [[1.0, 1.0, 5.0 + k, 5.0]]) for k in range(3)]
    empty = Sequence("bad", image, [[1.0, 1.0, 0.0, 5.0]])
    other = Sequence("2_0", [Path("/coco/train2017/000000000002.jpg")], [[1.0, 1.0, 5.0, 5.0]])
    data = compact("coco", 1.0, objects + [empty, other])
    assert data.num_videos == 2 and data.num_tracks == 4
    assert data.frame_path(3, 0).endswith("000000000002.jpg")


def test_vot_train_split_file_selects_by_index_or_name(tmp_path: Path) -> None:
    split_root = tmp_path / "train"
    split_root.mkdir()
    names = [f"GOT-10k_Train_{i:06d}" for i in range(1, 6)]
    (split_root / "list.txt").write_text("\n".join(names) + "\n")
    sequences = _sequences(5, "x")
    for s, name in zip(sequences, names):
        s.name = name
    entry = DatasetEntry("got10k", str(tmp_path), "train")
    picked = select_sequences(sequences, [0, 3], entry, split_root, "data.datasets.0")
    assert [s.name for s in picked] == [names[0], names[3]]
    assert [s.name for s in select_sequences(sequences, [names[4]], entry, split_root, "w")] == [names[4]]
    with pytest.raises(ConfigError, match="index 9"):
        select_sequences(sequences, [9], entry, split_root, "data.datasets.0")


def test_batches_split_the_same_global_batch_over_ranks_and_accumulation() -> None:
    single = StepBatchSampler(global_batch=8, steps_per_epoch=2)
    single.set_epoch(3)
    ranks = [StepBatchSampler(global_batch=8, steps_per_epoch=2, world_size=2, rank=r, accumulation_steps=2)
             for r in range(2)]
    for r in ranks:
        r.set_epoch(3, start_step=1)
    step1 = sorted(k for r in ranks for batch in r for k in batch)
    assert step1 == list(list(single)[1]) and all(len(b) == 2 for r in ranks for b in r)
    assert all(epoch == 3 for epoch, _ in step1)


def test_decode_frame_reads_jpeg_and_png_and_names_bad_files(tmp_path: Path) -> None:
    from PIL import Image

    array = np.zeros((10, 12, 3), np.uint8)
    array[:, :6] = (200, 30, 40)
    Image.fromarray(array).save(tmp_path / "a.png")
    Image.fromarray(array).convert("L").save(tmp_path / "g.jpg", quality=95)
    assert torch.equal(decode_frame(tmp_path / "a.png"), torch.from_numpy(array).permute(2, 0, 1))
    assert decode_frame(tmp_path / "g.jpg").shape == (3, 10, 12)
    (tmp_path / "bad.jpg").write_bytes(b"not a jpeg")
    from lorat_plugin.data import FrameError
    with pytest.raises(FrameError, match="bad.jpg"):
        decode_frame(tmp_path / "bad.jpg")
    with pytest.raises(FrameError, match="missing.jpg"):
        decode_frame(tmp_path / "missing.jpg")


def test_normalize_images_is_imagenet() -> None:
    images = torch.full((1, 3, 2, 2), 255, dtype=torch.uint8)
    out = normalize_images(images)
    torch.testing.assert_close(out[0, :, 0, 0], torch.tensor([(1 - 0.485) / 0.229, (1 - 0.456) / 0.224,
                                                               (1 - 0.406) / 0.225]))


# ---- trainable set, optimiser, schedule ----------------------------------------------------------------------------


def test_trainable_set_is_lora_token_types_and_head() -> None:
    model = build_model(TINY)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or n == "token_type_embed" or n.startswith("head.") for n in trainable)
    assert {n for n in trainable if n.startswith("head.")} == {n for n, _ in model.head.named_parameters(prefix="head")}
    assert "token_type_embed" in trainable and sum("lora_" in n for n in trainable) == 2 * 4 * TINY.depth
    full = build_model(TINY.replace(tuning="full"))
    assert all(p.requires_grad for p in full.parameters())


def test_weight_decay_exceptions() -> None:
    model = build_model(TINY)
    groups = parameter_groups(model, 0.1)
    decay = {n for g in groups if g["weight_decay"] > 0 for n in g["names"]}
    no_decay = {n for g in groups if g["weight_decay"] == 0 for n in g["names"]}
    assert "token_type_embed" in no_decay and "head.cls_mlp.layers.2.weight" in no_decay  # 1 x D squeezes to 1-D
    assert all(n.endswith(".bias") for n in no_decay if n.startswith("head.") and n != "head.cls_mlp.layers.2.weight")
    assert "head.reg_mlp.layers.2.weight" in decay and all("lora_" in n or n.startswith("head.") for n in decay)
    assert any("lora_A" in n for n in decay) and any("lora_B" in n for n in decay)
    # Full fine-tuning: norms and embeddings are not decayed; layer decay scales the blocks' rates.
    full = build_model(TINY.replace(tuning="full"))
    scales = {n: g["lr_scale"] for g in parameter_groups(full, 0.1, 0.5) for n in g["names"]}
    assert scales["patch_embed.proj.weight"] == 0.5 ** 3 and scales["blocks.0.attn.qkv.weight"] == 0.5 ** 2
    assert scales["blocks.1.attn.qkv.weight"] == 0.5 and scales["head.cls_mlp.layers.0.weight"] == 1.0
    full_no_decay = {n for g in parameter_groups(full, 0.1) if g["weight_decay"] == 0 for n in g["names"]}
    assert {"blocks.0.norm1.weight", "norm.weight", "pos_embed", "token_type_embed"} <= full_no_decay
    optimizer = build_optimizer(model, OptimSection())
    assert isinstance(optimizer, torch.optim.AdamW) and optimizer.defaults["lr"] == 1e-4


def test_schedule_matches_timm_cosine_with_warmup_prefix() -> None:
    from timm.scheduler import CosineLRScheduler

    steps, epochs = 10, 5
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    reference = CosineLRScheduler(optimizer, t_initial=epochs * steps, lr_min=1e-6, warmup_t=2 * steps,
                                  warmup_lr_init=1e-7, warmup_prefix=True, t_in_epochs=False)
    ours = WarmupCosine(OptimSection(), steps, epochs)
    for step in range(epochs * steps):
        reference.step_update(step)
        assert ours(step) == pytest.approx(optimizer.param_groups[0]["lr"], rel=1e-9, abs=1e-15)
    assert ours(0) == 1e-7 and ours(2 * steps) == pytest.approx(1e-4)
    # The recipe's 170 x 1024 steps end short of the cosine's end, at about 1.03e-6 (lorat-spec §3.5).
    assert WarmupCosine(OptimSection(), 1024, 170)(170 * 1024 - 1) == pytest.approx(1.034e-6, rel=1e-3)


# ---- config -------------------------------------------------------------------------------------------------------


def test_shipped_configs_load_strictly(monkeypatch) -> None:
    monkeypatch.setenv("LORAT_DATA", "/data")
    monkeypatch.setenv("LORAT_WEIGHTS_DIR", "/weights")
    files = sorted((REPO / "lorat_plugin" / "configs").glob("[SBLg]-*.yaml"))
    assert len(files) == 7
    for file in files:
        config = load_config(file)
        assert load_config(file.stem) == config  # a shipped recipe by name, from any directory
        assert config.model.model_config() == get_config(file.stem)
        assert config.data == DataSection() and config.optim == OptimSection()
        assert config.train.epochs == 170 and config.data.batch_size == 128
        assert str(resolve_path(config.model.backbone_weights, "k")).startswith("/weights/dinov2_vit")


def test_config_errors_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="shipped recipes: B-224, B-378"):
        load_config("B-225")
    with pytest.raises(ConfigError, match="optim.lrr"):
        load_config(None, ["optim.lrr=1"])
    with pytest.raises(ConfigError, match="model.depthh"):
        load_config(None, ["model.depthh=3"])
    with pytest.raises(ConfigError, match="train.epochs must be an integer"):
        load_config(None, ["train.epochs=ten"])
    with pytest.raises(ConfigError, match="not divisible"):
        load_config(None, ["data.batch_size=96", "optim.accumulation_steps=5", "data.samples_per_epoch=960"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("data:\n  datasets:\n    - {name: got10k, root: /x, sizee: 3}\n")
    with pytest.raises(ConfigError, match=r"data\.datasets\.0\.sizee"):
        load_config(bad)
    with pytest.raises(ConfigError, match="LORAT_NOT_SET"):
        resolve_path("${LORAT_NOT_SET}/x", "data.datasets.0.root")


def test_overrides_reach_nested_keys_and_list_items() -> None:
    config = load_config(None, ["optim.lr=2e-4", "data.datasets.1.root=/lasot", "model.variant=L-378",
                                "model.drop_path=0", "train.dtype=bf16", "validation.dataset.name=got10k",
                                "validation.dataset.root=/g", "data.datasets.0.sequences_file=null"])
    assert config.optim.lr == 2e-4 and config.data.datasets[1].root == "/lasot"
    assert config.data.datasets[0].sequences_file is None and len(config.data.datasets) == 4
    assert config.model.model_config() == get_config("L-378").replace(drop_path=0.0)
    assert config.validation.dataset.root == "/g" and config.train.dtype == "bf16"
    round_trip = json.loads(json.dumps(config.to_dict()))
    assert round_trip["model"]["drop_path"] == 0 and round_trip["model"]["variant"] == "L-378"


def test_coco_reader_makes_one_sequence_per_non_crowd_object(tmp_path: Path) -> None:
    pytest.importorskip("pycocotools")
    from PIL import Image

    from lorat_plugin.data.datasets import load_dataset

    (tmp_path / "annotations").mkdir()
    (tmp_path / "train2017").mkdir()
    for name in ("000000000001.jpg", "000000000002.jpg"):
        Image.new("RGB", (40, 30)).save(tmp_path / "train2017" / name)
    annotations = {
        "images": [{"id": 1, "file_name": "000000000001.jpg", "width": 40, "height": 30},
                   {"id": 2, "file_name": "000000000002.jpg", "width": 40, "height": 30}],
        "categories": [{"id": 7, "name": "cat"}],
        "annotations": [
            {"id": 10, "image_id": 1, "category_id": 7, "bbox": [1, 2, 10, 12], "iscrowd": 0, "area": 1},
            {"id": 11, "image_id": 1, "category_id": 7, "bbox": [30, 20, 20, 20], "iscrowd": 0, "area": 1},
            {"id": 12, "image_id": 1, "category_id": 7, "bbox": [0, 0, 40, 30], "iscrowd": 1, "area": 1},
            {"id": 13, "image_id": 2, "category_id": 7, "bbox": [5, 5, 0, 4], "iscrowd": 0, "area": 1},
        ]}
    (tmp_path / "annotations" / "instances_train2017.json").write_text(json.dumps(annotations))
    sequences = load_dataset("coco", tmp_path, "train")
    assert [s.name for s in sequences] == ["000000000001_10", "000000000001_11"]
    np.testing.assert_allclose(sequences[1].boxes, [[30, 20, 10, 10]])  # fitted into the image
    assert sequences[0].frames == [tmp_path / "train2017" / "000000000001.jpg"]
    assert sequences[0].attributes["class"] == "cat" and len(sequences[0]) == 1
    assert compact("coco", 1.0, sequences).num_videos == 1
    with pytest.raises(FileNotFoundError, match="instances_val2017"):
        load_dataset("coco", tmp_path, "val")


def test_bce_definition_matches_torch() -> None:  # guards the hand computation above
    assert F.binary_cross_entropy_with_logits(torch.tensor(0.7), torch.tensor(0.5)).item() == pytest.approx(
        math.log1p(math.exp(0.7)) - 0.35)


def test_head_from_warm_starts_the_head_and_not_the_adapters(tmp_path: Path) -> None:
    """The demo's stage 2: a frozen stage-1 backbone with fresh LoRA, the head and token types taken from stage 1."""
    from lorat_plugin.model import save_checkpoint
    from lorat_plugin.model.lora import lora_layers
    from lorat_plugin.train.trainer import build_training_model

    stage1 = build_model(TINY.replace(tuning="full"))
    torch.nn.init.normal_(stage1.token_type_embed)
    path = save_checkpoint(stage1, tmp_path / "stage1.safetensors")
    arch = [f"model.{k}={getattr(TINY, k)}" for k in ("embed_dim", "depth", "num_heads", "template_size",
                                                      "search_size", "pretrain_grid")]
    config = load_config(None, ["model.variant=null", *arch, f"model.backbone_weights={path}",
                                f"model.head_from={path}", "model.tuning=lora"])
    model = build_training_model(config)
    torch.testing.assert_close(model.token_type_embed, stage1.token_type_embed)
    torch.testing.assert_close(model.head.state_dict(), stage1.head.state_dict())
    torch.manual_seed(config.train.seed)
    fresh = build_model(config.model.model_config(), backbone_weights=path)
    for (_, ours), (_, new) in zip(lora_layers(model), lora_layers(fresh), strict=True):
        torch.testing.assert_close(ours.lora_B, new.lora_B)
    other = build_model(TINY.replace(tuning="full", embed_dim=2 * TINY.embed_dim, num_heads=2 * TINY.num_heads))
    from lorat_plugin.model.weights import WeightsError, load_head, read_weights
    with pytest.raises(WeightsError, match="another shape"):
        load_head(model, read_weights(save_checkpoint(other, tmp_path / "other.safetensors")))


def test_math_attention_kernel_gives_the_same_step_without_the_fused_kernel() -> None:
    from torch.profiler import profile

    from lorat_plugin.train.config import LossSection
    from lorat_plugin.train.step import TrainStep, attention_kernel

    g, t = TINY.search_grid, TINY.template_grid
    generator = torch.Generator().manual_seed(0)
    batch = {"z": torch.randint(0, 256, (2, 3, TINY.template_size, TINY.template_size), generator=generator,
                                dtype=torch.uint8),
             "x": torch.randint(0, 256, (2, 3, TINY.search_size, TINY.search_size), generator=generator,
                                dtype=torch.uint8),
             "z_feat_mask": torch.ones(2, t, t, dtype=torch.long), "positive": torch.zeros(2, g, g, dtype=torch.bool),
             "box": torch.tensor([[0.4, 0.4, 0.6, 0.6]] * 2)}
    batch["positive"][:, g // 2, g // 2] = True
    results = {}
    for kernel in ("default", "math"):
        torch.manual_seed(0)
        model = build_model(TINY).train()
        step = TrainStep(model, model, build_optimizer(model, OptimSection()), amp=torch.float32,
                         device=torch.device("cpu"), grad_clip=1.0, loss=LossSection(), attention=kernel)
        with profile() as prof:
            loss, _ = step.backward(batch)
        ops = {event.key for event in prof.key_averages()}
        results[kernel] = loss, [p.grad.clone() for p in step.params], ops
    assert any("flash_attention" in op for op in results["default"][2])
    assert not any("flash_attention" in op for op in results["math"][2])
    torch.testing.assert_close(results["math"][0], results["default"][0], rtol=1e-5, atol=1e-6)
    for math_grad, default_grad in zip(results["math"][1], results["default"][1]):
        torch.testing.assert_close(math_grad, default_grad, rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="train.attention"):
        attention_kernel("flash")
