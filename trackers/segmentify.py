"""Box to mask for segmentation benchmarks (VOT2020-22 short-term, VOTS), whose ground truth is masks scored by pixel
overlap: LoRAT predicts boxes, so the tracker reports one of

* :class:`BoxMasker` (default): the box rasterised to whole pixels (every pixel the box touches);
* :class:`SamMasker`: Segment Anything prompted with the box, as the reference's "segmentify" post-process: a square
  1024 x 1024 crop around the box with area factor 2, SAM's own normalisation, one box prompt,
  ``multimask_output=False``, the 256 x 256 low-resolution logits mapped back into the frame (bilinear) and
  thresholded at 0. Needs ``pip install lorat-plugin[sam]`` and one of Meta's checkpoints (``sam_vit_b_01ec64.pth``,
  ``sam_vit_l_0b3195.pth``, ``sam_vit_h_4b8939.pth``); nothing is downloaded.

A mask is ``(array, x, y)``: an H' x W' uint8 array around the target and its offset in the frame, as TraX sends masks.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..geometry import apply_transform, crop_image, crop_transform, rasterize, xywh_to_xyxy

MaskRegion = tuple[np.ndarray, int, int]  # (uint8 H' x W', x offset, y offset)

SAM_INPUT_SIZE = 1024
SAM_AREA_FACTOR = 2.0
SAM_CHECKPOINT_NAMES = {"vit_b": "sam_vit_b_01ec64.pth", "vit_l": "sam_vit_l_0b3195.pth",
                        "vit_h": "sam_vit_h_4b8939.pth"}
# image-encoder width -> SAM model type, to recognise a renamed checkpoint
_SAM_WIDTHS = {768: "vit_b", 1024: "vit_l", 1280: "vit_h"}


def empty_mask() -> MaskRegion:
    return np.zeros((1, 1), dtype=np.uint8), 0, 0


def box_to_mask(box: np.ndarray, width: int, height: int) -> MaskRegion:
    """The pixels a box (x, y, w, h) touches inside a width x height frame, as a cropped mask with its offset."""
    x1, y1, x2, y2 = rasterize(xywh_to_xyxy(np.asarray(box, dtype=np.float64)))
    x1, x2 = int(np.clip(x1, 0, width)), int(np.clip(x2, 0, width))
    y1, y2 = int(np.clip(y1, 0, height)), int(np.clip(y2, 0, height))
    if x2 <= x1 or y2 <= y1 or not np.all(np.isfinite(box)):
        return empty_mask()
    return np.ones((y2 - y1, x2 - x1), dtype=np.uint8), x1, y1


def crop_to_content(mask: np.ndarray) -> MaskRegion:
    """A full-frame boolean mask to its bounding region and offset (an empty mask becomes 1 x 1 zero)."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return empty_mask()
    y1, y2, x1, x2 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    return np.ascontiguousarray(mask[y1:y2, x1:x2], dtype=np.uint8), int(x1), int(y1)


class BoxMasker:
    """The box rasterised (the default for mask stacks)."""

    def __call__(self, image: np.ndarray, boxes: np.ndarray) -> list[MaskRegion]:
        height, width = image.shape[:2]
        return [box_to_mask(box, width, height) for box in np.asarray(boxes, dtype=np.float64).reshape(-1, 4)]


def paste_logits(logits: torch.Tensor, scale: np.ndarray, translation: np.ndarray, crop_size: int,
                 width: int, height: int) -> np.ndarray:
    """Map low-resolution mask logits of a crop back into the frame: H x W bool, ``logits > 0``.

    ``logits`` (h x w) cover the crop (``crop_size`` px square) that ``p_crop = scale * p_frame + translation``
    produced. Each frame pixel centre is mapped into the crop and the logits are sampled bilinearly there; only the
    frame area the crop covers is computed (the rest is background)."""
    result = np.zeros((height, width), dtype=bool)
    # frame rectangle covered by the crop
    inverse_scale, inverse_translation = 1.0 / scale, -translation / scale
    x1, y1, x2, y2 = apply_transform(np.array((0.0, 0.0, crop_size, crop_size)), inverse_scale, inverse_translation)
    x1, x2 = max(int(np.floor(x1)), 0), min(int(np.ceil(x2)), width)
    y1, y2 = max(int(np.floor(y1)), 0), min(int(np.ceil(y2)), height)
    if x2 <= x1 or y2 <= y1:
        return result
    xs = (np.arange(x1, x2) + 0.5) * scale[0] + translation[0]  # crop pixel coordinates of the frame pixel centres
    ys = (np.arange(y1, y2) + 0.5) * scale[1] + translation[1]
    # grid_sample with align_corners=False: -1 and 1 are the outer edges of the logits' pixel grid
    gx = torch.as_tensor(xs / crop_size * 2 - 1, dtype=torch.float32, device=logits.device)
    gy = torch.as_tensor(ys / crop_size * 2 - 1, dtype=torch.float32, device=logits.device)
    grid = torch.stack(torch.meshgrid(gy, gx, indexing="ij")[::-1], dim=-1)[None]
    sampled = F.grid_sample(logits[None, None].float(), grid, mode="bilinear", padding_mode="border",
                            align_corners=False)[0, 0]
    result[y1:y2, x1:x2] = (sampled > 0).cpu().numpy()
    return result


def sam_model_type(checkpoint: Path, state: dict[str, torch.Tensor] | None = None) -> str:
    """vit_b / vit_l / vit_h from Meta's file name, or else from the image encoder's width in the tensors."""
    match = re.search(r"vit_([blh])", checkpoint.name)
    if match:
        return f"vit_{match.group(1)}"
    if state is not None and "image_encoder.pos_embed" in state:
        width = int(state["image_encoder.pos_embed"].shape[-1])
        if width in _SAM_WIDTHS:
            return _SAM_WIDTHS[width]
    raise ValueError(f"cannot tell the SAM model type of {checkpoint}: name it like Meta's files "
                     f"({', '.join(SAM_CHECKPOINT_NAMES.values())}) or set LORAT_SAM_MODEL=vit_b|vit_l|vit_h")


class SamMasker:
    """Segment Anything (a ``segment_anything.modeling.Sam``, see :meth:`from_checkpoint`) prompted with the tracker's
    box, on ``device`` (the tracker's)."""

    def __init__(self, sam: torch.nn.Module, device: torch.device | str | None = None) -> None:
        self.device = torch.device(device) if device is not None else next(sam.parameters()).device
        self.sam = sam.to(self.device).eval()

    @classmethod
    def from_checkpoint(cls, checkpoint: str | os.PathLike, model_type: str | None = None,
                        device: torch.device | str | None = None) -> "SamMasker":
        try:
            from segment_anything import sam_model_registry
        except ImportError as e:
            raise ImportError("SAM masks need the segment-anything package: pip install 'lorat-plugin[sam]'") from e
        path = Path(checkpoint).expanduser()
        if not path.is_file():
            names = ", ".join(SAM_CHECKPOINT_NAMES.values())
            raise FileNotFoundError(f"SAM checkpoint not found: {path} (Meta's {names}; nothing is downloaded)")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 -- any unreadable file: name it
            raise ValueError(f"cannot read SAM checkpoint {path}: {e}") from e
        model_type = model_type or sam_model_type(path, state)
        if model_type not in sam_model_registry or model_type == "default":
            raise ValueError(f"unknown SAM model type {model_type!r}: use vit_b, vit_l or vit_h")
        sam = sam_model_registry[model_type]()
        try:
            sam.load_state_dict(state)
        except RuntimeError as e:
            raise ValueError(f"{path} does not hold SAM {model_type} weights: {e}") from e
        return cls(sam, device)

    @torch.inference_mode()
    def __call__(self, image: np.ndarray, boxes: np.ndarray) -> list[MaskRegion]:
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        if len(boxes) == 0:
            return []
        height, width = image.shape[:2]
        frame = torch.from_numpy(np.ascontiguousarray(image)).to(self.device).permute(2, 0, 1)
        fill = frame.float().mean(dim=(1, 2))
        crops, transforms, prompts = [], [], []
        for box in boxes:
            xyxy = xywh_to_xyxy(box)
            if not (np.all(np.isfinite(xyxy)) and xyxy[2] > xyxy[0] and xyxy[3] > xyxy[1]):
                xyxy = np.array((0.0, 0.0, width, height))  # no usable box: let SAM look at the whole frame
            scale, translation = crop_transform(xyxy, SAM_AREA_FACTOR, SAM_INPUT_SIZE)
            crop, scale, translation = crop_image(frame, scale, translation, SAM_INPUT_SIZE, fill)
            crops.append(crop)
            transforms.append((scale, translation))
            prompts.append(np.clip(apply_transform(xyxy, scale, translation), 0, SAM_INPUT_SIZE))
        pixels = torch.stack(crops)  # B x 3 x 1024 x 1024, 0..255 RGB
        pixels = (pixels - self.sam.pixel_mean) / self.sam.pixel_std
        embeddings = self.sam.image_encoder(pixels)
        masks = []
        for embedding, prompt, (scale, translation) in zip(embeddings, prompts, transforms):
            sparse, dense = self.sam.prompt_encoder(
                points=None, boxes=torch.as_tensor(prompt, dtype=torch.float32, device=self.device)[None], masks=None)
            low_res, _quality = self.sam.mask_decoder(
                image_embeddings=embedding[None], image_pe=self.sam.prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense, multimask_output=False)
            full = paste_logits(low_res[0, 0], scale, translation, SAM_INPUT_SIZE, width, height)
            masks.append(crop_to_content(full))
        return masks
