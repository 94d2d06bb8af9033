"""Benchmark readers: every layout round-trips, agrees with the got10k toolkit's dataset classes where those work,
lists big sets without decoding images, and names the file and line of a malformed annotation."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lorat_plugin.data import AnnotationError
from lorat_plugin.data.datasets import DATASETS, DatasetInfo, dataset_info, dataset_key, load_dataset
from lorat_plugin.data.datasets import registry
from lorat_plugin.data.datasets.write import write_dataset

from evaluation_support import generated_sequence

got10k_datasets = pytest.importorskip("got10k.datasets")


def _written(root: Path, dataset: str, names: list[str], *, split=None, length=9, hidden=(3,)):
    sequences = [generated_sequence(n, length + i, seed=i, hidden=hidden) for i, n in enumerate(names)]
    write_dataset(root, dataset, sequences, split=split)
    return {s.name: s for s in sequences}


def _check_boxes(loaded, written, *, first_only=False):
    assert [s.name for s in loaded] == sorted(written, key=lambda n: [int(p) if p.isdigit() else p for p in
                                                                   __import__("re").split(r"(\d+)", n)])
    for s in loaded:
        w = written[s.name]
        assert len(s) == len(w.boxes) == len(s.frames) == len(s.visible)
        assert all(f.is_file() for f in s.frames)
        if first_only:
            np.testing.assert_allclose(s.boxes[0], w.boxes[0], atol=1e-9)
            assert np.isnan(s.boxes[1:]).all()
        else:
            np.testing.assert_allclose(s.boxes[w.visible], w.boxes[w.visible], atol=1e-9)


def test_got10k_val_and_test_match_the_toolkit_reader(tmp_path):
    val = _written(tmp_path, "got10k", ["GOT-10k_Val_000002", "GOT-10k_Val_000001"], split="val")
    test = _written(tmp_path, "got10k", ["GOT-10k_Test_000001"], split="test")
    loaded = load_dataset("got10k", tmp_path, "val")
    assert [s.name for s in loaded] == ["GOT-10k_Val_000002", "GOT-10k_Val_000001"]  # list.txt order
    for s in loaded:
        w = val[s.name]
        np.testing.assert_allclose(s.boxes, w.boxes, atol=1e-9)
        assert s.dataset == "got10k"
        assert s.visible.tolist() == w.visible.tolist() and not s.visible[3]
        assert s.attributes["cover"].tolist() == np.where(w.visible, 8, 0).tolist()
        assert s.attributes["resolution"] == (64, 48) and s.attributes["class"] == "object"
    toolkit = got10k_datasets.GOT10k(str(tmp_path), subset="val", return_meta=True)
    for s in loaded:
        img_files, anno, meta = toolkit[s.name]
        assert [Path(f) for f in img_files] == s.frames
        np.testing.assert_array_equal(anno, s.boxes)
        assert meta["cover"].tolist() == s.attributes["cover"].tolist()
    (t,) = load_dataset("got10k", tmp_path / "test")  # a split folder works as the root too
    img_files, anno = got10k_datasets.GOT10k(str(tmp_path), subset="test")[0]
    assert [Path(f) for f in img_files] == t.frames and len(t) == len(test[t.name].boxes)
    np.testing.assert_array_equal(anno[0], t.boxes[0])
    assert np.isnan(t.boxes[1:]).all() and t.visible.tolist() == [True] + [False] * (len(t) - 1)


def test_lasot_is_converted_to_zero_based_with_flags_and_attributes(tmp_path):
    written = _written(tmp_path / "LaSOT", "lasot", ["cat-2", "cat-10", "dog-1"], split="test")
    written.update(_written(tmp_path / "LaSOT", "lasot", ["dog-3"], split="train"))
    text = (tmp_path / "LaSOT/cat/cat-2/groundtruth.txt").read_text().splitlines()[0].split(",")
    assert float(text[0]) == pytest.approx(written["cat-2"].boxes[0, 0] + 1)  # on disk: 1-based
    (tmp_path / "LaSOT/att").mkdir()
    (tmp_path / "LaSOT/att/cat-2.txt").write_text("1,0,0,0,0,0,0,0,0,1,0,0,0,1\n")
    test = load_dataset("lasot", tmp_path / "LaSOT")
    assert [s.name for s in test] == ["cat-2", "cat-10", "dog-1"]  # testing_set.txt
    for s in test:
        np.testing.assert_allclose(s.boxes, written[s.name].boxes, atol=1e-9)
        assert s.attributes["class"] == s.name.split("-")[0] and s.attributes["nlp"].startswith("the ")
        assert s.attributes["full_occlusion"].tolist() == (~written[s.name].visible).tolist()
        assert s.visible.tolist() == written[s.name].visible.tolist()
    assert test[0].attributes["challenges"] == {k: k in ("IV", "FOC", "ARC") for k in
                                               "IV POC DEF MB CM ROT BC VC SV FOC FM OV LR ARC".split()}
    assert "challenges" not in test[1].attributes
    assert [s.name for s in load_dataset("lasot", tmp_path / "LaSOT", "train")] == ["dog-3"]
    assert len(load_dataset("lasot", tmp_path / "LaSOT", "all")) == 4
    ext = load_dataset("LaSOT-ext", tmp_path / "LaSOT")
    assert {s.dataset for s in ext} == {"lasot_ext"} and len(ext) == 4


def test_trackingnet_test_keeps_the_first_box_and_train_chunks_are_complete(tmp_path):
    test = _written(tmp_path, "trackingnet", ["a_0", "b_1"], split="TEST")
    train = _written(tmp_path, "trackingnet", ["c_2"], split="TRAIN_3")
    _check_boxes(load_dataset("trackingnet", tmp_path), test, first_only=True)
    _check_boxes(load_dataset("trackingnet", tmp_path, "TRAIN_3"), train)
    (s,) = load_dataset("trackingnet", tmp_path, "train")
    assert s.frames[0].name == "0.jpg" and s.attributes["chunk"] == "TRAIN_3"
    with pytest.raises(ValueError, match="unknown TrackingNet split"):
        load_dataset("trackingnet", tmp_path, "val")


def test_otb_uav123_nfs_read_through_the_got10k_classes(tmp_path):
    otb = _written(tmp_path / "OTB", "otb", ["Bolt", "Basketball"])
    (tmp_path / "OTB/NotAnOTBSequence").mkdir()  # ignored: not in the official list
    loaded = load_dataset("otb", tmp_path / "OTB")
    _check_boxes(loaded, otb)
    raw = np.loadtxt(tmp_path / "OTB/Bolt/groundtruth_rect.txt", delimiter=",")
    np.testing.assert_allclose(loaded[1].boxes[:, :2], raw[:, :2] - 1)  # 1-based on disk

    uav = _written(tmp_path / "UAV", "uav123", ["uav6"], length=109, hidden=(5, 6))
    (s,) = load_dataset("uav123", tmp_path / "UAV")
    _check_boxes([s], uav)
    assert not s.visible[5] and np.isnan(s.boxes[5]).all() and s.frames[0].name == "000001.jpg"

    nfs = _written(tmp_path / "NfS", "nfs", ["bee", "Gymnastics"], split=30)
    loaded = load_dataset("nfs", tmp_path / "NfS")
    _check_boxes(loaded, {k: v for k, v in nfs.items()})
    toolkit = got10k_datasets.NfS(str(tmp_path / "NfS"), fps=30)
    bee = next(s for s in loaded if s.name == "bee")
    np.testing.assert_array_equal(toolkit[toolkit.seq_names.index("bee")][1], bee.boxes)


def test_tnl2k_lists_frames_in_natural_order(tmp_path):
    written = _written(tmp_path, "tnl2k", ["Arrow_1", "advSamp_Baseball_game_002-Done"], hidden=(2,))
    loaded = load_dataset("tnl2k", tmp_path)
    _check_boxes(loaded, written)
    assert all(not s.visible[2] for s in loaded) and loaded[0].attributes["language"] == "the object"


def test_registry_names_and_root_errors(tmp_path):
    assert set(DATASETS) >= {"got10k", "lasot", "lasot_ext", "trackingnet", "otb", "uav123", "nfs", "tnl2k",
                             "procedural", "custom", "coco"}
    assert dataset_key("LaSOT_Extension") == "lasot_ext" and dataset_key("GOT-10k") == "got10k"
    assert dataset_key("OTB2015") == "otb" and dataset_key(" UAV ") == "uav123"
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'; known: got10k, lasot, .*procedural, custom"):
        load_dataset("imagenet", tmp_path)
    with pytest.raises(FileNotFoundError, match="root not found"):
        load_dataset("lasot", tmp_path / "nowhere")
    _written(tmp_path / "GOT", "got10k", ["GOT-10k_Val_000001"], split="val")
    with pytest.raises(ValueError, match="choose one"):
        load_dataset("got10k", tmp_path / "GOT")


@pytest.mark.parametrize("dataset, relative, content, match", [
    ("got10k", "val/GOT-10k_Val_000001/groundtruth.txt", "1,2,3,4\n1,2,3\n", r"groundtruth.txt, line 2"),
    ("got10k", "val/GOT-10k_Val_000001/groundtruth.txt", "1,2,3,4\n1,2,x,4\n", r"line 2: not a number"),
    ("got10k", "val/GOT-10k_Val_000001/absence.label", "0\n0\n", r"absence.label: 2 absence labels for 9 frames"),
    ("got10k", "val/GOT-10k_Val_000001/meta_info.ini", "[METAINFO]\nresolution (64, 48)\n",
     r"meta_info.ini, line 2"),
    ("got10k", "val/list.txt", "GOT-10k_Val_000001\nGOT-10k_Val_000009\n", r"list.txt, line 2: sequence folder"),
    ("lasot", "cat/cat-1/full_occlusion.txt", "0,0,1\n", r"full_occlusion.txt: 3 full_occlusion flags for 9"),
    ("lasot", "cat/cat-1/groundtruth.txt", "1,1,5,5\n" * 8 + "1;1;5;5;5\n", r"groundtruth.txt, line 9"),
    ("trackingnet", "TEST/anno/a_0.txt", "", r"a_0.txt: empty annotation file"),
    ("otb", "Bolt/groundtruth_rect.txt", "1,1,5,5\n" * 4 + "1,1,5\n" + "1,1,5,5\n" * 4,
     r"groundtruth_rect.txt, line 5"),
    ("otb", "Bolt/groundtruth_rect.txt", "1,1,5,5\n" * 12, r"groundtruth_rect.txt: annotation does not match"),
])
def test_malformed_annotations_name_the_file_and_line(tmp_path, dataset, relative, content, match):
    names = {"got10k": ["GOT-10k_Val_000001"], "lasot": ["cat-1"], "trackingnet": ["a_0"], "otb": ["Bolt"]}[dataset]
    split = {"got10k": "val", "trackingnet": "TEST"}.get(dataset)
    _written(tmp_path, dataset, names, split=split)
    (tmp_path / relative).write_text(content)
    with pytest.raises(AnnotationError, match=match):
        load_dataset(dataset, tmp_path, split)


def test_missing_frames_are_reported_against_the_annotation(tmp_path):
    _written(tmp_path, "lasot", ["cat-1"], split="test")
    for frame in sorted((tmp_path / "cat/cat-1/img").iterdir())[-3:]:
        frame.unlink()
    with pytest.raises(AnnotationError, match=r"groundtruth.txt: 9 annotated frames but 6 images"):
        load_dataset("lasot", tmp_path)


def test_listing_a_large_training_split_is_fast_and_decodes_nothing(tmp_path, monkeypatch):
    split = tmp_path / "train"
    names = [f"GOT-10k_Train_{i:06d}" for i in range(1, 1501)]
    rng = np.random.default_rng(0)
    for name in names:
        folder = split / name
        folder.mkdir(parents=True)
        n = int(rng.integers(20, 120))
        (folder / "groundtruth.txt").write_text("".join(f"{i},{i},{10 + i},{12 + i}\n" for i in range(n)))
        (folder / "absence.label").write_text("0\n" * n)
        (folder / "cover.label").write_text("8\n" * n)
        (folder / "meta_info.ini").write_text("[METAINFO]\nobject_class: dog\nresolution: (640, 480)\n")
        for i in (1, n):  # readers only check the first and the last frame
            (folder / f"{i:08d}.jpg").touch()
    (split / "list.txt").write_text("\n".join(names) + "\n")

    import PIL.Image

    def no_decoding(*args, **kwargs):
        raise AssertionError("a reader decoded an image while listing")

    monkeypatch.setattr(PIL.Image, "open", no_decoding)
    start = time.perf_counter()
    sequences = load_dataset("got10k", tmp_path, "train")
    elapsed = time.perf_counter() - start
    assert len(sequences) == 1500 and sequences[-1].attributes["class"] == "dog"
    assert elapsed < 15, f"listing 1500 GOT-10k sequences took {elapsed:.1f} s"


# each benchmark's rule for an annotation that covers fewer frames than the folder holds (generated: 12 frames):
# GOT-10k, TrackingNet and OTB refuse, as their toolkit asserts; LaSOT and TNL2K evaluate the annotated frames
@pytest.mark.parametrize("dataset, split, name, annotation", [
    ("got10k", "val", "GOT-10k_Val_000001", "val/GOT-10k_Val_000001/groundtruth.txt"),
    ("trackingnet", "TRAIN_0", "a_0", "TRAIN_0/anno/a_0.txt"),
    ("otb", None, "Bolt", "Bolt/groundtruth_rect.txt"),
    ("lasot", "test", "cat-1", "cat/cat-1/groundtruth.txt"),
    ("tnl2k", None, "s1", "s1/groundtruth.txt"),
])
def test_an_annotation_shorter_than_the_frames_follows_the_benchmark_rule(tmp_path, caplog, dataset, split, name,
                                                                           annotation):
    _written(tmp_path, dataset, [name], split=split, length=12, hidden=())
    gt = tmp_path / annotation
    gt.write_text("".join(gt.read_text().splitlines(keepends=True)[:10]))
    for label in gt.parent.glob("*.label"):  # GOT-10k without labels: nothing else counts the frames
        label.unlink()
    for flags in gt.parent.glob("*_o*.txt"):  # LaSOT's occlusion and out-of-view flags follow the annotation
        flags.write_text(",".join(["0"] * 10) + "\n")
    if dataset in ("lasot", "tnl2k"):
        (sequence,) = load_dataset(dataset, tmp_path, split)
        assert len(sequence) == 10 and sequence.frames[-1].stem.endswith("10")
        assert f"{gt}: 10 annotated frames but 12 images" in caplog.text
    elif dataset == "otb":  # read through got10k.datasets.OTB, whose assert the wrapper names
        with pytest.raises(AnnotationError, match=f"{gt.name}: annotation does not match the frames"):
            load_dataset(dataset, tmp_path, split)
    else:
        with pytest.raises(AnnotationError, match=f"{gt}: 10 annotated frames but 12 images"):
            load_dataset(dataset, tmp_path, split)


def test_each_reader_declares_its_conventions_once():
    """The facts evaluation used to keep in a second table, now registered by the readers themselves."""
    got10k, lasot, otb, uav = (dataset_info(k) for k in ("got10k", "lasot", "otb", "uav123"))
    assert (got10k.protocol, got10k.one_based, got10k.formats, got10k.default_split) == ("got10k", False, ("got10k",),
                                                                                          None)
    assert (lasot.one_based, lasot.ope_kind, lasot.also_lasot_toolkit, lasot.splits) == (True, "lasot", True,
                                                                                         ("test", "train", "all"))
    assert otb.one_based and otb.also_got10k_otb and uav.pytracking_prefix == "uav_" and uav.ope_kind == "uav"
    assert dataset_info("trackingnet").protocol == "trackingnet" and dataset_info("coco").protocol is None
    custom, procedural = dataset_info("custom"), dataset_info("procedural")
    assert (custom.protocol, custom.one_based, procedural.protocol, procedural.one_based) == ("ope", False, "ope", False)


def test_a_new_reader_is_one_registration(tmp_path, monkeypatch):
    """Adding a benchmark reader: its module registers one entry; names, help and errors follow from it."""
    monkeypatch.setattr(registry, "DATASETS", dict(registry.DATASETS))
    stub = DatasetInfo("stub", "Stub benchmark", lambda root, split: [], splits=("easy", "hard"),
                       default_split="easy", one_based=True, aliases=("stub-2024",))
    registry.register(stub)
    assert dataset_key("Stub-2024") == "stub" and dataset_info("stub") is stub
    assert "stub: easy|hard" in registry.split_help() and registry.dataset_help().endswith("stub")
    assert load_dataset("stub", tmp_path) == []
    with pytest.raises(ValueError, match="dataset names already registered: otb2015"):
        registry.register(DatasetInfo("otb_copy", "OTB again", stub.load, splits=("all",), default_split="all",
                                      aliases=("otb2015",)))
    with pytest.raises(ValueError, match="unknown protocol 'auc'"):
        DatasetInfo("bad", "Bad", stub.load, splits=("all",), default_split="all", protocol="auc")
    with pytest.raises(ValueError, match="default split 'test' is not one of its splits"):
        DatasetInfo("bad", "Bad", stub.load, splits=("all",), default_split="test")


def test_custom_sequences_are_read_zero_based_from_img_or_beside(tmp_path):
    root = tmp_path / "mine"
    for name, image_dir in (("walk", "img"), ("run", "")):
        sequence = generated_sequence(name, 6, seed=len(name))
        folder = root / name / image_dir
        folder.mkdir(parents=True)
        for number, image in enumerate(sequence.images, start=1):
            Image.fromarray(image).save(folder / f"frame{number}.png")
        np.savetxt(root / name / "groundtruth.txt", sequence.boxes, fmt="%.4f", delimiter=",")
    loaded = load_dataset("custom", root)
    assert [s.name for s in loaded] == ["run", "walk"] and all(s.dataset == "custom" for s in loaded)
    assert [f.name for f in loaded[1].frames][:2] == ["frame1.png", "frame2.png"] and len(loaded[1]) == 6
    np.testing.assert_allclose(loaded[0].boxes, generated_sequence("run", 6, seed=3).boxes, atol=1e-4)
    (root / "run" / "frame6.png").unlink()
    with pytest.raises(AnnotationError, match="groundtruth.txt: 6 annotated frames but 5 images"):
        load_dataset("custom", root)
    with pytest.raises(ValueError, match="a custom dataset has no splits"):
        load_dataset("custom", root, "test")


@pytest.mark.parametrize("verb", ["evaluate", "report"])
def test_dataset_and_split_help_come_from_the_registry(verb, capsys, monkeypatch):
    from lorat_plugin.cli import main

    monkeypatch.setenv("COLUMNS", "1000")  # one help entry per line
    with pytest.raises(SystemExit):
        main([verb, "--help"])
    lines = capsys.readouterr().out.splitlines()
    dataset_line = next(line for line in lines if line.strip().startswith("--dataset"))
    split_line = next(line for line in lines if line.strip().startswith("--split"))
    for key, info in DATASETS.items():
        assert (key in dataset_line) == (info.protocol is not None), key  # training-only data is not scored
        assert (f"{key}: {info.split_help}" in split_line) == (info.protocol is not None), key


def test_custom_layout_round_trips_through_the_one_writer(tmp_path):
    written = _written(tmp_path, "custom", ["walk", "run-2"], hidden=())
    _check_boxes(load_dataset("custom", tmp_path), written)


def test_a_new_layout_is_one_function_and_sequences_are_written_whole(tmp_path, monkeypatch):
    from lorat_plugin.data.datasets import write

    monkeypatch.setattr(write, "LAYOUTS", dict(write.LAYOUTS))

    @write.layout("flat", folder=lambda name, split: f"{split}/{name}", frames="frames/%03d.png", first_frame=0,
                  listing=lambda split: f"{split}/names.txt")
    def _flat(s, split, box_format):
        return {f"{split}/{s.name}/boxes.txt": write.box_lines(s.boxes, box_format, one_based=True),
                f"{split}/index/{s.name}.txt": f"{len(s.boxes)}\n"}  # a file outside the sequence's folder

    sequence = generated_sequence("a", 3)
    sequence.boxes[1] = 0  # no target
    write.write_dataset(tmp_path, "flat", [sequence], split="s", box_format="%.2f")
    folder = tmp_path / "s" / "a"
    assert sorted(p.name for p in (folder / "frames").iterdir()) == ["000.png", "001.png", "002.png"]
    lines = (folder / "boxes.txt").read_text().splitlines()
    x, y, w, h = sequence.boxes[0]
    assert lines[0] == f"{x + 1:.2f},{y + 1:.2f},{w:.2f},{h:.2f}" and lines[1] == "0,0,0,0"
    assert (tmp_path / "s" / "index" / "a.txt").read_text() == "3\n"
    write.write_dataset(tmp_path, "flat", [generated_sequence("b", 2)], split="s")
    assert (tmp_path / "s" / "names.txt").read_text() == "a\nb\n"

    broken = generated_sequence("a", 3)
    broken.images[2] = np.zeros((4, 4, 3), dtype=bool)  # not an image: the write fails on the last frame
    with pytest.raises(ValueError):
        write.write_sequence(tmp_path, "flat", broken, split="s")
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == ["a", "b", "index", "names.txt"]  # no partial
    assert (folder / "boxes.txt").read_text().splitlines()[1] == "0,0,0,0"  # the earlier sequence, untouched
    write.write_sequence(tmp_path, "flat", generated_sequence("a", 2), split="s")  # a rewrite replaces it whole
    assert sorted(p.name for p in (folder / "frames").iterdir()) == ["000.png", "001.png"]
    with pytest.raises(ValueError, match="no layout writer for dataset 'vot2099'"):
        write.write_dataset(tmp_path, "vot2099", [])


BAD_NAMES = {"dot": ".", "dot_dot": "..", "absolute": "/etc", "separator": "a/b", "backslash": "a\\b",
             "escape": "a\x1b]0;title\x07", "form_feed": "a\x0cb"}


@pytest.mark.parametrize("case", sorted(BAD_NAMES))
@pytest.mark.parametrize("dataset", ["got10k", "lasot", "vot"])
def test_a_listed_sequence_name_that_is_a_path_is_refused_naming_the_file_and_line(tmp_path, dataset, case):
    """list.txt (GOT-10k, VOT) and testing_set.txt (LaSOT): a line `..` once made `<output>/GOT-10k/.._001.txt`."""
    if dataset == "vot":
        from lorat_plugin.data.datasets.vot import find_sequences

        (tmp_path / "first").mkdir()  # checked as a name only: the list's bad line comes first
        listing = tmp_path / "list.txt"
        listing.write_text(f"first\n{BAD_NAMES[case]}\n")
        load = lambda: find_sequences(tmp_path)  # noqa: E731
    else:
        names = ["GOT-10k_Val_000001"] if dataset == "got10k" else ["cat-1"]
        _written(tmp_path, dataset, names, split="val" if dataset == "got10k" else "test")
        listing = tmp_path / ("val/list.txt" if dataset == "got10k" else "testing_set.txt")
        listing.write_text(f"{names[0]}\n{BAD_NAMES[case]}\n")
        load = lambda: load_dataset(dataset, tmp_path, "val" if dataset == "got10k" else "test")  # noqa: E731
    with pytest.raises(AnnotationError) as error:
        load()
    message = str(error.value)
    assert message.startswith(f"{listing}, line 2: sequence name {BAD_NAMES[case]!r}") and "\n" not in message
    assert "\x1b" not in message and "\r" not in message


@pytest.mark.parametrize("dataset", ["got10k", "lasot", "trackingnet", "tnl2k", "custom"])
def test_a_folder_or_file_name_with_a_control_character_is_refused_naming_the_folder(tmp_path, dataset):
    """Names read from folder and file names (no list file) are checked as well, by every reader."""
    name = {"lasot": "cat-\x1b[31m1", "trackingnet": "a\x07_0"}.get(dataset, "GOT-10k_Val_\x1b[31m1")
    split = {"got10k": "val", "trackingnet": "TRAIN_0"}.get(dataset)
    _written(tmp_path, dataset, [name], split=split)
    for listing in (tmp_path / "val" / "list.txt", tmp_path / "testing_set.txt"):
        listing.unlink(missing_ok=True)  # names come from the folders
    with pytest.raises(AnnotationError, match=r"sequence name .* holds a control character") as error:
        load_dataset(dataset, tmp_path, split)
    assert "\x1b" not in str(error.value) and "\x07" not in str(error.value)


def test_names_with_glob_characters_are_plain_names(tmp_path):
    written = _written(tmp_path, "got10k", ["seq[1]", "seq1", "star*", "what?"], split="val")
    assert sorted(s.name for s in load_dataset("got10k", tmp_path, "val")) == sorted(written)
