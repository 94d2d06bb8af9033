"""The training input pipeline: a map-style dataset of pairs keyed by (epoch, sample index), the per-rank batch
sampler, fast frame decoding and the DataLoader.

Every sample draws its randomness from its own generator, seeded by (seed, epoch, index). What a sample looks
like therefore depends neither on the worker that made it nor on the number of processes, and a resumed run sees
exactly the samples an uninterrupted one would. The global batch of step ``s`` is samples ``s*B .. s*B + B - 1``,
split into accumulation micro-steps and then ranks, so 1 process and N processes train on the same batches.
"""
from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from torchvision.io import ImageReadMode, decode_jpeg

from ..data import FrameError
from ..geometry import clip_box, xywh_to_xyxy
from .pairs import PairRecipe, make_pair
from .source import TrainingSource, epoch_plan, sample_frames, sample_track

log = logging.getLogger(__name__)

_JPEG = {".jpg", ".jpeg", ".jpe"}


def decode_frame(path: str | Path) -> torch.Tensor:
    """A frame as uint8 3 x H x W RGB. JPEG goes through torchvision's libjpeg-turbo decoder (about 1.5x faster
    than PIL's, which reads the other formats)."""
    path = str(path)
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError as e:
        raise FrameError(f"frame not found: {path}") from e
    except OSError as e:
        raise FrameError(f"cannot read frame {path}: {e}") from e
    if Path(path).suffix.lower() in _JPEG:
        try:
            with warnings.catch_warnings():  # torchvision 0.29 deprecates its image I/O in favour of TorchCodec
                warnings.simplefilter("ignore", DeprecationWarning)
                return decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)
        except (RuntimeError, ValueError):
            pass  # builds without libjpeg, odd files: let PIL try, and word the error
    from ..data import read_image
    array = read_image(path)
    return torch.from_numpy(array if array.flags.writeable else array.copy()).permute(2, 0, 1).contiguous()


def _box_in_frame(box_xywh: np.ndarray, image: torch.Tensor) -> np.ndarray | None:
    """x1 y1 x2 y2 fitted into the frame, or None if nothing of it is left (the reference's cleaning filter)."""
    box = clip_box(xywh_to_xyxy(box_xywh), image.shape[-1], image.shape[-2])
    return box if (box[2:] > box[:2]).all() else None


class PairDataset(Dataset):
    """``dataset[(epoch, index)]`` -> one training pair (see :func:`lorat_plugin.train.pairs.make_pair`)."""

    max_resamples = 100

    def __init__(self, source: TrainingSource, recipe: PairRecipe, *, samples_per_epoch: int, seed: int,
                 max_gap: int) -> None:
        self.source, self.recipe, self.seed, self.max_gap = source, recipe, seed, max_gap
        self.samples_per_epoch = samples_per_epoch
        self._plan: tuple[int, np.ndarray, np.ndarray] | None = None

    def __len__(self) -> int:
        return self.samples_per_epoch

    def plan(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        if self._plan is None or self._plan[0] != epoch:
            self._plan = (epoch, *epoch_plan(self.source, self.samples_per_epoch, self.seed, epoch))
        return self._plan[1], self._plan[2]

    def __getitem__(self, key: tuple[int, int]) -> dict[str, torch.Tensor]:
        epoch, index = key
        rng = np.random.Generator(np.random.PCG64([self.seed, epoch, index]))
        datasets, videos = self.plan(epoch)
        dataset_id, video = int(datasets[index]), int(videos[index])
        for _ in range(self.max_resamples):
            sample = self._try(dataset_id, video, rng)
            if sample is not None:
                return sample
            # The reference draws a fresh pair from a random dataset (by weight) and video.
            dataset_id = int(rng.choice(len(self.source.datasets), p=self.source.weights))
            video = int(rng.integers(self.source.datasets[dataset_id].num_videos))
        raise RuntimeError(f"no valid training pair after {self.max_resamples} draws for sample {index} of epoch "
                           f"{epoch}: are the boxes of the training data mostly tiny or outside their frames?")

    def _try(self, dataset_id: int, video: int, rng: np.random.Generator) -> dict[str, torch.Tensor] | None:
        dataset = self.source.datasets[dataset_id]
        track = sample_track(dataset, video, rng)
        z_frame, x_frame = sample_frames(dataset.track_valid(track), self.max_gap, rng)
        z_image = decode_frame(dataset.frame_path(track, z_frame))
        x_image = z_image if x_frame == z_frame else decode_frame(dataset.frame_path(track, x_frame))
        z_box = _box_in_frame(dataset.box(track, z_frame), z_image)
        x_box = _box_in_frame(dataset.box(track, x_frame), x_image)
        if z_box is None or x_box is None:
            return None
        return make_pair(z_image, z_box, x_image, x_box, self.recipe, rng)


class StepBatchSampler(Sampler[list[tuple[int, int]]]):
    """This rank's micro-batches of (epoch, index) keys, from ``start_step`` to the end of the epoch.

    Step ``s`` covers global samples ``[s*B, (s+1)*B)``; micro-step ``m`` of rank ``r`` takes
    ``s*B + (m*W + r)*b + [0, b)`` with ``b = B / (W * accumulation)``.
    """

    def __init__(self, *, global_batch: int, steps_per_epoch: int, world_size: int = 1, rank: int = 0,
                 accumulation_steps: int = 1) -> None:
        if global_batch % (world_size * accumulation_steps):
            raise ValueError(f"global batch {global_batch} does not split over {world_size} processes x "
                             f"{accumulation_steps} accumulation steps")
        self.global_batch, self.steps_per_epoch = global_batch, steps_per_epoch
        self.micro_batch = global_batch // (world_size * accumulation_steps)
        self.world_size, self.rank, self.accumulation_steps = world_size, rank, accumulation_steps
        self.epoch, self.start_step = 0, 0

    def set_epoch(self, epoch: int, start_step: int = 0) -> None:
        self.epoch, self.start_step = epoch, start_step

    def __len__(self) -> int:
        return (self.steps_per_epoch - self.start_step) * self.accumulation_steps

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        b = self.micro_batch
        for step in range(self.start_step, self.steps_per_epoch):
            for micro in range(self.accumulation_steps):
                first = step * self.global_batch + (micro * self.world_size + self.rank) * b
                yield [(self.epoch, first + k) for k in range(b)]


def build_loader(dataset: PairDataset, sampler: StepBatchSampler, *, num_workers: int, pin_memory: bool,
                 prefetch_factor: int = 2) -> DataLoader:
    extra = {"prefetch_factor": prefetch_factor, "persistent_workers": True} if num_workers > 0 else {}
    return DataLoader(dataset, batch_sampler=sampler, num_workers=num_workers, pin_memory=pin_memory, **extra)
