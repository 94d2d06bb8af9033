"""Hostile input to the OTB, UAV123, NfS, TrackingNet and TNL2K readers, one case a row: each ends in a one-line
error naming the file (and the line where there is one), or in the behaviour docs/bad-input.md writes down.

The benchmarks are written by hand in each official layout with empty frame files: the readers list and check
files, they never decode a frame.
"""
from __future__ import annotations

import builtins
import io
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from lorat_plugin.data import AnnotationError
from lorat_plugin.data.datasets import load_dataset

pytest.importorskip("got10k.datasets")  # OTB, UAV123 and NfS are read through the toolkit's classes

FRAMES = 9
BOXES = [(10 + i, 12, 20, 16) for i in range(FRAMES)]  # x, y, w, h


def _touch(folder: Path, names: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"")


def _lines(boxes, separator: str = ",") -> str:
    return "".join(separator.join(f"{v:g}" for v in box) + "\n" for box in boxes)


@dataclass
class Layout:
    """Where one sequence of a benchmark lives: the annotation file and the frame folder, relative to the root."""
    dataset: str
    split: str | None
    annotation: str
    frames: str
    write: Callable[[Path], None]


def _otb(root: Path) -> None:
    _touch(root / "Bolt/img", [f"{i:04d}.jpg" for i in range(1, FRAMES + 1)])
    (root / "Bolt/groundtruth_rect.txt").write_text(_lines(BOXES))


def _uav123(root: Path) -> None:  # uav6 is frames 1..109 of its folder in the toolkit's uav123.json
    _touch(root / "data_seq/UAV123/uav6", [f"{i:06d}.jpg" for i in range(1, 110)])
    (root / "anno/UAV123/uav6.txt").parent.mkdir(parents=True)
    (root / "anno/UAV123/uav6.txt").write_text(_lines([BOXES[i % FRAMES] for i in range(109)]))


def _nfs(root: Path) -> None:
    _touch(root / "bee/30/bee", [f"{i:05d}.jpg" for i in range(1, FRAMES + 1)])
    (root / "bee/30/bee.txt").write_text("".join(
        f'1 {x:g} {y:g} {x + w:g} {y + h:g} {i} 0 0 0 "bee"\n' for i, (x, y, w, h) in enumerate(BOXES, start=1)))


def _trackingnet(root: Path) -> None:
    _touch(root / "TRAIN_0/frames/a_0", [f"{i}.jpg" for i in range(FRAMES)])
    (root / "TRAIN_0/anno").mkdir(parents=True)
    (root / "TRAIN_0/anno/a_0.txt").write_text(_lines(BOXES))


def _trackingnet_test(root: Path) -> None:  # the TEST chunk annotates frame 0 only
    _touch(root / "TEST/frames/a_0", [f"{i}.jpg" for i in range(FRAMES)])
    (root / "TEST/anno").mkdir(parents=True)
    (root / "TEST/anno/a_0.txt").write_text(_lines(BOXES[:1]))


def _tnl2k(root: Path) -> None:
    _touch(root / "s1/imgs", [f"{i:05d}.jpg" for i in range(1, FRAMES + 1)])
    (root / "s1/groundtruth.txt").write_text(_lines(BOXES))
    (root / "s1/language.txt").write_text("the bee\n")


LAYOUTS = {
    "otb": Layout("otb", None, "Bolt/groundtruth_rect.txt", "Bolt/img", _otb),
    "uav123": Layout("uav123", None, "anno/UAV123/uav6.txt", "data_seq/UAV123/uav6", _uav123),
    "nfs": Layout("nfs", "30", "bee/30/bee.txt", "bee/30/bee", _nfs),
    "trackingnet": Layout("trackingnet", "TRAIN_0", "TRAIN_0/anno/a_0.txt", "TRAIN_0/frames/a_0", _trackingnet),
    "trackingnet_test": Layout("trackingnet", "test", "TEST/anno/a_0.txt", "TEST/frames/a_0", _trackingnet_test),
    "tnl2k": Layout("tnl2k", None, "s1/groundtruth.txt", "s1/imgs", _tnl2k),
}


# ---- the attacks: each changes the written benchmark ---------------------------------------------------------------
def rewrite(text: Callable[[str], str]) -> Callable[[Path, Layout], None]:
    def attack(root: Path, layout: Layout) -> None:
        path = root / layout.annotation
        path.write_bytes(text(path.read_text()).encode("utf-8"))
    return attack


def replace_line(number: int, new: str) -> Callable[[Path, Layout], None]:
    def change(text: str) -> str:
        lines = text.splitlines(keepends=True)
        lines[number - 1] = new + "\n"
        return "".join(lines)
    return rewrite(change)


def one_value_moved_to_the_next_row(text: str) -> str:
    """Rows of 3 and 5 values: as many values as two rows of 4, on the wrong rows."""
    lines = text.splitlines(keepends=True)
    lines[2] = lines[2].rstrip().rsplit(",", 1)[0] + "\n"
    lines[3] = lines[3].rstrip() + ",16\n"
    return "".join(lines)


def with_bom(root: Path, layout: Layout) -> None:
    path = root / layout.annotation
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())


def remove_frames_folder(root: Path, layout: Layout) -> None:
    for frame in (root / layout.frames).iterdir():
        frame.unlink()
    (root / layout.frames).rmdir()


def remove_frame(name: str) -> Callable[[Path, Layout], None]:
    def attack(root: Path, layout: Layout) -> None:
        (root / layout.frames / name).unlink()
    return attack


def renumber_with_gap(gap: str, extra: str) -> Callable[[Path, Layout], None]:
    def attack(root: Path, layout: Layout) -> None:
        (root / layout.frames / gap).rename(root / layout.frames / extra)
    return attack


def move_root_under(folder: str) -> Callable[[Path, Layout], Path]:
    """The whole benchmark moved into a folder whose name is a glob pattern; the new root is returned."""
    def attack(root: Path, layout: Layout) -> Path:
        target = root / folder
        target.mkdir()
        for entry in list(root.iterdir()):
            if entry != target:
                entry.rename(target / entry.name)
        return target
    return attack


def uav_subrange(last_frame_present: bool = True, rows: int = 703) -> Callable[[Path, Layout], None]:
    """bird1_2 is frames 775..1477 of the folder bird1 (the toolkit's uav123.json)."""
    def attack(root: Path, layout: Layout) -> None:
        names = [f"{i:06d}.jpg" for i in range(775, 1478 if last_frame_present else 1477)]
        _touch(root / "data_seq/UAV123/bird1", names)
        (root / "anno/UAV123/bird1_2.txt").write_text(_lines([BOXES[i % FRAMES] for i in range(rows)]))
    return attack


def nfs_240_fps_annotation(root: Path, layout: Layout) -> None:
    """The 240 fps annotation (8 lines a 30 fps frame) in the 30 fps folder, as the toolkit samples it."""
    rows = [(*BOXES[i // 8][:2], BOXES[i // 8][2] + i % 8, BOXES[i // 8][3]) for i in range(8 * FRAMES)]
    (root / layout.annotation).write_text("".join(
        f'1 {x:g} {y:g} {x + w:g} {y + h:g} {i} 0 0 0 "bee"\n' for i, (x, y, w, h) in enumerate(rows, start=1)))


def nfs_folder(name: str) -> Callable[[Path, Layout], None]:
    def attack(root: Path, layout: Layout) -> None:
        (root / "bee/30/bee.txt").rename(root / f"bee/30/{name}.txt")
        (root / "bee/30/bee").rename(root / f"bee/30/{name}")
        (root / "bee").rename(root / name)
    return attack


def trackingnet_anno_named(name: str) -> Callable[[Path, Layout], None]:
    def attack(root: Path, layout: Layout) -> None:
        (root / layout.annotation).rename(root / f"TRAIN_0/anno/{name}.txt")
    return attack


def uav_anno_named(name: str) -> Callable[[Path, Layout], None]:
    def attack(root: Path, layout: Layout) -> None:
        (root / layout.annotation).rename(root / f"anno/UAV123/{name}.txt")
    return attack


def trackingnet_sequence_named(name: str) -> Callable[[Path, Layout], None]:
    def attack(root: Path, layout: Layout) -> None:
        trackingnet_anno_named(name)(root, layout)
        (root / layout.frames).rename(root / f"TRAIN_0/frames/{name}")
    return attack


def crlf_and_bom(root: Path, layout: Layout) -> None:
    rewrite(lambda text: text.replace("\n", "\r\n"))(root, layout)
    with_bom(root, layout)


def remove(relative: str) -> Callable[[Path, Layout], None]:
    def attack(root: Path, layout: Layout) -> None:
        (root / relative).unlink()
    return attack


def human4_empty_first_target(root: Path, layout: Layout) -> None:
    """Human4 in the official OTB: groundtruth_rect.1.txt is empty, the target is in groundtruth_rect.2.txt."""
    (root / "Bolt").rename(root / "Human4")
    (root / "Human4/groundtruth_rect.txt").rename(root / "Human4/groundtruth_rect.2.txt")
    (root / "Human4/groundtruth_rect.1.txt").write_text("")


# ---- what must come out --------------------------------------------------------------------------------------------
def error(kind: type, pattern: str) -> tuple[type, str]:
    """An exception of ``kind`` whose one-line message matches ``pattern`` ({annotation}, {frames}: the paths)."""
    return kind, pattern


def loads(check: Callable[[list], None]) -> Callable[[list], None]:
    return check


def first_row_absent(sequences) -> None:
    (sequence,) = sequences
    assert len(sequence) >= FRAMES and not sequence.visible[4] and sequence.visible[[0, 3, 5]].all()


def frames_775_to_1477_of_bird1(sequences) -> None:
    (sequence,) = [s for s in sequences if s.name != "uav6"]
    assert (sequence.name, len(sequence)) == ("bird1_2", 703)
    assert (sequence.frames[0].name, sequence.frames[-1].name) == ("000775.jpg", "001477.jpg")
    assert sequence.frames[0].parent.name == "bird1"


def same_as_written(sequences) -> None:
    (sequence,) = sequences
    offset = 1.0 if sequence.dataset == "otb" else 0.0  # OTB files are 1-based
    written = np.array(BOXES, dtype=float) - [offset, offset, 0, 0]
    np.testing.assert_allclose(sequence.boxes[:FRAMES], written)
    assert sequence.visible.all()


CASES = {
    # OTB (read through got10k.datasets.OTB)
    "otb_empty_annotation": ("otb", rewrite(lambda t: ""),
        error(AnnotationError, r"{annotation}: empty annotation file")),
    "otb_human4_empty_first_target_file": ("otb", human4_empty_first_target,
        loads(lambda s: [q.name for q in s] == ["Human4"])),
    "otb_text_in_a_row": ("otb", replace_line(3, "13,12,twenty,16"),
        error(AnnotationError, r"{annotation}, line 3: not a number")),
    "otb_short_row": ("otb", replace_line(5, "1,2,3"),
        error(AnnotationError, r"{annotation}, line 5: expected 4 numbers")),
    "otb_rows_of_3_and_5_values": ("otb", rewrite(one_value_moved_to_the_next_row),
        error(AnnotationError, r"{annotation}, line 3: expected 4 numbers")),
    "otb_semicolons": ("otb", rewrite(lambda t: t.replace(",", ";")),
        error(AnnotationError, r"{annotation}, line 1: expected 4 numbers")),
    "otb_byte_order_mark": ("otb", with_bom,
        error(AnnotationError, r"{annotation}, line 1: starts with a UTF-8 byte-order mark")),
    "otb_crlf": ("otb", rewrite(lambda t: t.replace("\n", "\r\n")), loads(same_as_written)),
    "otb_tabs": ("otb", rewrite(lambda t: t.replace(",", "\t")), loads(same_as_written)),
    "otb_nan_row": ("otb", replace_line(5, "NaN,NaN,NaN,NaN"), loads(first_row_absent)),
    "otb_negative_size_row": ("otb", replace_line(5, "14,12,-20,16"), loads(first_row_absent)),
    "otb_more_rows_than_frames": ("otb", rewrite(lambda t: t + "1,1,5,5\n"),
        error(AnnotationError,
              r"{annotation}: annotation does not match the frames of sequence Bolt: "
              r"10 annotated frames, 9 \.jpg images in {frames}")),
    "otb_missing_img_folder": ("otb", remove_frames_folder,
        error(AnnotationError, r"frame folder not found: {frames} \(sequence Bolt")),
    "otb_frame_missing": ("otb", remove_frame("0005.jpg"),
        error(AnnotationError, r"9 annotated frames, 8 \.jpg images")),
    "otb_root_named_like_a_glob": ("otb", move_root_under("otb[1]*"), loads(same_as_written)),
    # UAV123 (got10k.datasets.UAV123 and its uav123.json frame ranges)
    "uav123_empty_annotation": ("uav123", rewrite(lambda t: ""),
        error(AnnotationError, r"{annotation}: empty annotation file")),
    "uav123_nan_row_is_an_absent_target": ("uav123", replace_line(5, "NaN,NaN,NaN,NaN"), loads(first_row_absent)),
    "uav123_spaces_for_commas": ("uav123", rewrite(lambda t: t.replace(",", " ")),
        error(AnnotationError, r"{annotation}, line 1: expected 4 comma-separated numbers")),
    "uav123_rows_of_3_and_5_values": ("uav123", rewrite(one_value_moved_to_the_next_row),
        error(AnnotationError, r"{annotation}, line 3: expected 4 comma-separated numbers")),
    "uav123_byte_order_mark": ("uav123", with_bom,
        error(AnnotationError, r"{annotation}, line 1: starts with a UTF-8 byte-order mark")),
    "uav123_crlf": ("uav123", rewrite(lambda t: t.replace("\n", "\r\n")), loads(same_as_written)),
    "uav123_missing_frames_folder": ("uav123", remove_frames_folder,
        error(AnnotationError, r"frame folder not found: {frames} \(sequence uav6")),
    "uav123_last_frame_missing": ("uav123", remove_frame("000109.jpg"),
        error(AnnotationError,
              r"{annotation}: frame not found: .*000109\.jpg \(sequence uav6 has frames 000001\.jpg\.\.000109\.jpg\)")),
    "uav123_fewer_rows_than_its_range": ("uav123", rewrite(lambda t: "".join(t.splitlines(keepends=True)[:100])),
        error(AnnotationError, r"annotation does not match the frames of sequence uav6: 100 annotated frames")),
    "uav123_not_a_uav123_sequence": ("uav123", uav_anno_named("uav6[1]"),
        error(FileNotFoundError, r"uav6\[1\]\.txt: uav6\[1\] is not a UAV123 sequence")),
    "nfs_sequence_named_with_an_escape": ("nfs", nfs_folder("bee\x1b[31m"),
        error(AnnotationError, r"bee\\x1b\[31m\.txt: sequence name 'bee\\x1b\[31m' holds a control character")),
    "uav123_subrange_of_a_folder": ("uav123", uav_subrange(),
        loads(frames_775_to_1477_of_bird1)),
    "uav123_subrange_last_frame_missing": ("uav123", uav_subrange(last_frame_present=False),
        error(AnnotationError,
              r"bird1_2\.txt: frame not found: .*bird1/001477\.jpg "
              r"\(sequence bird1_2 has frames 000775\.jpg\.\.001477\.jpg\)")),
    "uav123_root_named_like_a_glob": ("uav123", move_root_under("uav[1]*"), loads(same_as_written)),
    # NfS (got10k.datasets.NfS)
    "nfs_empty_annotation": ("nfs", rewrite(lambda t: ""),
        error(AnnotationError, r"{annotation}: empty annotation file")),
    "nfs_text_for_a_number": ("nfs", replace_line(2, '1 x 12 31 28 2 0 0 0 "bee"'),
        error(AnnotationError, r"{annotation}, line 2: expected 'id xmin ymin xmax ymax \.\.\.'")),
    "nfs_label_with_a_space": ("nfs", replace_line(4, '1 13 12 33 28 4 0 0 0 "bee two"'),
        error(AnnotationError, r"{annotation}, line 4: 11 fields, the first line has 10")),
    "nfs_byte_order_mark": ("nfs", with_bom,
        error(AnnotationError, r"{annotation}, line 1: starts with a UTF-8 byte-order mark")),
    "nfs_crlf": ("nfs", rewrite(lambda t: t.replace("\n", "\r\n")), loads(same_as_written)),
    "nfs_240_fps_annotation_in_the_30_fps_folder": ("nfs", nfs_240_fps_annotation, loads(same_as_written)),
    "nfs_one_row_more_than_frames": ("nfs", rewrite(lambda t: t + t.splitlines(keepends=True)[-1]),
        loads(same_as_written)),
    "nfs_missing_frames_folder": ("nfs", remove_frames_folder,
        error(AnnotationError, r"frame folder not found: {frames} \(sequence bee")),
    "nfs_sequence_named_like_a_glob": ("nfs", nfs_folder("bee[1]"),
        loads(lambda s: [q.name for q in s] == ["bee[1]"] and len(s[0]) == FRAMES)),
    # TrackingNet (our reader: got10k's misses the frames/ level)
    "trackingnet_fewer_rows_than_frames": ("trackingnet", rewrite(lambda t: "".join(t.splitlines(keepends=True)[:7])),
        error(AnnotationError, r"{annotation}: 7 annotated frames but 9 images in {frames}")),
    "trackingnet_more_rows_than_frames": ("trackingnet", rewrite(lambda t: t + "1,1,5,5\n"),
        error(AnnotationError, r"{annotation}: 10 annotated frames but 9 images in {frames}")),
    "trackingnet_rows_of_3_and_5_values": ("trackingnet", rewrite(one_value_moved_to_the_next_row),
        error(AnnotationError, r"{annotation}, line 3: expected 4 numbers")),
    "trackingnet_empty_annotation": ("trackingnet", rewrite(lambda t: ""),
        error(AnnotationError, r"{annotation}: empty annotation file")),
    "trackingnet_missing_frames_folder": ("trackingnet", remove_frames_folder,
        error(AnnotationError, r"frame folder not found: {frames}")),
    "trackingnet_gap_in_frame_numbers": ("trackingnet", renumber_with_gap("4.jpg", "9.jpg"),
        error(AnnotationError,
              r"{annotation}: frame {frames}/4\.jpg is missing "
              r"\(the annotated frames are 0\.jpg\.\.8\.jpg, without gaps\)")),
    "trackingnet_byte_order_mark_and_crlf": ("trackingnet", crlf_and_bom,
        loads(same_as_written)),
    "trackingnet_annotation_named_dot": ("trackingnet", trackingnet_anno_named("."),
        error(AnnotationError, r"sequence name '\.' is not a name")),
    "trackingnet_annotation_named_like_a_glob": ("trackingnet", trackingnet_sequence_named("a*[0]"),
        loads(lambda s: [q.name for q in s] == ["a*[0]"])),
    "trackingnet_test_gap_in_frame_numbers": ("trackingnet_test", renumber_with_gap("4.jpg", "9.jpg"),
        error(AnnotationError, r"{frames}: frames must be numbered 0\.\.8 without gaps")),
    "trackingnet_test_two_rows": ("trackingnet_test", rewrite(lambda t: t + t),
        error(AnnotationError, r"{annotation}: 2 annotated frames but 9 images in {frames}")),
    # TNL2K (our reader: got10k has none)
    "tnl2k_zero_rows_are_an_absent_target": ("tnl2k", replace_line(5, "0,0,0,0"), loads(first_row_absent)),
    "tnl2k_nan_row": ("tnl2k", replace_line(5, "nan,nan,nan,nan"), loads(first_row_absent)),
    "tnl2k_empty_annotation": ("tnl2k", rewrite(lambda t: ""),
        error(AnnotationError, r"{annotation}: empty annotation file")),
    "tnl2k_semicolons": ("tnl2k", rewrite(lambda t: t.replace(",", ";")),
        error(AnnotationError, r"{annotation}, line 1: expected 4 numbers")),
    "tnl2k_missing_imgs_folder": ("tnl2k", remove_frames_folder,
        error(AnnotationError, r"frame folder not found: {frames} or .*s1/img \(annotation {annotation}\)")),
    "tnl2k_more_rows_than_frames": ("tnl2k", rewrite(lambda t: t + "1,1,5,5\n"),
        error(AnnotationError, r"{annotation}: 10 annotated frames but 9 images in {frames}")),
    "tnl2k_byte_order_mark_and_crlf": ("tnl2k", crlf_and_bom,
        loads(same_as_written)),
    "tnl2k_without_language_file": ("tnl2k", remove("s1/language.txt"),
        loads(lambda s: "language" not in s[0].attributes)),
}



@pytest.mark.parametrize("case", list(CASES))
def test_hostile_reader_input(tmp_path: Path, case: str) -> None:
    dataset, attack, expected = CASES[case]
    layout = LAYOUTS[dataset]
    dataset = layout.dataset
    root = tmp_path / "root"
    layout.write(root)
    moved = attack(root, layout)
    if isinstance(moved, Path):
        root = moved
    if isinstance(expected, tuple):
        kind, pattern = expected
        with pytest.raises(kind) as raised:
            load_dataset(dataset, root, layout.split)
        message = str(raised.value)
        assert "\n" not in message, message
        wanted = pattern.format(annotation=re.escape(str(root / layout.annotation)),
                                frames=re.escape(str(root / layout.frames)))
        assert re.search(wanted, message), (wanted, message)
    else:
        result = expected(load_dataset(dataset, root, layout.split))
        assert result is None or result is True, result


@pytest.mark.parametrize("dataset", ["otb", "uav123", "nfs"])
def test_each_annotation_file_is_read_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dataset: str) -> None:
    """One read and one parse (ours, which names a bad line): the got10k classes list the sequences but neither
    read nor parse an annotation again (OTB's constructor reads every file to leave out the empty ones)."""
    layout = LAYOUTS[dataset]
    root = tmp_path / "root"
    layout.write(root)
    annotation = os.path.abspath(root / layout.annotation)
    reads = []

    def counting(opener: Callable) -> Callable:
        def opened(file, *args, **kwargs):
            if isinstance(file, (str, os.PathLike)) and os.path.abspath(file) == annotation:
                reads.append(opener.__name__)
            return opener(file, *args, **kwargs)
        return opened

    # builtins.open: got10k's OTB and our code; io.open: pathlib's read_text/read_bytes; np.loadtxt: got10k's UAV123
    # and NfS readers (numpy opens through a reference to io.open of its own)
    monkeypatch.setattr(builtins, "open", counting(builtins.open))
    monkeypatch.setattr(io, "open", counting(io.open))
    monkeypatch.setattr(np, "loadtxt", counting(np.loadtxt))
    (sequence,) = load_dataset(layout.dataset, root, layout.split)
    assert len(reads) == 1, reads
    assert len(sequence) == (109 if dataset == "uav123" else FRAMES)
