"""Start the server: bind, print the URL (with its access token), serve until Ctrl-C."""
from __future__ import annotations

import ipaddress
import shutil
import socket
import threading
import time
from pathlib import Path
from typing import Any, Callable

from . import DEFAULT_PORT
from .security import Folders, new_token
from .server import AppState, create_app

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


class AppServer:
    """The app bound to ``host:port`` (port 0: a free one); :meth:`run` serves in this thread, :meth:`start` in a
    background thread (tests), :meth:`stop` ends either."""

    def __init__(self, folders: list[str | Path], engine_factory: Callable[[], Any], *, host: str = "127.0.0.1",
                 port: int = 0, max_upload_bytes: int = 500_000_000) -> None:
        import uvicorn

        self.host = host
        served = Folders(folders)  # a folder that cannot be served is refused before anything else
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.socket = socket.socket(family, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.socket.bind((host, port))
            self.socket.listen(128)  # connections wait for the server from the moment the URL is printed
        except OSError as e:
            self.socket.close()
            raise OSError(e.errno, f"cannot listen on {host}:{port}: {e.strerror} (--host/--port)") from e
        self.port = self.socket.getsockname()[1]
        # after the bind: the state makes a temporary folder, which a port in use would leave behind
        self.state = AppState(served, engine_factory, token=new_token(), bound_host=host,
                              max_upload_bytes=max_upload_bytes)
        config = uvicorn.Config(create_app(self.state), log_level="warning", lifespan="off", access_log=False,
                                timeout_graceful_shutdown=1)
        self.server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        shown = "127.0.0.1" if self.host in ("0.0.0.0", "") else "[::1]" if self.host == "::" else self.host
        if ":" in shown and not shown.startswith("["):
            shown = f"[{shown}]"
        return f"http://{shown}:{self.port}"

    def url(self, session: str | None = None) -> str:
        """The URL to open: it carries the access token (and the session to show)."""
        return f"{self.base_url}/?token={self.state.token}" + (f"&session={session}" if session else "")

    def exposure(self) -> str:
        """What binding to this host exposes, in one line."""
        folders = ", ".join(str(root) for root in self.state.folders.roots) or "no folder"
        if self.host in LOCAL_HOSTS:
            return (f"only this machine can connect; from another one: ssh -L {self.port}:127.0.0.1:{self.port} "
                    "<this host>, then open the URL there")
        try:
            everywhere = ipaddress.ip_address(self.host).is_unspecified
        except ValueError:
            everywhere = False
        where = "every network interface" if everywhere else self.host
        return (f"listening on {where}: anyone who can reach port {self.port} and has this URL (its token) can read "
                f"the videos and evaluation folders under {folders}, upload videos and run the model on this "
                "machine; the traffic is not encrypted (prefer an SSH tunnel on untrusted networks)")

    def run(self) -> None:
        try:
            self.server.run(sockets=[self.socket])
        finally:
            self.close()

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="lorat app", daemon=True)
        self._thread.start()
        while not self.server.started and self._thread.is_alive():
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.close()

    def close(self) -> None:
        """Stop every tracking run and live source; delete the uploads and renderings."""
        for session in list(self.state.sessions.values()):
            session.pause()
            session.store.close()
        shutil.rmtree(self.state.scratch, ignore_errors=True)


def serve(app_server: AppServer, *, session: str | None = None, print_line: Callable[[str], None] = print) -> None:
    """Print the URL and what it exposes, then serve until interrupted."""
    print_line(f"lorat app: open {app_server.url(session)}")
    print_line(f"lorat app: {app_server.exposure()}")
    app_server.run()


def select_targets(args: Any, print_line: Callable[[str], None] = print) -> int:
    """``lorat track INPUT --select``: serve the page on INPUT's folder (a camera or stream: no folder), opened on
    INPUT's first frame, and print its URL; the targets are drawn, tracked and exported there."""
    from ..commands.common import engine_from_args
    from ..data.live import is_camera, is_network
    from .server import open_live_store, open_path_store, ready_snapshot

    named = args.input if getattr(args, "camera", None) is None else args.camera
    live = is_camera(named) or is_network(str(named))
    if live:
        folders: list[Path] = []
        store = open_live_store(str(named), stall_timeout=args.stall_timeout, camera_size=args.camera_size)
    else:
        path = Path(str(named)).expanduser()
        store = open_path_store(path, path.name)  # FrameError now for a missing or unreadable input
        folders = [path.resolve().parent]
    engine, _spec = engine_from_args(args)
    try:
        server = AppServer(folders, lambda: engine, port=DEFAULT_PORT)
    except OSError:  # taken (a `lorat app` running): any free port
        server = AppServer(folders, lambda: engine, port=0)
    session = server.state.new_session(store)
    ready_snapshot(session)
    print_line(f"lorat track: draw the targets on the first frame of {store.name}, then Track and export there")
    serve(server, session=session.id, print_line=print_line)
    return 0
