"""LoRAT as a got10k toolkit tracker (``got10k.trackers.Tracker``), and offline versions of got10k's experiments that
would otherwise try to download their dataset.

    from got10k.experiments import ExperimentGOT10k
    from lorat_plugin.trackers import LoRATTracker

    tracker = LoRATTracker(variant="B-224", weights_dir="~/weights")       # or LoRATTracker(model)
    # tracker.name: LoRAT-B-224-<weights hash>-<precision>, the results folder of exactly this model
    experiment = ExperimentGOT10k("~/data/GOT-10k", subset="val")
    experiment.run(tracker)
    experiment.report([tracker.name])
"""
from __future__ import annotations

import logging
import os
import time
from typing import Any

import numpy as np
import torch
from got10k.experiments import ExperimentOTB, ExperimentTColor128
from got10k.trackers import Tracker

from ..data.sequence import read_image
from ..engine import TrackingEngine, TrackState, precision_name
from ..environment import format_environment, run_environment
from .baselines import as_rgb

log = logging.getLogger(__name__)


class LoRATTracker(Tracker):
    """got10k's ``init(image, box)`` / ``update(image) -> box`` contract on the batched engine (a batch of one).

    Args:
        model: a built LoRAT network; if omitted, the model the weight arguments name, resolved by
            :class:`lorat_plugin.model.sources.ModelSpec` (``LORAT_*`` variables, else the shipped demo model).
        device, dtype: where and in which precision the network runs (``None``: ``LORAT_DEVICE`` / ``LORAT_DTYPE``,
            else the engine's precision policy).
        name: got10k's results sub-folder. Default: the model's identity (:meth:`ModelSpec.identity`), so results
            of another model or precision never land in (and get skipped because of) this one's folder.
        one_based: the boxes are 1-based (OTB/LaSOT files as got10k passes them): 1 is taken off x and y before
            tracking and added back to the output.

    Images: PIL images, RGB/grayscale/RGBA arrays or file paths. Boxes: x, y, w, h. ``score`` is the last frame's
    confidence; ``identity`` the model's identity.
    """

    def __init__(self, model: torch.nn.Module | None = None, *, variant: str | None = None,
                 backbone_weights: str | os.PathLike | None = None, checkpoint: str | os.PathLike | None = None,
                 weights_dir: str | os.PathLike | None = None, device: torch.device | str | None = None,
                 dtype: torch.dtype | str | None = None, name: str | None = None, one_based: bool = False) -> None:
        from ..model.sources import ModelSpec, model_identity

        spec = None
        if model is None:
            spec = ModelSpec.resolve(variant, backbone_weights=backbone_weights, checkpoint=checkpoint,
                                     weights_dir=weights_dir, device=device, dtype=dtype)
            model, device, dtype = spec.load(), spec.device, spec.dtype
        elif variant is not None or backbone_weights or checkpoint or weights_dir:
            raise ValueError("pass either a built model or variant/weight paths, not both")
        self.engine = TrackingEngine(model, device=device, dtype=dtype)
        precision = precision_name(self.engine.dtype)
        self.identity = model_identity(precision, spec=spec, model=model)
        super().__init__(name=name or self.identity["name"], is_deterministic=True)
        log.info("LoRATTracker %s: %s on %s, %s", self.name, self.identity, self.engine.device,
                 type(self.engine.network).__name__)
        log.info("LoRATTracker %s runs on: %s", self.name,
                 format_environment(run_environment(self.engine.device, batch_size=1, world_size=1)))
        self.offset = 1.0 if one_based else 0.0
        self.state: TrackState | None = None

    def init(self, image: Any, box: Any) -> None:
        self.state = None  # a failed init must not leave the previous sequence's state to update()
        box = np.asarray(box, dtype=np.float64).reshape(-1)
        if box.shape != (4,):
            raise ValueError(f"init box must be 4 numbers x, y, w, h, got {box.tolist()}")
        box = box - (self.offset, self.offset, 0.0, 0.0)
        self.state = self.engine.initialize([as_rgb(image)], box[None])[0]

    def update(self, image: Any) -> np.ndarray:
        if self.state is None:
            raise RuntimeError("LoRATTracker.update() without a successful init() on this sequence")
        boxes, _ = self.engine.track([self.state], [as_rgb(image)])
        return boxes[0] + (self.offset, self.offset, 0.0, 0.0)

    def track(self, img_files: list[str], box: Any, visualize: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """got10k's ``Tracker.track`` (what its experiments call) with the frames decoded as `lorat evaluate` decodes
        them (:func:`lorat_plugin.data.read_image`): got10k's own loop converts every frame with PIL's
        ``convert("RGB")``, which clips 16-bit and float frames instead of scaling them."""
        boxes = np.zeros((len(img_files), 4))
        boxes[0] = box
        times = np.zeros(len(img_files))
        for index, file in enumerate(img_files):
            image = read_image(file)
            start = time.perf_counter()
            if index == 0:
                self.init(image, box)
            else:
                boxes[index] = self.update(image)
            times[index] = time.perf_counter() - start
            if visualize:
                from got10k.utils.viz import show_frame
                from PIL import Image

                show_frame(Image.fromarray(image), boxes[index])
        return boxes, times

    @property
    def score(self) -> float:
        return self.state.score if self.state is not None else float("nan")


class OfflineExperimentOTB(ExperimentOTB):
    """``ExperimentOTB`` that reads a local copy and never downloads (got10k 0.1.3 hard-codes ``download=True``,
    which fails offline and for partial copies). Sequences of the version's list that are absent are skipped
    with got10k's own warning."""

    def __init__(self, root_dir: str | os.PathLike, version: int | str = 2015, result_dir: str = "results",
                 report_dir: str = "reports") -> None:
        from got10k.datasets import OTB

        self.dataset = OTB(str(root_dir), version, download=False)
        self.result_dir = os.path.join(result_dir, "OTB" + str(version))
        self.report_dir = os.path.join(report_dir, "OTB" + str(version))
        self.nbins_iou = 21
        self.nbins_ce = 51


class OfflineExperimentTColor128(ExperimentTColor128):
    """``ExperimentTColor128`` without the download attempt (see :class:`OfflineExperimentOTB`)."""

    def __init__(self, root_dir: str | os.PathLike, result_dir: str = "results", report_dir: str = "reports") -> None:
        from got10k.datasets import TColor128

        self.dataset = TColor128(str(root_dir), download=False)
        self.result_dir = os.path.join(result_dir, "TColor128")
        self.report_dir = os.path.join(report_dir, "TColor128")
        self.nbins_iou = 21
        self.nbins_ce = 51
