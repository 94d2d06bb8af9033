"""The batched LoRAT tracking engine (the reference's inference pipeline), its precision policy and the backend table."""
from .backends import BACKENDS, BackendOptions, build_network
from .network import NetworkBackend, TorchNetwork
from .postprocess import WINDOW_PENALTY, hann_window, select_boxes
from .precision import default_precision, precision_name, resolve_precision
from .tracking import MIN_OBJECT_SIZE, TrackingEngine, TrackState, track_frames, track_targets

__all__ = ["TrackingEngine", "TrackState", "track_frames", "track_targets", "NetworkBackend", "TorchNetwork",
           "BACKENDS", "BackendOptions", "build_network", "default_precision", "precision_name", "resolve_precision",
           "hann_window", "select_boxes", "WINDOW_PENALTY", "MIN_OBJECT_SIZE"]
