"""A local web page: track your own video (draw boxes with the mouse, watch them tracked, correct a target, export
the CSV and a rendered video) and browse evaluation folders frame by frame with every tracker's boxes.

Serves only the folders given (default: the current folder) on 127.0.0.1; prints the URL to open (it carries an
access token). Over SSH: forward the port (ssh -L PORT:127.0.0.1:PORT host). See docs/app.md.

examples:
  lorat app videos/                          # track videos/*.mp4 and frame folders in the browser
  lorat app runs/demo-lorat runs/demo-csrt   # browse evaluation folders (written by `lorat evaluate`)
  lorat app videos/ --checkpoint runs/mine/model.safetensors --device cuda --port 8765
"""
from __future__ import annotations

import argparse
import sys

from ..app import DEFAULT_PORT
from .common import add_backend_arguments, add_model_arguments, engine_from_args, positive_int


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folders", nargs="*", metavar="FOLDER",
                        help="folders whose videos, frame folders and evaluation folders the page may open "
                             "(default: the current folder); nothing outside them is served")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 exposes the "
                             "page to the network, and the command says what that exposes)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help=f"port (default {DEFAULT_PORT}; 0: any free port)")
    parser.add_argument("--max-upload-mb", type=positive_int, default=500, metavar="MB",
                        help="largest video the page may upload (default 500 MB)")
    add_model_arguments(parser)
    add_backend_arguments(parser)


def run(args: argparse.Namespace) -> int:
    import starlette  # noqa: F401  (the `app` extra, named before the model loads)
    import uvicorn  # noqa: F401

    from ..app.serve import AppServer, serve

    # The folders and the port are checked first (a one-line error at once), then the model loads, once, before the
    # URL is printed: a bad model flag fails here, not on the first page request.
    server = AppServer(args.folders or ["."], lambda: engine_from_args(args)[0], host=args.host, port=args.port,
                       max_upload_bytes=args.max_upload_mb * 1_000_000)
    try:
        server.state.engine
    except BaseException:
        server.socket.close()
        server.close()
        raise
    serve(server, print_line=lambda line: print(line, file=sys.stdout, flush=True))
    return 0
