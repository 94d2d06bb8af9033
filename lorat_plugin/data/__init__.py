"""Sequences, frame decoding, video and benchmark readers."""
from .sequence import AnnotationError, FrameError, Sequence, read_image, to_rgb

__all__ = ["Sequence", "read_image", "to_rgb", "FrameError", "AnnotationError"]
