"""What the page may reach and who may ask: the started folders only, requests from the page's own origin only.

* **Folders.** A client names a file as (folder index, path relative to that folder). The path is resolved (``..``
  and every symbolic link followed) and must still lie inside the folder's own resolved path: a link pointing
  outside is refused like ``../..``.
* **Who asks.** The URL the command prints carries a random token; opening it stores the token in a cookie
  (``HttpOnly``, ``SameSite=Strict``) that every later request must show, so another local user or a page of
  another site cannot use the app. On top, a request is refused when its ``Origin`` is not the page's own, when
  the browser marks it cross-site (``Sec-Fetch-Site``), or when its ``Host`` is a name other than the one the
  server was started on, ``localhost`` or an IP address: a DNS-rebinding page reaches the server under its own
  domain name.
"""
from __future__ import annotations

import hmac
import ipaddress
import secrets
from pathlib import Path
from urllib.parse import urlsplit

COOKIE = "lorat_app"


class Refused(ValueError):
    """A request the app does not serve; the message says why (answered with 403 or 404)."""


class Folders:
    """The folders the app was started with, resolved once; files are addressed inside them only."""

    def __init__(self, folders: list[str | Path]) -> None:
        self.roots: list[Path] = []
        for folder in folders:
            path = Path(folder).expanduser()
            if not path.is_dir():
                raise FileNotFoundError(f"not a folder: {folder}")
            self.roots.append(path.resolve())

    def resolve(self, folder: int, relative: str) -> Path:
        """The file ``relative`` inside started folder number ``folder``; :class:`Refused` when it is not inside."""
        if not 0 <= folder < len(self.roots):
            raise Refused(f"no folder {folder}")
        root = self.roots[folder]
        if "\x00" in relative or Path(relative).is_absolute():
            raise Refused("not a path inside the folder")
        path = (root / relative).resolve()
        if path != root and root not in path.parents:
            raise Refused("outside the started folders")
        return path

    def relative(self, folder: int, path: Path) -> str:
        """``path`` (inside folder ``folder``) as the client names it."""
        return path.resolve().relative_to(self.roots[folder]).as_posix()


def new_token() -> str:
    return secrets.token_urlsafe(24)


def token_matches(given: str | None, token: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), token.encode())


def allowed_host(host_header: str | None, bound_host: str) -> bool:
    """Whether ``Host`` names this server: an IP address, ``localhost`` or the name given to ``--host``; any other
    name is a DNS-rebinding page's."""
    if not host_header:
        return False
    hostname = urlsplit(f"//{host_header}").hostname or ""
    if hostname in ("localhost", bound_host.lower()):
        return True
    try:
        ipaddress.ip_address(hostname)
    except ValueError:
        return False
    return True


def check_origin(headers: dict[str, str], scheme: str) -> None:
    """:class:`Refused` for a request another site's page sent."""
    if headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        raise Refused("request from another site")
    origin = headers.get("origin")
    if origin is not None and origin != f"{scheme}://{headers.get('host', '')}":
        raise Refused(f"request from another origin ({origin})")
