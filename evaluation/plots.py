"""Success / precision plots (PNG, matplotlib's Agg backend: no display needed), several trackers per plot.

Each tracker keeps its colour of the run (``lorat_plugin.palette``, in the order of ``result["trackers"]``) in every
plot, whatever its rank. The figures are drawn at 100 dpi and shown at their own size in report.html, so text of
:data:`TEXT_POINTS` is about 14 px there, the page's body text.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from lorat_plugin.files import atomic_path
from lorat_plugin.palette import tracker_colours, unit_colour

from . import metrics as M

_STYLES = ["-", "--", "-.", ":"]
DPI = 100
TEXT_POINTS = 10.5  # 10.5 pt at 100 dpi is 14.6 px


def _figure():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    with plt.rc_context({"font.size": TEXT_POINTS}):
        fig, ax = plt.subplots(figsize=(6.4, 4.8), dpi=DPI)
    return plt, fig, ax


def _save(plt, fig, path: Path) -> Path:
    fig.tight_layout()
    with atomic_path(path) as tmp:  # whole or absent; a full disk names the file
        fig.savefig(tmp, format="png")
    plt.close(fig)
    return path


def legend_label(text: str) -> str:
    """``text`` as a legend shows it: matplotlib leaves out labels that start with ``_``, so such a tracker name
    (e.g. what sanitising ``<script>`` leaves) gets a leading space instead of losing its entry."""
    return f" {text}" if text.startswith("_") else text


def _curve_plot(path: Path, x: np.ndarray, curves: dict[str, tuple[list[float], float]], *, title: str,
                xlabel: str, ylabel: str, legend_format: str = "{name} [{score:.1f}]") -> Path:
    """``curves`` in the run's order of trackers (their colours); the legend lists them best first."""
    plt, fig, ax = _figure()
    colours = tracker_colours(curves)
    ordered = sorted(curves.items(), key=lambda item: -item[1][1])  # best first, as the toolkits do
    for i, (name, (curve, score)) in enumerate(ordered):
        ax.plot(x, curve, _STYLES[(i // 10) % len(_STYLES)], linewidth=2.0, color=unit_colour(colours[name]),
                label=legend_label(legend_format.format(name=name, score=100 * score)))
    ax.set(xlabel=xlabel, ylabel=ylabel, xlim=(float(x[0]), float(x[-1])), ylim=(0, 1.0))
    ax.set_title(title, fontsize=TEXT_POINTS)
    ax.tick_params(labelsize=TEXT_POINTS)
    ax.xaxis.label.set_size(TEXT_POINTS)
    ax.yaxis.label.set_size(TEXT_POINTS)
    ax.grid(True, alpha=0.4)
    ax.legend(loc="lower left" if "Success" in title else "lower right", fontsize=TEXT_POINTS)
    return _save(plt, fig, path)


def plot_report(result: dict, output_dir: Path) -> list[Path]:
    trackers = result["trackers"]
    title = result["title"]
    written = []
    first = next(iter(trackers.values()))
    if "got10k" in first:
        curves = {n: (e["got10k"]["overall"]["succ_curve"], e["got10k"]["overall"]["ao"]) for n, e in trackers.items()}
        written.append(_curve_plot(output_dir / "success_plot.png", M.GOT10K_THRESHOLDS, curves,
                                   title=f"Success plot on {title}", xlabel="Overlap threshold",
                                   ylabel="Success rate", legend_format="{name} [AO {score:.1f}]"))
    elif "trackingnet" in first:
        for key, x, label, xlabel in (("success", M.TRACKINGNET_X, "Success", "Overlap threshold"),
                                      ("precision", M.TRACKINGNET_PRECISION, "Precision",
                                       "Location error threshold (px)"),
                                      ("norm_precision", M.TRACKINGNET_NORM_PRECISION, "Normalized precision",
                                       "Normalized location error threshold")):
            curves = {n: (e["trackingnet"][f"{key}_curve"], e["trackingnet"][key]) for n, e in trackers.items()}
            written.append(_curve_plot(output_dir / f"{key}_plot.png", x, curves, title=f"{label} plot on {title}",
                                       xlabel=xlabel, ylabel=label.split()[-1].capitalize()))
    else:
        specs = (("success", "auc", M.SUCCESS_THRESHOLDS, "Success plots of OPE", "Overlap threshold",
                  "Success rate", "{name} [AUC {score:.1f}]"),
                 ("precision", "precision", M.PRECISION_THRESHOLDS, "Precision plots of OPE",
                  "Location error threshold (px)", "Precision", "{name} [P@20 {score:.1f}]"),
                 ("norm_precision", "norm_precision", M.NORM_PRECISION_THRESHOLDS,
                  "Normalized precision plots of OPE", "Normalized location error threshold", "Precision",
                  "{name} [P_norm@0.2 {score:.1f}]"))
        for key, score, x, label, xlabel, ylabel, legend in specs:
            curves = {n: (e["ope"][f"{key}_curve"], e["ope"][score]) for n, e in trackers.items()}
            written.append(_curve_plot(output_dir / f"{key}_plot.png", x, curves, title=f"{label} on {title}",
                                       xlabel=xlabel, ylabel=ylabel, legend_format=legend))
    if first.get("attributes"):  # LaSOT's challenge attributes, the procedural benchmark's challenges
        written.append(_attribute_plot(output_dir / "attributes_auc.png", result))
    return written


def _attribute_plot(path: Path, result: dict) -> Path:
    plt, fig, ax = _figure()
    fig.set_size_inches(9.6, 4.8)
    trackers = result["trackers"]
    colours = tracker_colours(trackers)
    counts = next(iter(trackers.values()))["attributes"]
    attributes = list(counts)
    width = 0.8 / max(1, len(trackers))
    for i, (name, entry) in enumerate(trackers.items()):
        values = [100 * entry.get("attributes", {}).get(a, {}).get("auc", np.nan) for a in attributes]
        ax.bar(np.arange(len(attributes)) + (i - (len(trackers) - 1) / 2) * width, values, width,
               label=legend_label(name),
               color=unit_colour(colours[name]))
    crowded = len(attributes) > 6  # slant the names so that long ones do not run into each other
    ax.set_xticks(np.arange(len(attributes)), [f"{a} ({counts[a]['sequences']})" for a in attributes],
                  fontsize=TEXT_POINTS, rotation=25 if crowded else 0, ha="right" if crowded else "center")
    ax.set(ylabel="AUC (%)", ylim=(0, 100))
    ax.set_title(f"Success AUC per attribute on {result['title']}", fontsize=TEXT_POINTS)
    ax.grid(True, axis="y", alpha=0.4)
    ax.legend(fontsize=TEXT_POINTS)
    return _save(plt, fig, path)
