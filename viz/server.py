"""The local web viewer: a small stdlib HTTP server over one run folder (or one live session).

It serves the static page (viz/static/), a JSON API and the run's files, and nothing else:

    GET /                       the page (index.html; live.html in live mode)
    GET /static/<name>          the page's scripts and styles
    GET /api/run                run.json + summary.json
    GET /api/episodes           the episode list from results.jsonl (small rows; records are fetched lazily)
    GET /api/episode/<uid>      one record.json, plus where its files live and which of them are missing
    GET /files/<path>           a file below the run folder (frames, top-down maps)
    /api/live/...               live mode only (viz/live.py)

Only 127.0.0.1 is bound by default, and every file path from a request goes through
`viz.run_folder.safe_resolve`, which refuses anything that would leave the run folder.

    navila-agent viz runs/my_run            # prints http://127.0.0.1:PORT/ and opens it
"""

from __future__ import annotations

import contextlib
import json
import logging
import mimetypes
import threading
import webbrowser
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from viz.run_folder import (
    ROLLOUTS_DIR,
    RunFolder,
    RunFolderError,
    episode_dir_name,
    list_episodes,
    load_record,
    missing_files,
    record_dir,
    safe_resolve,
)

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"


@dataclass
class ViewerConfig:
    """Where the viewer listens and whether it opens a browser tab."""

    host: str = "127.0.0.1"  # loopback by default: a run folder is private data
    port: int = 0  # 0 = any free port (printed at start)
    open_browser: bool = True  # open the page in the default browser once serving

    def __post_init__(self) -> None:
        if not self.host:
            raise ValueError("ViewerConfig.host must be a host name or address, e.g. 127.0.0.1")
        if not (0 <= int(self.port) <= 65535):
            raise ValueError(f"ViewerConfig.port must be 0 (any free port) or 1-65535, got {self.port}")


class ViewerServer(ThreadingHTTPServer):
    """ThreadingHTTPServer that knows its run folder (or live session); the handler reads them from here."""

    daemon_threads = True  # a browser keeping a connection open must not block shutdown

    def __init__(self, address: tuple[str, int], run: RunFolder | None, live: Any = None) -> None:
        super().__init__(address, ViewerHandler)
        self.run = run
        self.live = live  # viz.live.LiveSession or None
        self._warned: set[str] = set()
        self._warn_lock = threading.Lock()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}/"

    def warn_once(self, key: str, message: str) -> None:
        """Log a warning once per key: a page polling a broken record should not flood the console."""
        with self._warn_lock:
            if key in self._warned:
                return
            self._warned.add(key)
        log.warning("%s", message)


class ViewerHandler(BaseHTTPRequestHandler):
    """Routes GET/POST requests to the API, the static page or the run's files."""

    server: ViewerServer
    server_version = "navila-agent-viz"

    # ---------- plumbing ----------
    def log_message(self, format: str, *args: Any) -> None:  # quiet per-request access log
        log.debug("%s - %s", self.address_string(), format % args)

    def _send(self, status: int, body: bytes, content_type: str, cache: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "max-age=3600" if cache else "no-cache")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_json(self, obj: Any, status: int = 200) -> None:
        body = json.dumps(obj, allow_nan=False, default=str).encode("utf-8")
        self._send(status, body, "application/json; charset=utf-8")

    def send_error_json(self, status: int, message: str) -> None:
        self.send_json({"error": message}, status=status)

    def send_file(self, path: Path, cache: bool = False) -> None:
        ctype = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        if ctype.startswith("text/") or ctype in ("application/javascript", "application/json"):
            ctype += "; charset=utf-8"
        try:
            body = path.read_bytes()
        except OSError as exc:
            self.send_error_json(HTTPStatus.NOT_FOUND, f"cannot read {path.name}: {exc.strerror}")
            return
        self._send(200, body, ctype, cache=cache)

    def _host_allowed(self) -> bool:
        """On a loopback bind, only Host names that mean this machine: a web page that rebinds its own DNS name
        to 127.0.0.1 (DNS rebinding) must not be able to read the run folder or drive the live session."""
        if not ipaddress_is_loopback(self.server.server_address[0]):
            return True
        host = (self.headers.get("Host") or "").strip().lower()
        name = host.rsplit(":", 1)[0] if not host.startswith("[") else host.split("]")[0] + "]"
        return name in ("", "127.0.0.1", "localhost", "[::1]")

    def _dispatch(self, method: str) -> None:
        if not self._host_allowed():
            self.send_error_json(
                HTTPStatus.FORBIDDEN, "unexpected Host header (the viewer answers only local names)"
            )
            return
        try:
            parts = urlsplit(self.path)
            path = unquote(parts.path)  # %2e%2e -> '..': decoded once, then checked by safe_resolve
            query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            if method == "GET":
                self._get(path, query)
            else:
                self._post(path, query)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the browser went away; nothing to answer
        except Exception as exc:  # one bad request must never take the viewer down
            log.exception("viewer: error while answering %s %s", method, self.path)
            with contextlib.suppress(OSError):
                self.send_error_json(HTTPStatus.INTERNAL_SERVER_ERROR, f"{type(exc).__name__}: {exc}")

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    # ---------- routes ----------
    def _get(self, path: str, query: dict[str, str]) -> None:
        live = self.server.live
        if path in ("/", "/index.html"):
            self.send_file(STATIC_DIR / ("live.html" if live is not None else "index.html"))
        elif path == "/favicon.ico":
            self._send(HTTPStatus.NO_CONTENT, b"", "image/x-icon")
        elif path.startswith("/static/"):
            target = safe_resolve(STATIC_DIR, path[len("/static/") :])
            if target is None:
                self.send_error_json(HTTPStatus.NOT_FOUND, "no such static file")
            else:
                self.send_file(target)
        elif path.startswith("/api/live/"):
            if live is None:
                self.send_error_json(
                    HTTPStatus.NOT_FOUND, "not in live mode (start with `navila-agent viz --live`)"
                )
            else:
                live_get(self, live, path[len("/api/live/") :], query)
        elif self.server.run is None:
            self.send_error_json(HTTPStatus.NOT_FOUND, "no run folder in live mode")
        elif path == "/api/run":
            self._api_run()
        elif path == "/api/episodes":
            self.send_json({"episodes": list_episodes(self.server.run)})
        elif path.startswith("/api/episode/"):
            self._api_episode(path[len("/api/episode/") :])
        elif path.startswith("/files/"):
            self._files(path[len("/files/") :])
        else:
            self.send_error_json(HTTPStatus.NOT_FOUND, f"no route {path}")

    def _post(self, path: str, query: dict[str, str]) -> None:
        live = self.server.live
        if live is None or not path.startswith("/api/live/"):
            self.send_error_json(HTTPStatus.NOT_FOUND, f"no route POST {path}")
            return
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(min(length, 1 << 16)) if length else b""
        try:
            body = json.loads(raw) if raw else {}
        except json.JSONDecodeError:
            self.send_error_json(HTTPStatus.BAD_REQUEST, "request body must be JSON")
            return
        live_post(self, live, path[len("/api/live/") :], body if isinstance(body, dict) else {})

    def _api_run(self) -> None:
        run = self.server.run
        self.send_json(
            {"name": run.root.name, "run": run.run, "summary": run.summary, "warnings": run.warnings}
        )

    def _api_episode(self, uid: str) -> None:
        run = self.server.run
        try:
            ep_dir = record_dir(run, uid)
        except RunFolderError as exc:
            self.send_error_json(HTTPStatus.FORBIDDEN, str(exc))
            return
        if not (ep_dir / "record.json").is_file():
            self.send_error_json(
                HTTPStatus.NOT_FOUND, f"episode {uid} has no rollout record (run without --record?)"
            )
            return
        try:
            record = load_record(ep_dir)
        except RunFolderError as exc:
            self.server.warn_once(f"record:{uid}", f"viewer: {exc}")
            self.send_error_json(HTTPStatus.UNPROCESSABLE_ENTITY, str(exc))
            return
        missing = missing_files(record, ep_dir)
        if missing:
            self.server.warn_once(
                f"missing:{uid}",
                f"viewer: episode {uid}: {len(missing)} file(s) named in record.json are missing under {ep_dir} "
                f"(first: {missing[0]})",
            )
        record["base"] = f"/files/{ROLLOUTS_DIR}/{episode_dir_name(uid)}/"
        record["missing"] = missing
        self.send_json(record)

    def _files(self, relative: str) -> None:
        run = self.server.run
        target = safe_resolve(run.root, relative)
        if target is None:
            if ".." in relative.split("/") or relative.startswith("/") or "\x00" in relative:
                self.send_error_json(HTTPStatus.FORBIDDEN, "path outside the run folder")
                return
            candidate = run.root / relative
            if candidate.is_symlink() or not _inside(run.root, candidate):
                self.send_error_json(HTTPStatus.FORBIDDEN, "path outside the run folder")
                return
            self.server.warn_once(f"file:{relative}", f"viewer: missing file {relative} in {run.root}")
            self.send_error_json(HTTPStatus.NOT_FOUND, f"no file {relative} in the run folder")
            return
        self.send_file(target, cache=True)


def ipaddress_is_loopback(host: str) -> bool:
    """True for 127.x.x.x, ::1 and 'localhost'."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _inside(root: Path, candidate: Path) -> bool:
    try:
        candidate.resolve().relative_to(root)
    except (ValueError, OSError):
        return False
    return True


def live_get(handler: ViewerHandler, live: Any, route: str, query: dict[str, str]) -> None:
    """Live-mode GET routes; implemented in viz.live, imported lazily so the run viewer never loads env code."""
    from viz.live import handle_get

    handle_get(handler, live, route, query)


def live_post(handler: ViewerHandler, live: Any, route: str, body: dict[str, Any]) -> None:
    """Live-mode POST routes (step / run / reset / manual)."""
    from viz.live import handle_post

    handle_post(handler, live, route, body)


def make_server(run: RunFolder | None, config: ViewerConfig, live: Any = None) -> ViewerServer:
    """Bind the viewer to config.host:config.port (0 = a free port) without serving yet."""
    try:
        return ViewerServer((config.host, int(config.port)), run, live=live)
    except OSError as exc:
        raise ValueError(f"cannot listen on {config.host}:{config.port}: {exc.strerror or exc}") from exc


def serve(server: ViewerServer, open_browser: bool = True) -> None:
    """Serve until Ctrl-C; optionally open the page in the default browser first."""
    if open_browser:
        threading.Timer(0.3, lambda: webbrowser.open(server.url)).start()
    try:
        server.serve_forever(poll_interval=0.25)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def start_in_thread(server: ViewerServer) -> threading.Thread:
    """Serve in a daemon thread (tests, notebooks); stop with `server.shutdown(); server.server_close()`."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    return thread
