"""What several tests take from the machine: Debian's chromium (the browser tests; `.ci/run` installs it) and a free
local port (servers and torchrun rendezvous started by a test)."""
from __future__ import annotations

import shutil
import socket

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
