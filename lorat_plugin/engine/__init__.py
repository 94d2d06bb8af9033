"""The batched LoRAT tracking engine (the reference's inference pipeline), its precision policy and network backends."""
from .network import NetworkBackend, TorchNetwork
from .postprocess import WINDOW_PENALTY, hann_window, select_boxes
from .precision import default_precision, precision_name, resolve_device, resolve_precision
from .tracking import MIN_OBJECT_SIZE, TrackingEngine, TrackState, track_frames

__all__ = ["TrackingEngine", "TrackState", "track_frames", "NetworkBackend", "TorchNetwork", "default_precision",
           "precision_name", "resolve_device", "resolve_precision", "hann_window", "select_boxes", "WINDOW_PENALTY",
           "MIN_OBJECT_SIZE"]
