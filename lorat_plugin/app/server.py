"""The HTTP side of ``lorat app``: a Starlette application (routes below) and its checks on every request.

Every route answers JSON, an image, a CSV or a video, or the one static page; the page builds its DOM from that JSON
with ``textContent`` (names are data, never markup). Heavy or blocking work (tracking, decoding, reading results)
runs in threads, so the page stays responsive while a video is tracked.
"""
from __future__ import annotations

import asyncio
import json
import os
import secrets
import tempfile
import threading
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs, urlencode

from ..data.live import DEFAULT_STALL_TIMEOUT
from .frames import FrameStore
from .results import Results
from .security import COOKIE, Folders, Refused, allowed_host, check_origin, token_matches
from .session import TrackingSession

STATIC = Path(__file__).parent / "static"
STATIC_FILES = {"app.js": "text/javascript", "app.css": "text/css"}
# The page loads nothing but its own script, style sheet and the images and events this server sends.
PAGE_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; connect-src 'self'; "
               "media-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'")
LISTING_DEPTH = 4  # folders below a started folder that the page lists
LISTING_LIMIT = 5000  # entries looked at per started folder, so a huge tree cannot stall the listing
EVENT_POLL_S = 0.03
MAX_SESSIONS = 8  # videos kept open (each holds its frames as JPEG); opening another closes the oldest


class AppState:
    """What every request shares: the folders, the engine (loaded once), the open sessions and results."""

    def __init__(self, folders: Folders, engine_factory: Callable[[], Any], *, token: str, bound_host: str,
                 max_upload_bytes: int) -> None:
        self.folders = folders
        self.token = token
        self.bound_host = bound_host
        self.max_upload_bytes = max_upload_bytes
        self._engine_factory = engine_factory
        self._engine: Any = None
        self.engine_lock = threading.Lock()
        self._engine_loading = threading.Lock()
        self.sessions: dict[str, TrackingSession] = {}
        self.results: dict[str, Results] = {}
        self.scratch = Path(tempfile.mkdtemp(prefix="lorat-app-"))  # uploads and rendered videos

    @property
    def engine(self) -> Any:
        with self._engine_loading:
            if self._engine is None:
                self._engine = self._engine_factory()
            return self._engine

    def new_session(self, store: FrameStore) -> TrackingSession:
        while len(self.sessions) >= MAX_SESSIONS:
            oldest = self.sessions.pop(next(iter(self.sessions)))
            oldest.pause()
            oldest.store.close()
        session = TrackingSession(secrets.token_hex(8), store, self.engine, self.engine_lock)
        self.sessions[session.id] = session
        return session


class Guard:
    """ASGI middleware: the Host, Origin and token checks of :mod:`lorat_plugin.app.security` on every request.

    ``/?token=...`` (the URL the command prints) stores the token in a cookie and redirects to the same URL
    without it, so the token does not stay in the address bar or the history."""

    def __init__(self, app: Any, state: AppState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            if not allowed_host(headers.get("host"), self.state.bound_host):
                raise Refused(f"this server does not answer to the name {headers.get('host', '')!r}")
            check_origin(headers, scope.get("scheme", "http"))
        except Refused as e:
            await _plain(send, 403, str(e))
            return
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        given = query.pop("token", [None])[0]
        if given is not None and scope["path"] == "/":
            if not token_matches(given, self.state.token):
                await _plain(send, 403, "wrong token: open the URL `lorat app` printed")
                return
            location = "/" + ("?" + urlencode(query, doseq=True) if query else "")
            cookie = f"{cookie_name(scope)}={self.state.token}; HttpOnly; SameSite=Strict; Path=/"
            await send({"type": "http.response.start", "status": 303,
                        "headers": [(b"location", location.encode()), (b"set-cookie", cookie.encode()),
                                    (b"cache-control", b"no-store")]})
            await send({"type": "http.response.body", "body": b""})
            return
        cookies = SimpleCookie()
        try:
            cookies.load(headers.get("cookie", ""))
        except Exception:  # a malformed cookie header: as if none was sent
            cookies = SimpleCookie()
        name = cookie_name(scope)
        sent = cookies[name].value if name in cookies else None
        if not token_matches(sent, self.state.token):
            await _plain(send, 403, "open the URL `lorat app` printed: it carries the access token")
            return
        await self.app(scope, receive, send)


def cookie_name(scope: dict) -> str:
    """The token's cookie, per port: cookies are shared by every port of a host, and two servers must not
    overwrite each other's."""
    server = scope.get("server") or ("", 0)
    return f"{COOKIE}_{server[1]}"


async def _plain(send: Callable, status: int, message: str) -> None:
    body = (message + "\n").encode()
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def create_app(state: AppState) -> Any:
    """The Starlette application behind the :class:`Guard`."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
    from starlette.routing import Route

    def error(message: str, status: int = 400) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    def handled(function: Callable) -> Callable:
        """User errors as one JSON line: a refused path 403, a bad request 400, a missing file 404."""
        async def endpoint(request: Request) -> Response:
            try:
                return await function(request)
            except Refused as e:
                return error(str(e), 403)
            except (FileNotFoundError, KeyError) as e:
                return error(str(e).strip("'\""), 404)
            except (ValueError, OSError) as e:
                return error(str(e))
        return endpoint

    async def body(request: Request) -> dict[str, Any]:
        try:
            data = await request.json()
        except (ValueError, UnicodeDecodeError):
            raise ValueError("the request body is not JSON")
        if not isinstance(data, dict):
            raise ValueError("the request body is not a JSON object")
        return data

    def session_of(request: Request) -> TrackingSession:
        session = state.sessions.get(request.path_params["session"])
        if session is None:
            raise KeyError("no such session (the server was restarted?): open the video again")
        return session

    def results_of(request: Request) -> Results:
        results = state.results.get(request.path_params["results"])
        if results is None:
            raise KeyError("no such results (the server was restarted?): open the folders again")
        return results

    async def page(request: Request) -> Response:
        return FileResponse(STATIC / "index.html", media_type="text/html",
                            headers={"content-security-policy": PAGE_POLICY, "cache-control": "no-store",
                                     "x-content-type-options": "nosniff", "referrer-policy": "no-referrer"})

    async def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in STATIC_FILES:
            return error("not found", 404)
        return FileResponse(STATIC / name, media_type=STATIC_FILES[name],
                            headers={"x-content-type-options": "nosniff", "cache-control": "no-store"})

    async def folders(request: Request) -> Response:
        return JSONResponse(await run_in_threadpool(list_folders, state.folders))

    async def open_video(request: Request) -> Response:
        data = await body(request)
        if "source" in data:
            store = await run_in_threadpool(open_live_store, str(data["source"]))
        else:
            path = state.folders.resolve(_int(data.get("folder"), "folder"), str(data.get("path", "")))
            store = await run_in_threadpool(open_path_store, path, path.name)
        session = await run_in_threadpool(state.new_session, store)
        return JSONResponse(await run_in_threadpool(ready_snapshot, session))

    async def upload(request: Request) -> Response:
        from ..data.video import VIDEO_EXTENSIONS

        name = Path(request.headers.get("x-file-name", "upload.mp4")).name
        suffix = Path(name).suffix.lower()
        if suffix not in VIDEO_EXTENSIONS:
            raise ValueError(f"upload a video ({', '.join(VIDEO_EXTENSIONS)})")
        declared = int(request.headers.get("content-length") or 0)
        if declared > state.max_upload_bytes:
            return error(_too_large(state.max_upload_bytes), 413)
        target = state.scratch / f"upload-{secrets.token_hex(6)}{suffix}"
        size = 0
        with open(target, "wb") as file:
            async for chunk in request.stream():
                size += len(chunk)
                if size > state.max_upload_bytes:
                    file.close()
                    target.unlink(missing_ok=True)
                    return error(_too_large(state.max_upload_bytes), 413)
                file.write(chunk)
        store = await run_in_threadpool(open_path_store, target, name)
        session = await run_in_threadpool(state.new_session, store)
        return JSONResponse(await run_in_threadpool(ready_snapshot, session))

    async def session_state(request: Request) -> Response:
        return JSONResponse(session_of(request).snapshot())

    async def session_frame(request: Request) -> Response:
        session = session_of(request)
        jpeg = await run_in_threadpool(session.store.jpeg, int(request.path_params["index"]))
        if jpeg is None:
            return error("no such frame", 404)
        return Response(jpeg, media_type="image/jpeg", headers={"cache-control": "private, max-age=3600"})

    async def set_box(request: Request) -> Response:
        session, data = session_of(request), await body(request)
        target = data.get("target")
        target_id = await run_in_threadpool(session.set_box, _int(data.get("frame"), "frame"), data.get("box"),
                                            None if target is None else _int(target, "target"))
        return JSONResponse({"target": target_id, "events": len(session.events)})

    async def remove(request: Request) -> Response:
        session, data = session_of(request), await body(request)
        await run_in_threadpool(session.remove, _int(data.get("target"), "target"), _int(data.get("frame"), "frame"))
        return JSONResponse({"ok": True})

    async def start(request: Request) -> Response:
        return JSONResponse({"started": await run_in_threadpool(session_of(request).start)})

    async def pause(request: Request) -> Response:
        await run_in_threadpool(session_of(request).pause)
        return JSONResponse({"ok": True})

    async def events(request: Request) -> Response:
        session = session_of(request)
        cursor = _int(request.query_params.get("from", "0"), "from")
        resumed = request.headers.get("last-event-id")  # a reconnecting EventSource: after the last event it had
        if resumed is not None:
            cursor = _int(resumed, "Last-Event-ID") + 1

        async def stream():
            nonlocal cursor
            idle = 0.0
            while not await request.is_disconnected():
                new = session.events_since(cursor)
                if new:
                    cursor += len(new)
                    idle = 0.0
                    yield "".join(f"id: {event['seq']}\ndata: {json.dumps(event)}\n\n" for event in new)
                else:
                    idle += EVENT_POLL_S
                    if idle > 10:  # a comment keeps proxies from closing a quiet stream
                        idle = 0.0
                        yield ": idle\n\n"
                    await asyncio.sleep(EVENT_POLL_S)

        return StreamingResponse(stream(), media_type="text/event-stream", headers={"cache-control": "no-store"})

    async def csv(request: Request) -> Response:
        session = session_of(request)
        text = await run_in_threadpool(session_csv, session)
        return Response(text, media_type="text/csv", headers={
            "content-disposition": f"attachment; filename=\"{_download_name(session.store.name, '_boxes.csv')}\""})

    async def target_files(request: Request) -> Response:
        session = session_of(request)
        data = await run_in_threadpool(session_target_files, session)
        return Response(data, media_type="application/zip", headers={
            "content-disposition": f"attachment; filename=\"{_download_name(session.store.name, '_boxes.zip')}\""})

    async def rendered(request: Request) -> Response:
        session = session_of(request)
        path = await run_in_threadpool(render_session, session, state.scratch)
        return FileResponse(path, media_type="video/mp4",
                            filename=_download_name(session.store.name, "_tracked.mp4"))

    async def open_results(request: Request) -> Response:
        data = await body(request)
        chosen = data.get("folders")
        if not isinstance(chosen, list) or not chosen:
            raise ValueError("pick one or more evaluation folders")
        paths = [state.folders.resolve(_int(c.get("folder"), "folder"), str(c.get("path", ""))) for c in chosen]
        results = await run_in_threadpool(Results, paths)
        key = secrets.token_hex(8)
        state.results[key] = results
        return JSONResponse({"id": key, **results.overview()})

    async def results_sequence(request: Request) -> Response:
        results = results_of(request)
        return JSONResponse(await run_in_threadpool(results.sequence, request.path_params["name"]))

    async def results_frame(request: Request) -> Response:
        results = results_of(request)
        path = results.frame_file(request.path_params["name"], int(request.path_params["index"]))
        if path.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp", ".bmp"):
            return FileResponse(path, headers={"cache-control": "private, max-age=3600"})
        from ..data.sequence import read_image
        from .frames import encode_jpeg

        return Response(await run_in_threadpool(lambda: encode_jpeg(read_image(path))), media_type="image/jpeg")

    routes = [
        Route("/", page),
        Route("/static/{name}", static),
        Route("/api/folders", handled(folders)),
        Route("/api/track/open", handled(open_video), methods=["POST"]),
        Route("/api/track/upload", handled(upload), methods=["POST"]),
        Route("/api/track/{session}", handled(session_state)),
        Route("/api/track/{session}/frame/{index:int}", handled(session_frame)),
        Route("/api/track/{session}/box", handled(set_box), methods=["POST"]),
        Route("/api/track/{session}/remove", handled(remove), methods=["POST"]),
        Route("/api/track/{session}/start", handled(start), methods=["POST"]),
        Route("/api/track/{session}/pause", handled(pause), methods=["POST"]),
        Route("/api/track/{session}/events", handled(events)),
        Route("/api/track/{session}/boxes.csv", handled(csv)),
        Route("/api/track/{session}/boxes.zip", handled(target_files)),
        Route("/api/track/{session}/rendered.mp4", handled(rendered)),
        Route("/api/results", handled(open_results), methods=["POST"]),
        Route("/api/results/{results}/sequence/{name}", handled(results_sequence)),
        Route("/api/results/{results}/sequence/{name}/frame/{index:int}", handled(results_frame)),
    ]
    return Guard(Starlette(routes=routes), state)


def _int(value: Any, what: str) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what}: expected a whole number, got {value!r}") from None


def _too_large(limit: int) -> str:
    return f"the upload is larger than the limit of {limit / 1e6:.0f} MB (`lorat app --max-upload-mb`)"


def _download_name(source_name: str, ending: str) -> str:
    """A file name safe inside a header: the source's stem, letters, digits, ``-_.`` only."""
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in Path(source_name).stem)[:80] or "video"
    return stem + ending


def open_path_store(path: Path, display_name: str) -> FrameStore:
    from ..data.video import open_frames

    store = FrameStore(display_name, open_frames(path))
    store.decode_in_background()
    return store


def open_live_store(source: str, *, stall_timeout: float = DEFAULT_STALL_TIMEOUT,
                    camera_size: tuple[int, int] | None = None) -> FrameStore:
    """A camera (its number or ``/dev/videoN``) or an ``rtsp://`` / ``http(s)://`` stream, as ``lorat track`` opens
    them (with its ``--stall-timeout`` and ``--camera-size``); a file is picked from the started folders instead
    (this is no way around them)."""
    from ..data.live import is_camera, is_network, open_source
    from .frames import LiveStore

    source = source.strip()
    chosen: str | int = int(source) if source.isdigit() else source
    if not (is_camera(chosen) or is_network(chosen)):
        raise ValueError("give a camera number, a /dev/videoN path or an rtsp:// or http(s):// URL (videos on "
                         "this machine: pick them from the folders)")
    return LiveStore(f"camera {chosen}" if isinstance(chosen, int) else source,
                     open_source(chosen, stall_timeout=stall_timeout, camera_size=camera_size))


def ready_snapshot(session: TrackingSession) -> dict[str, Any]:
    session.store.wait_for_first()
    return session.snapshot()


def list_folders(folders: Folders) -> list[dict[str, Any]]:
    """What each started folder offers: videos and frame folders to track, evaluation folders to browse.
    Symbolic links that lead outside the folder are left out (and refused if asked for)."""
    from ..data.video import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS

    listing = []
    for index, root in enumerate(folders.roots):
        videos, evaluations, seen = [], [], 0
        for current, directories, files in os.walk(root, followlinks=False):
            here = Path(current)
            depth = len(here.relative_to(root).parts)
            directories[:] = sorted(d for d in directories if not d.startswith(".")) if depth < LISTING_DEPTH else []
            if (here / "run.json").is_file():
                evaluations.append(here.relative_to(root).as_posix() or ".")
                directories[:] = [d for d in directories if d not in ("records", "report")]
            images = 0
            for name in sorted(files):
                seen += 1
                path = here / name
                suffix = path.suffix.lower()
                if suffix in IMAGE_EXTENSIONS:
                    images += 1
                if suffix not in VIDEO_EXTENSIONS:
                    continue
                try:
                    videos.append(folders.relative(index, folders.resolve(index, path.relative_to(root).as_posix())))
                except (Refused, ValueError):
                    continue
            if images >= 2 and depth > 0:
                videos.append(here.relative_to(root).as_posix() + "/")
            if seen > LISTING_LIMIT:
                break
        listing.append({"folder": index, "name": root.name or str(root), "videos": videos,
                        "evaluations": evaluations})
    return listing


def session_csv(session: TrackingSession) -> str:
    """The boxes as ``lorat track --output boxes.csv`` writes them: frame 1-based, target ids from 1, 0-based boxes;
    a target only on the frames it was tracked on."""
    from ..data.target_files import CSV_HEADER, csv_row

    number = session.store.number
    rows = [csv_row(number(frame), target, box, score) for frame, target, box, score in session.rows()]
    return CSV_HEADER + "\n" + "".join(rows)


def session_target_files(session: TrackingSession) -> bytes:
    """A zip of one file per target, ``<stem>_<id>.txt``, as ``lorat track --output <stem>.txt`` writes several
    targets: ``x,y,w,h,confidence`` per frame from the first frame; a frame without a box for the target (before it
    was drawn, after it was removed) is ``nan,nan,nan,nan,0.0000``, so line ``n`` is always frame ``n``."""
    import io
    import zipfile

    import numpy as np

    from ..data.target_files import box_line, target_file

    rows = list(session.rows())
    frames = max((frame for frame, *_ in rows), default=-1) + 1
    missing = box_line(np.full(4, np.nan), 0.0)
    lines: dict[int, list[str]] = {}
    for frame, target, box, score in rows:
        lines.setdefault(target, [missing] * frames)[frame] = box_line(box, score)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for target, target_lines in sorted(lines.items()):
            name = target_file(Path(_download_name(session.store.name, ".txt")), target).name
            archive.writestr(name, "".join(line + "\n" for line in target_lines))
    return buffer.getvalue()


def render_session(session: TrackingSession, scratch: Path) -> Path:
    """The frames with every target's box in its colour, labelled ``<id>: <confidence>`` as ``lorat track --render``
    draws several targets."""
    from ..data.video import VideoWriter, draw_boxes
    from ..palette import target_colour

    by_frame: dict[int, list[tuple[int, Any, float]]] = {}
    for frame, target, box, score in session.rows():
        by_frame.setdefault(frame, []).append((target, box, score))
    path = scratch / f"rendered-{session.id}.mp4"
    store = session.store
    frames = (_decoded(store.jpeg(i)) for i in range(len(store))) if store.live else store.iterate_from(0)
    with VideoWriter(path, fps=store.fps) as writer:
        for index, frame in enumerate(frames):
            shown = by_frame.get(index, [])
            writer.write(draw_boxes(frame, [b for _, b, _ in shown], [target_colour(t - 1) for t, _, _ in shown],
                                    [f"{t}: {s:.2f}" for t, _, s in shown]))
    return path


def _decoded(jpeg: bytes) -> Any:
    """A stored JPEG as an RGB array (a live source's frames exist only as stored)."""
    import io

    import numpy as np
    from PIL import Image

    with Image.open(io.BytesIO(jpeg)) as image:
        return np.asarray(image.convert("RGB"))
