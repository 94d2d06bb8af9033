"""Crop geometry and the batched LoRAT tracking engine (inference pipeline of the reference, lorat-spec §4)."""
from .network import NetworkBackend, TorchNetwork, resolve_device, resolve_dtype
from .postprocess import WINDOW_PENALTY, hann_window, select_boxes
from .tracking import MIN_OBJECT_SIZE, TrackingEngine, TrackState, track_frames

__all__ = ["TrackingEngine", "TrackState", "track_frames", "NetworkBackend", "TorchNetwork", "resolve_device",
           "resolve_dtype", "hann_window", "select_boxes", "WINDOW_PENALTY", "MIN_OBJECT_SIZE"]
