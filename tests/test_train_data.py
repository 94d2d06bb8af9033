"""The input pipeline on hand-made cases: labels, crops and augmentations, pair and frame sampling, batches,
frame decoding, the COCO reader."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from lorat_plugin.data import Sequence
from lorat_plugin.geometry import normalize_images, template_mask
from lorat_plugin.train.augment import hflip, three_augment
from lorat_plugin.train.config import ConfigError, DatasetEntry
from lorat_plugin.train.loader import StepBatchSampler, decode_frame
from lorat_plugin.train.labels import positive_cells
from lorat_plugin.train.pairs import PairRecipe, jittered_search_transform, make_pair
from lorat_plugin.train.source import TrainingSource, compact, epoch_plan, sample_frames, select_sequences


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
