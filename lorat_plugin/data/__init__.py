"""Sequences, frame decoding, benchmark readers and the procedural benchmark generator."""
from .sequence import AnnotationError, FrameError, Sequence, read_image, to_rgb

__all__ = ["Sequence", "read_image", "to_rgb", "FrameError", "AnnotationError"]
