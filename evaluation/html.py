"""The report as one self-contained HTML page: what a researcher opens to see where a tracker fails.

The page holds the metrics table, the plots, every sequence's scores (worst first) and, for the worst sequences, a
strip of frames with the ground truth and each tracker's boxes drawn. Images are embedded as ``data:`` URIs and the
page loads nothing else (its Content-Security-Policy forbids it), so it can be mailed or archived as one file.
"""
from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from lorat_plugin.data.sequence import Sequence
from lorat_plugin.files import atomic_write_text
from lorat_plugin.geometry import rect_iou
from lorat_plugin.palette import GROUND_TRUTH, frame_number, hex_colour, numbering_note, tracker_colours

from .formats import TrackerResults, native_boxes
from .report import SPEED_DECIMALS, describe_model, environment_notes, headline, per_sequence_scores, speed_notes

PAGE = "report.html"
STRIP_HEIGHT = 120  # px of each frame in a strip
_CSS = """body{font:14px/1.4 sans-serif;margin:24px;color:#222}table{border-collapse:collapse;margin:8px 0 16px}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}td:first-child,th:first-child{text-align:left}
.plots img{max-width:100%;margin:0 8px 8px 0}.strip{display:flex;flex-wrap:wrap;gap:6px}figure{margin:0}
figcaption,.note,footer{font-size:12px;color:#555}.key{font-weight:bold;margin-right:12px;white-space:nowrap}
.swatch{display:inline-block;width:14px;height:14px;border:1px solid #444;vertical-align:-2px;margin-right:4px}"""


def write_html_report(result: dict, output_dir: str | Path, sequences: list[Sequence], trackers: list[TrackerResults],
                      *, plots: Iterable[Path] | None = None, strips: int = 5, frames_per_strip: int = 6,
                      footer: Iterable[str] = ()) -> Path:
    """Write ``<output_dir>/report.html`` for ``result`` (``evaluate``'s output on ``sequences`` for ``trackers``).

    ``plots``: the PNG files ``write_report`` wrote (rendered here when None); ``strips``: how many of the worst
    sequences of the first tracker get a strip of ``frames_per_strip`` frames; ``footer``: lines shown at the end.
    """
    output_dir = Path(output_dir)
    if plots is None:
        from .plots import plot_report

        plots = plot_report(result, output_dir)
    names = list(result["trackers"])
    scores = {name: per_sequence_scores(entry) for name, entry in result["trackers"].items()}
    first = scores[names[0]]
    worst = sorted(first, key=lambda s: (next(iter(first[s].values())), s))  # as per_sequence_table
    by_name = {s.name: s for s in sequences}
    title = f"{result['title']}{' ' + result['split'] if result.get('split') else ''}"
    parts = [f"<h1>{_e(title)}: {len(names)} tracker{'s' * (len(names) > 1)}, {result['sequences']} sequences</h1>",
             f"<p class=note>{_e(result['protocol'])}</p>", _metrics_table(result), _attribute_table(result),
             "<div class=plots>" + "".join(f"<img alt='{_e(p.stem)}' src='{_uri(p.read_bytes(), 'image/png')}'>"
                                           for p in plots if Path(p).suffix == ".png") + "</div>"]
    if worst:
        parts.append(f"<h2>Per sequence, worst first by {_e(next(iter(first[worst[0]])))} of "
                     f"{_e(names[0])}</h2>" + _per_sequence_table(scores, worst))
    if strips > 0 and worst:
        colours = tracker_colours(names)  # the plots' colours: the same names in the same order
        legend = " ".join(f"<span class=key><span class=swatch style='background:{hex_colour(c)}'></span>"
                          f"{_e(n)}</span>" for n, c in [("ground truth", GROUND_TRUTH), *colours.items()])
        first_sequence = by_name[worst[0]]
        numbering = numbering_note(frame_number(first_sequence.frames[0], 0)) if len(first_sequence) else ""
        parts.append(f"<h2>The {min(strips, len(worst))} worst sequences</h2><p>{legend}</p>"
                     f"<p class=note>IoU: of {_e(names[0])}; {_e(numbering)}</p>")
        for name in worst[:strips]:
            parts.append(f"<h3>{_e(name)}</h3>" + _strip(by_name[name], trackers, colours, result["dataset"],
                                                          frames_per_strip))
    parts.append("<footer>" + "".join(f"<p>{_e(line)}</p>" for line in footer) + "</footer>")
    page = ("<!DOCTYPE html><html lang=en><head><meta charset=utf-8><meta http-equiv=Content-Security-Policy "
            "content=\"default-src 'none'; img-src data:; style-src 'unsafe-inline'\">"
            f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>\n" + "\n".join(parts) + "\n</body></html>\n")
    path = output_dir / PAGE
    atomic_write_text(path, page)
    return path


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _cell(value: float | str | None, decimals: int = 2) -> str:
    if isinstance(value, str):  # a note in place of a number, e.g. "no model"
        return f"<td>{_e(value)}</td>"
    return "<td>-</td>" if value is None or not np.isfinite(value) else f"<td>{value:.{decimals}f}</td>"


def _metrics_table(result: dict) -> str:
    rows = {name: headline(entry) for name, entry in result["trackers"].items()}
    models = {name: describe_model(entry["model"]) if entry.get("model") else "-"
              for name, entry in result["trackers"].items()}
    columns = list(next(iter(rows.values())))
    show_models = any(m != "-" for m in models.values())  # variant, weights hash, precision, backend
    head = "".join(f"<th>{_e(c)}</th>" for c in ["tracker", *["model"] * show_models, *columns])
    body = "".join(f"<tr><td>{_e(name)}</td>" + f"<td>{_e(models[name])}</td>" * show_models
                   + "".join(_cell(row.get(c), SPEED_DECIMALS.get(c, 2)) for c in columns) + "</tr>"
                   for name, row in rows.items())
    # what the speed columns mean and how each run ran, under the table as in table.txt
    notes = [*speed_notes(result["trackers"]), *environment_notes(result["trackers"])]
    return f"<table><tr>{head}</tr>{body}</table>" + "".join(f"<p class=note>{_e(line)}</p>" for line in notes)


def _attribute_table(result: dict) -> str:
    """OPE success AUC (%) per challenge attribute, one column per tracker; empty where the benchmark names none."""
    trackers = result["trackers"]
    counts = next(iter(trackers.values())).get("attributes", {})
    if not counts:
        return ""
    head = "<th>challenge</th><th>sequences</th>" + "".join(f"<th>{_e(name)}</th>" for name in trackers)
    body = "".join(f"<tr><td>{_e(attribute)}</td><td>{count['sequences']}</td>"
                   + "".join(_cell(100 * entry["attributes"][attribute]["auc"]
                                   if attribute in entry.get("attributes", {}) else None, 1)
                             for entry in trackers.values()) + "</tr>"
                   for attribute, count in counts.items())
    return (f"<h2>Success AUC (%) per challenge</h2><table class=attributes><tr>{head}</tr>{body}</table>"
            "<p class=note>Each row scores only the sequences that have the challenge (OPE).</p>")


def _per_sequence_table(scores: dict[str, dict[str, dict[str, float]]], order: list[str]) -> str:
    columns = [(name, c) for name, by_seq in scores.items() if by_seq for c in next(iter(by_seq.values()))]
    head = "<th>sequence</th>" + "".join(f"<th>{_e(name)}<br>{_e(c)}</th>" for name, c in columns)
    body = "".join(f"<tr><td>{_e(s)}</td>" + "".join(_cell(scores[n].get(s, {}).get(c)) for n, c in columns)
                   + "</tr>" for s in order)
    return f"<table><tr>{head}</tr>{body}</table>"


def _strip(sequence: Sequence, trackers: list[TrackerResults], colours: dict[str, tuple[int, int, int]],
           dataset: str, count: int) -> str:
    """Evenly spaced frames after the first (the given box), downscaled JPEGs with the boxes drawn in each
    tracker's colour of ``colours``."""
    frames = np.unique(np.linspace(1, len(sequence) - 1, count).round().astype(int)) if len(sequence) > 1 else [0]
    predicted = [(native_boxes(t.runs[sequence.name][0], dataset, -1.0), colours[t.name]) for t in trackers
                 if sequence.name in t.runs and t.name in colours]
    try:
        figures = [_frame(sequence, i, predicted) for i in frames]
    except OSError as e:  # the metrics stand without the frames; the page says why there is no strip
        return f"<p class=note>No strip: {_e(e)} (has the benchmark moved? --root says where it is now)</p>"
    return "<div class=strip>" + "".join(figures) + "</div>"


def _frame(sequence: Sequence, i: int, predicted: list[tuple[np.ndarray, tuple[int, int, int]]]) -> str:
    from PIL import Image, ImageDraw

    with Image.open(sequence.frames[i]) as image:
        scale = STRIP_HEIGHT / image.height
        image = image.convert("RGB").resize((max(1, round(image.width * scale)), STRIP_HEIGHT))
    draw = ImageDraw.Draw(image)
    for box, colour in [*((boxes[i], c) for boxes, c in predicted), (sequence.boxes[i], GROUND_TRUTH)]:
        if np.all(np.isfinite(box)) and box[2] > 0 and box[3] > 0:
            x, y, w, h = (float(v) * scale for v in box)
            draw.rectangle([x, y, x + w, y + h], outline=colour, width=2)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85)
    iou = rect_iou(predicted[0][0][i:i + 1], sequence.boxes[i:i + 1])[0] if predicted else np.nan
    caption = _e(f"frame {frame_number(sequence.frames[i], i)}" + (", target absent" if not sequence.visible[i] else
                                 f", IoU {iou:.2f}" if np.isfinite(iou) else ""))
    return (f"<figure><img alt='{_e(sequence.name)} {caption}' src='{_uri(buffer.getvalue(), 'image/jpeg')}'>"
            f"<figcaption>{caption}</figcaption></figure>")
