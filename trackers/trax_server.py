"""LoRAT as a TraX tracker program for the VOT toolkit: ``python -m lorat_plugin.trackers.trax_server``.

The toolkit starts it (``protocol = traxpython`` in ``trackers.ini``, written by ``lorat vot-workspace``) and talks
TraX over stdin/stdout (or ``TRAX_SOCKET``); logging goes to stderr.

* Regions in: rectangles, polygons and masks (the latter two start from their bounding box). Regions out:
  rectangles, or masks (``LORAT_VOT_OUTPUT=mask``): the box rasterised, or SAM's mask when ``LORAT_SAM_CHECKPOINT``
  is set (:mod:`lorat_plugin.trackers.segmentify`). Every object carries a ``confidence`` property.
* Every object is one batch element of the engine; objects added on later frames (VOTS) join the batch then. A new
  ``initialize`` replaces the whole batch.
* Errors (a region that cannot start a track, an unreadable frame, a failed model load) end the session with a TraX
  ``quit`` whose reason is the message, so the toolkit reports it at once instead of timing out; exit status 1.

The model comes from the ``LORAT_*`` variables (``env_<NAME> = ...`` lines of ``trackers.ini``), resolved as
everywhere (:mod:`lorat_plugin.model.sources`) and loaded before the handshake; paths must be absolute.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from ..environment import format_environment, run_environment
from ..model.sources import PATH_VARIABLES, ModelSpec, model_identity
from .vot_registry import MODEL_VARIABLE

log = logging.getLogger("lorat.trax")

_UNEXPANDED = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?")
TRAX_DECIMALS = 4  # libtrax holds rectangles and polygons in float32 and sends them as text, "%.4f" per value


def trax_coordinate(value: float) -> float:
    """``value`` at TraX's precision: the nearest number with 4 decimals (Python's correctly rounded formatting).

    Both directions pass through float32 (libtrax's storage) and "%.4f" (its wire format). Rounding a received
    coordinate recovers the decimals the toolkit sent, e.g. 12.3456 instead of float32's 12.345600128, so the
    initial box is the one the ground-truth file holds, as `lorat evaluate` reads it. Rounding a coordinate before
    sending makes the text the rounded value, not "%.4f" of its float32, which rounds the other way near a
    half-step (20.00005 is sent as 20.0000). Exact below 1024 px, where float32's step is finer than 1e-4.
    """
    return float(f"{value:.{TRAX_DECIMALS}f}")


class SessionError(Exception):
    """Something the toolkit sent that cannot be tracked (bad region, unreadable frame): ends the session."""


@dataclass(frozen=True)
class ServerSettings:
    """What the environment asks for: the model (:class:`~lorat_plugin.model.sources.ModelSpec`) and the output."""

    model: ModelSpec
    output: str = "rectangle"
    sam_checkpoint: str | None = None
    sam_model: str | None = None
    expected_model: str | None = None  # the identity the entry's results folder is named after (LORAT_VOT_MODEL)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "ServerSettings":
        env = os.environ if env is None else env
        for name, value in env.items():
            if not name.startswith("LORAT_") or not value.strip():
                continue
            unexpanded = _UNEXPANDED.search(value)
            if unexpanded:
                # The toolkit expands $VAR in env_ lines and leaves unset ones verbatim.
                raise ValueError(
                    f"{name}={value!r}: the tracker registry entry refers to the environment variable "
                    f"{unexpanded.group(1)}, which is not set where `vot` runs. Export it (e.g. "
                    f"`export {unexpanded.group(1)}=/path/to/weights`) or prepare the workspace with "
                    "`lorat vot-workspace ... --weights-dir DIR`, which writes the path into trackers.ini")
            if name in (*PATH_VARIABLES, "LORAT_SAM_CHECKPOINT") and not Path(value.strip()).expanduser().is_absolute():
                # The toolkit starts trackers in a fresh temporary directory: relative paths cannot work.
                raise ValueError(f"{name}={value!r} is a relative path, but the VOT toolkit runs the tracker in a "
                                 f"temporary directory ({os.getcwd()}); use an absolute path")
        output = (env.get("LORAT_VOT_OUTPUT") or "rectangle").strip().lower()
        if output not in ("rectangle", "mask"):
            raise ValueError(f"LORAT_VOT_OUTPUT={output!r}: use rectangle or mask")
        return cls(model=ModelSpec.resolve(env=env), output=output,
                   sam_checkpoint=(env.get("LORAT_SAM_CHECKPOINT") or "").strip() or None,
                   sam_model=(env.get("LORAT_SAM_MODEL") or "").strip() or None,
                   expected_model=(env.get(MODEL_VARIABLE) or "").strip() or None)


def build_tracker(settings: ServerSettings) -> tuple[Any, Callable | None, str]:
    """(engine, masker or None, one-line description) for the settings. Raises with a clear message."""
    from ..engine import TrackingEngine, precision_name
    from .segmentify import BoxMasker, SamMasker

    spec = settings.model
    engine = TrackingEngine(spec.load(), device=spec.device, dtype=spec.dtype)
    identity = model_identity(precision_name(engine.dtype), spec=spec)
    if settings.expected_model and identity["name"] != settings.expected_model:
        # The toolkit would store these boxes beside the results of the model the entry was prepared for.
        raise ValueError(f"the trackers.ini entry was prepared for {settings.expected_model} (its results are named "
                         f"after it), but it now loads {identity['name']} (weights or precision changed since): "
                         "run `lorat vot-workspace` again")
    config = engine.config
    description = (f"{identity['name']} ({spec.describe()}): width {config.embed_dim}, depth {config.depth}, "
                   f"search {config.search_size} px, {engine.device} {identity['precision']}, "
                   f"{engine.network.description}")
    masker = None
    if settings.output == "mask":
        if settings.sam_checkpoint:
            masker = SamMasker.from_checkpoint(settings.sam_checkpoint, settings.sam_model, device=engine.device)
            description += f", masks from SAM {Path(settings.sam_checkpoint).name}"
        else:
            masker = BoxMasker()
            description += ", masks = rasterised boxes"
    return engine, masker, description


def region_to_box(region: Any) -> np.ndarray:
    """A TraX region to x, y, w, h (0-based, continuous pixels; a VOT rectangle already is one).

    Polygons give their extreme points; masks the bounding box of their set pixels (a pixel is a unit square).
    """
    import trax

    kind = region.type
    if kind == trax.Region.RECTANGLE:
        box = np.array([trax_coordinate(v) for v in region.bounds()], dtype=np.float64)
    elif kind == trax.Region.POLYGON:
        points = np.array([trax_coordinate(v) for point in region for v in point], dtype=np.float64).reshape(-1, 2)
        if len(points) < 3:
            raise SessionError(f"polygon with {len(points)} points cannot start a track")
        low, high = points.min(axis=0), points.max(axis=0)
        box = np.concatenate((low, high - low))
    elif kind == trax.Region.MASK:
        mask = region.array()
        ox, oy = region.offset()
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        if rows.size == 0:
            raise SessionError(f"empty mask (size {mask.shape[1]}x{mask.shape[0]}, offset {ox},{oy}) cannot start "
                               "a track")
        box = np.array((cols[0] + ox, rows[0] + oy, cols[-1] - cols[0] + 1, rows[-1] - rows[0] + 1), dtype=np.float64)
    else:
        raise SessionError(f"region {region} ({kind}) cannot start a track: a rectangle, polygon or mask is needed")
    if not (np.all(np.isfinite(box)) and box[2] > 0 and box[3] > 0):
        raise SessionError(f"region {region} has no area (x, y, w, h = {box.tolist()})")
    return box


def read_frame(image: Any) -> np.ndarray:
    """The color channel of a TraX request as H x W x 3 uint8 RGB."""
    from ..data.sequence import FrameError, read_image

    channel = image.get("color") if isinstance(image, dict) else None
    if channel is None:
        raise SessionError(f"request without a color image (channels: {sorted(image) if image else []})")
    try:
        return read_image(channel.path())
    except FrameError as e:
        raise SessionError(str(e)) from e


class TraxSession:
    """The objects of one TraX session as batch elements of the engine. Independent of the transport."""

    def __init__(self, engine: Any, masker: Callable | None = None) -> None:
        self.engine = engine
        self.masker = masker
        self.states: list[Any] | None = None  # None before the first initialize

    def initialize(self, image: np.ndarray, regions: list[Any]) -> list[tuple[Any, dict[str, str]]]:
        """Start a new batch, one element per region (none is fine: objects may all appear later). Returns the reply."""
        self.states = []
        return self._add(image, regions)

    def frame(self, image: np.ndarray, new_regions: list[Any] | None = None) -> list[tuple[Any, dict[str, str]]]:
        """Track every object on ``image``; objects that appear on this frame join the batch."""
        if self.states is None:
            raise SessionError("frame request before initialize")
        boxes, scores = (self.engine.track(self.states, [image] * len(self.states)) if self.states
                         else (np.zeros((0, 4)), np.zeros(0)))
        reply = self._reply(image, boxes, scores)
        if new_regions:
            reply += self._add(image, new_regions)
        return reply

    def _add(self, image: np.ndarray, regions: list[Any]) -> list[tuple[Any, dict[str, str]]]:
        if not regions:
            return []
        boxes = np.stack([region_to_box(region) for region in regions])
        try:
            states = self.engine.initialize([image] * len(boxes), boxes)
        except ValueError as e:  # e.g. a box entirely outside the frame
            raise SessionError(str(e)) from e
        self.states.extend(states)
        return self._reply(image, np.stack([s.box for s in states]), np.ones(len(states)))

    def _reply(self, image: np.ndarray, boxes: np.ndarray, scores: np.ndarray) -> list[tuple[Any, dict[str, str]]]:
        import trax

        if self.masker is None:
            regions = [trax.Rectangle.create(*(trax_coordinate(v) for v in box)) for box in boxes]
        else:
            regions = [trax.Mask.create(np.ascontiguousarray(mask, dtype=np.uint8), x=int(x), y=int(y))
                       for mask, x, y in self.masker(image, boxes)]
        return [(region, {"confidence": f"{float(score):.6f}"}) for region, score in zip(regions, scores)]


def serve(engine: Any, masker: Callable | None, description: str, startup_error: str | None = None) -> int:
    """Run the TraX loop until the toolkit quits. Returns the exit status."""
    import trax

    server = trax.Server([trax.Region.RECTANGLE, trax.Region.POLYGON, trax.Region.MASK], [trax.Image.PATH],
                         ["color"], tracker_name="LoRAT", tracker_description=description,
                         tracker_family="lorat-plugin", multiobject=True)
    if startup_error is not None:
        # Answer the toolkit's first request with the error, so `vot evaluate` prints it instead of a lost pipe.
        with contextlib.suppress(trax.TraxException):
            if server.wait().type != trax.TraxStatus.QUIT:
                server.quit(reason=startup_error)
        return 1
    session = TraxSession(engine, masker)
    frames = 0
    started = time.perf_counter()
    while True:
        try:
            request = server.wait()
        except trax.TraxException as e:  # the toolkit went away (EOF) or sent garbage
            log.info("session ended: %s", e)
            return 0
        if request.type in (trax.TraxStatus.QUIT, trax.TraxStatus.ERROR):
            break
        try:
            image = read_frame(request.image)
            regions = [region for region, _properties in (request.objects or [])]
            handle = session.initialize if request.type == trax.TraxStatus.INITIALIZE else session.frame
            reply = handle(image, regions)
            frames += 1
        except Exception as e:  # noqa: BLE001 -- every failure reaches the toolkit as a message
            expected = isinstance(e, SessionError)  # the toolkit's input, not a bug: no traceback
            log.error("%s", e if expected else f"tracking failed: {type(e).__name__}: {e}", exc_info=not expected)
            server.quit(reason=str(e) if expected else f"{type(e).__name__}: {e}")
            return 1
        try:
            server.status(reply)
        except trax.TraxException as e:  # the toolkit went away while we answered
            log.info("session ended: %s", e)
            return 0
    elapsed = time.perf_counter() - started
    log.info("quit after %d frames (%.1f frames/s)", frames, frames / elapsed if elapsed > 0 else 0.0)
    with contextlib.suppress(trax.TraxException):
        server.quit()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lorat_plugin.trackers.trax_server",
                                     description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging (stderr)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, stream=sys.stderr,
                        format="lorat-trax %(levelname)s: %(message)s")
    try:
        import trax  # noqa: F401
    except ImportError:
        log.error("the TraX module is missing: pip install 'lorat-plugin[vot]' (it provides vot-trax, not `trax`)")
        return 2
    if "TRAX" not in os.environ and "TRAX_SOCKET" not in os.environ:
        log.warning("not started by the VOT toolkit (TRAX is unset): this program speaks TraX on stdin/stdout")
    engine = masker = None
    description, startup_error = "LoRAT", None
    started = time.perf_counter()
    try:
        engine, masker, description = build_tracker(ServerSettings.from_env())
        log.info("%s (loaded in %.1f s)", description, time.perf_counter() - started)
        log.info("runs on: %s; batch: the objects of each VOT frame",
                 format_environment(run_environment(engine.device, world_size=1)))
    except Exception as e:  # noqa: BLE001 -- reported through TraX below, and here in the log
        log.error("cannot load the model: %s", e, exc_info=log.isEnabledFor(logging.DEBUG))
        startup_error = f"lorat: cannot load the model: {e}"
    return serve(engine, masker, description, startup_error)


if __name__ == "__main__":
    sys.exit(main())
