"""The batched LoRAT tracking engine: the reference's inference pipeline (``trackit/runner/evaluation`` in
github.com/LitingLin/LoRAT) for many sequences at once, one batch element per sequence's current frame.

* ``initialize``: template cropped around the init box (area factor 2), padded with the whole first frame's mean
  colour, which also pads every later search crop; the template mask marks the token cells the box covers.
* ``track``: search region cropped around the previous box (sides raised to >= 10 px about its centre) with the
  variant's search area factor; one forward pass per batch; sigmoid, Hann window blended 0.55/0.45, argmax; the
  cell's box mapped back through the realised pixel-aligned crop, clipped to the image. Only a valid box that
  intersects the image moves the search region; the confidence is the cell's raw sigmoid score.

Crops are made on the engine's device; only B x 5 numbers come back to the host per step. Awkward input:

* init box non-finite, of zero/negative size or outside the image: ``ValueError``; partly outside: clipped;
* grayscale and RGBA frames are converted to RGB, other shapes raise ``ValueError``; small frames are padded;
* a frame size change within a sequence: boxes stay in pixels, clipped to the new frame, one warning per sequence;
* non-finite network output: the sequence keeps its last box with confidence 0, one warning per engine
  (``TrackState.nan_frames`` counts such frames).
"""
from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Sequence

import numpy as np
import torch

from ..data.sequence import to_rgb
from ..process import choose_threads, tune_cpu_allocator
from ..model import ModelConfig
from ..geometry import (apply_transform, clip_box, crop_image, crop_transform, invert_transform, normalize_images,
                        template_mask, xywh_to_xyxy, xyxy_to_xywh)
from .backends import build_network
from .network import NetworkBackend
from .per_sequence import PerSequenceNetwork
from .postprocess import WINDOW_PENALTY, hann_window, select_boxes

MIN_OBJECT_SIZE = 10.0  # px: the search crop never zooms in on less than a 10 x 10 box (reference min_object_size)

_state_ids = itertools.count()


# cv2.imread and similar readers return None for a file they cannot read, and the None travels on to the tracker.
MISSING_FRAME = ("the frame is missing (None instead of an image): did the image reader fail, e.g. cv2.imread "
                 "on a path that does not exist?")


@dataclass(eq=False)
class TrackState:
    """One sequence being tracked. ``box`` (x, y, w, h) and ``score`` are the latest output."""

    box: np.ndarray
    score: float
    frame_size: tuple[int, int]  # (W, H) of the latest frame
    template: torch.Tensor = field(repr=False)  # 3 x T x T, normalised, on the engine's device
    template_mask: torch.Tensor = field(repr=False)  # t x t long, 1 = token on the target
    fill: torch.Tensor = field(repr=False)  # (3,) mean colour of the first frame, 0..255
    search_box: np.ndarray = field(repr=False)  # x1 y1 x2 y2 the next search region is centred on
    frame_index: int = 0  # index of the latest frame (0 = the init frame)
    nan_frames: int = 0
    key: int = field(default_factory=lambda: next(_state_ids), repr=False)
    _size_warned: bool = field(default=False, repr=False)


class TrackingEngine:
    """Batched LoRAT inference.

    ``model``: a LoRAT network (``build_model`` / ``load_model``; unmerged adapters are merged into a copy), run by
    :func:`~lorat_plugin.engine.backends.build_network` on ``device`` (``cpu``, ``cuda:1``, ``mps`` ... or ``None``:
    the best available) at ``dtype`` (``fp32``, ``bf16``, ``fp16``, ``int8`` or ``None``: the device's default
    precision) with the backend ``options`` (``compile=True``, ``cuda_graphs=True``, ... :class:`BackendOptions`);
    or a ready :class:`~lorat_plugin.engine.network.NetworkBackend`, which is already bound to its device and
    precision (passing those too is an error).
    ``window_penalty`` / ``min_object_size``: the reference's Hann window weight (0.45) and least box side (10 px).

    ``initialize(frames, boxes)`` starts one sequence per frame; ``track(states, frames)`` advances each state by
    its next frame and returns (B x 4 boxes x, y, w, h, B scores). Both take H x W x 3 uint8 RGB numpy arrays
    (grayscale / RGBA / PIL are converted) or H x W x 3 uint8 torch tensors (already on the device: no copy).
    """

    def __init__(self, model: Any, *, device: torch.device | str | None = None,
                 dtype: torch.dtype | str | None = None, window_penalty: float = WINDOW_PENALTY,
                 min_object_size: float = MIN_OBJECT_SIZE, **options: bool | None) -> None:
        if isinstance(model, torch.nn.Module):
            self.network: NetworkBackend = build_network(model, device, dtype, **options)
        else:
            given = [name for name, value in (("device", device), ("dtype", dtype), *options.items())
                     if value is not None]
            if given:
                raise ValueError(f"TrackingEngine got a built network backend ({type(model).__name__}) and "
                                 f"{', '.join(given)}: a backend is already bound to its device, precision and "
                                 "options; pass the model instead, or the backend alone")
            self.network = model
        self.config: ModelConfig = self.network.config
        self.device: torch.device = self.network.device
        if self.device.type == "cpu":
            tune_cpu_allocator()  # the CLI's process-wide settings, for the Python API too (once per process)
            choose_threads()
        self.window_penalty = float(window_penalty)
        self.min_object_size = float(min_object_size)
        self._window = hann_window(self.config.search_grid, self.config.search_grid, self.device)
        self._search = torch.empty(0, 3, self.config.search_size, self.config.search_size, device=self.device)
        self._batch_key: tuple[int, ...] = ()
        self._batch_templates: tuple[torch.Tensor, torch.Tensor] | None = None
        self._nan_warned = False

    @property
    def dtype(self) -> torch.dtype:
        return self.network.dtype

    @property
    def preferred_batch_size(self) -> int:
        """How many sequences to keep in flight when nothing says otherwise: 1 where the network runs one sequence
        per call (the CPU default: a batch buys no throughput there and divides each sequence's speed; docs/speed.md,
        "Batch invariance"), 8 where one call takes the whole batch (GPUs)."""
        return 1 if isinstance(self.network, PerSequenceNetwork) else 8

    def _frames(self, frames: Sequence[Any]) -> list[torch.Tensor]:
        """:meth:`_frame` of each frame; a frame object given for several sequences (the targets of one video, the
        objects of a VOT frame) is converted and copied to the device once."""
        converted: dict[int, torch.Tensor] = {}
        for frame in frames:
            if id(frame) not in converted:
                converted[id(frame)] = self._frame(frame)
        return [converted[id(frame)] for frame in frames]

    def _frame(self, frame: Any) -> torch.Tensor:
        """3 x H x W uint8 view of a frame on the engine's device."""
        if frame is None:  # numpy would make a 0-d object array of it and the shape error would hide the cause
            raise ValueError(MISSING_FRAME)
        if isinstance(frame, torch.Tensor):
            if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != torch.uint8:
                raise ValueError(f"a tensor frame must be H x W x 3 uint8 RGB, got {tuple(frame.shape)} {frame.dtype}")
            tensor = frame
        else:
            with warnings.catch_warnings():  # decoded images are often read-only views; the engine never writes
                warnings.simplefilter("ignore", UserWarning)
                tensor = torch.from_numpy(to_rgb(frame))
        # non_blocking only on CUDA: elsewhere (MPS) a converted temporary may be freed before the copy runs
        return tensor.to(self.device, non_blocking=self.device.type == "cuda").permute(2, 0, 1)

    @torch.inference_mode()
    def initialize(self, frames: Sequence[Any], boxes: Any) -> list[TrackState]:
        """Start one sequence per (frame, box x, y, w, h). Returns their states."""
        boxes = np.asarray(boxes, dtype=np.float64)
        if boxes.ndim == 1:
            boxes = boxes[None]
        if boxes.ndim != 2 or boxes.shape[1] != 4 or len(boxes) != len(frames):
            raise ValueError(f"initialize needs one x,y,w,h box per frame: {len(frames)} frames, boxes of shape "
                             f"{boxes.shape}")
        config = self.config
        states = []
        for image, box in zip(self._frames(frames), boxes):
            height, width = image.shape[1:]
            box_xyxy = _valid_init_box(box, width, height)
            fill = image.float().contiguous().mean(dim=(1, 2))
            scale, translation = crop_transform(box_xyxy, config.template_area_factor, config.template_size)
            template, scale, translation = crop_image(image, scale, translation, config.template_size, fill)
            template = normalize_images(template[None])[0]
            mask = template_mask(apply_transform(box_xyxy, scale, translation), config.template_size,
                                 config.template_grid)
            states.append(TrackState(box=xyxy_to_xywh(box_xyxy), score=1.0, frame_size=(width, height),
                                     template=template, template_mask=torch.from_numpy(mask).to(self.device),
                                     fill=fill, search_box=box_xyxy))
        return states

    @torch.inference_mode()
    def track(self, states: Sequence[TrackState], frames: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
        """Advance each state by one frame. Returns (B x 4 boxes x, y, w, h, float64; B confidences)."""
        batch = len(states)
        if batch != len(frames):
            raise ValueError(f"track needs one frame per state: {batch} states, {len(frames)} frames")
        if batch == 0:
            return np.zeros((0, 4)), np.zeros(0)
        config = self.config
        if self._search.shape[0] < batch:
            self._search = torch.empty(batch, 3, config.search_size, config.search_size, device=self.device)
        search = self._search[:batch]
        scales, translations, sizes = (np.empty((batch, 2)) for _ in range(3))
        for i, (state, image) in enumerate(zip(states, self._frames(frames))):
            height, width = image.shape[1:]
            if (width, height) != state.frame_size and not state._size_warned:
                warnings.warn(f"frame {state.frame_index + 1} is {width}x{height} but the sequence's previous frame "
                              f"was {state.frame_size[0]}x{state.frame_size[1]}: boxes stay in pixel coordinates "
                              "(nothing is rescaled) and are clipped to the new frame", RuntimeWarning, stacklevel=3)
                state._size_warned = True
            state.frame_size = (width, height)
            sizes[i] = width, height
            anchor = clamp_min_size(state.search_box, self.min_object_size)
            scale, translation = crop_transform(anchor, config.search_area_factor, config.search_size)
            _, scales[i], translations[i] = crop_image(image, scale, translation, config.search_size, state.fill,
                                                       out=search[i])
        search = normalize_images(search)
        templates, masks = self._templates(states)
        score_map, cell_boxes = self.network(templates, search, masks)
        picked = select_boxes(score_map, cell_boxes, self._window, config.search_size, self.window_penalty)
        picked = picked.cpu().numpy().astype(np.float64)  # the one device -> host copy per step
        # Back to frame pixels through the realised crop transform (x / s - t / s, as the reference computes it).
        out = apply_transform(picked[:, :4], *invert_transform(scales, translations))
        scores = picked[:, 4]
        finite = np.isfinite(out).all(axis=1) & np.isfinite(scores)  # before clipping, which would tame inf
        out = clip_box(out, sizes[:, :1], sizes[:, 1:])
        valid = finite & (out[:, 0] < out[:, 2]) & (out[:, 1] < out[:, 3])

        for i, state in enumerate(states):
            state.frame_index += 1
            if finite[i]:
                state.box = xyxy_to_xywh(out[i])
                state.score = float(scores[i])
                if valid[i]:  # only a box with area inside the image moves the search region
                    state.search_box = out[i].copy()
            else:
                state.nan_frames += 1
                state.score = 0.0
                if not self._nan_warned:
                    warnings.warn(f"the network returned non-finite values (batch element {i}, frame "
                                  f"{state.frame_index}): the sequence keeps its last box with confidence 0 (further "
                                  "occurrences are counted in TrackState.nan_frames, without warning)", RuntimeWarning,
                                  stacklevel=3)
                    self._nan_warned = True
        return np.array([state.box for state in states]), np.array([state.score for state in states])

    def _templates(self, states: Sequence[TrackState]) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch's templates and masks, re-stacked only when the set of sequences changes."""
        key = tuple(state.key for state in states)
        if key != self._batch_key or self._batch_templates is None:
            self._batch_templates = (torch.stack([s.template for s in states]),
                                     torch.stack([s.template_mask for s in states]))
            self._batch_key = key
        return self._batch_templates


def track_frames(engine: TrackingEngine, frames: Iterable[Any], init_box: Any
                 ) -> Iterator[tuple[np.ndarray, np.ndarray, float]]:
    """Track one target through a stream of frames: yields (frame as H x W x 3 uint8 RGB, box x, y, w, h,
    confidence) per frame; the first frame gives the (clipped) init box with confidence 1. The one-target case of
    :func:`track_targets`."""
    for frame, boxes, scores in track_targets(engine, frames, np.asarray(init_box, dtype=np.float64)[None]):
        yield frame, boxes[0], float(scores[0])


def track_targets(engine: TrackingEngine, frames: Iterable[Any], init_boxes: Any
                  ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Track K targets of one stream of frames together: yields (frame as H x W x 3 uint8 RGB, K x 4 boxes x, y, w,
    h, K confidences) per frame; the first frame gives the (clipped) init boxes with confidence 1.

    The targets are one batch whose frames are the same image: one ``engine.track`` call per frame advances them
    all. Where the engine calls its network once per sequence (the CPU default, ``engine/per_sequence.py``) each
    target's boxes are bit-identical to the boxes it gets tracked alone.
    """
    init_boxes = np.asarray(init_boxes, dtype=np.float64)
    if init_boxes.ndim != 2 or init_boxes.shape[1] != 4 or len(init_boxes) == 0:
        raise ValueError(f"track_targets needs K >= 1 init boxes x, y, w, h (K x 4), got shape {init_boxes.shape}")
    targets = len(init_boxes)
    states: list[TrackState] | None = None
    for frame in frames:
        frame = to_rgb(frame)
        if states is None:  # the same frame object for the K targets: the engine converts it once
            states = engine.initialize([frame] * targets, init_boxes)
            yield frame, np.array([state.box for state in states]), np.array([state.score for state in states])
        else:
            boxes, scores = engine.track(states, [frame] * targets)
            yield frame, boxes, scores


def _valid_init_box(box: np.ndarray, width: int, height: int) -> np.ndarray:
    """x, y, w, h -> x1 y1 x2 y2 clipped to the image; ValueError for boxes that cannot start a track."""
    if not np.all(np.isfinite(box)):
        raise ValueError(f"init box {box.tolist()} has non-finite values")
    if box[2] <= 0 or box[3] <= 0:
        raise ValueError(f"init box {box.tolist()} (x, y, w, h) has zero or negative size")
    clipped = clip_box(xywh_to_xyxy(box), width, height)
    if not (clipped[0] < clipped[2] and clipped[1] < clipped[3]):
        raise ValueError(f"init box {box.tolist()} (x, y, w, h) lies outside the {width}x{height} image")
    return clipped


def clamp_min_size(box_xyxy: np.ndarray, min_size: float) -> np.ndarray:
    """The x1 y1 x2 y2 box with width and height raised to at least ``min_size`` about its centre (through
    centre/size, as the reference computes it)."""
    cx, cy = (box_xyxy[0] + box_xyxy[2]) / 2.0, (box_xyxy[1] + box_xyxy[3]) / 2.0
    w, h = max(box_xyxy[2] - box_xyxy[0], min_size), max(box_xyxy[3] - box_xyxy[1], min_size)
    return np.array((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2))
