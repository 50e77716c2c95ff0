"""The viewer's HTTP API over a synthetic run folder: routes, lazy records, bad input and path traversal."""

from __future__ import annotations

import http.client
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.viz.run_fixture import build_run
from viz.run_folder import RunFolderError, list_episodes, load_run, safe_resolve
from viz.server import ViewerConfig, ViewerServer, make_server, start_in_thread


@pytest.fixture()
def server(run_dir: Path) -> Iterator[ViewerServer]:
    srv = make_server(load_run(run_dir), ViewerConfig(port=0, open_browser=False))
    start_in_thread(srv)
    yield srv
    srv.shutdown()
    srv.server_close()


def get(srv: ViewerServer, path: str, method: str = "GET", host: str | None = None) -> tuple[int, bytes, str]:
    """Raw request (no client-side normalisation of '..' or %2e, unlike urllib)."""
    conn = http.client.HTTPConnection(*srv.server_address[:2], timeout=5)
    conn.putrequest(method, path, skip_accept_encoding=True, skip_host=host is not None)
    if host is not None:
        conn.putheader("Host", host)
    conn.endheaders()
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp.status, body, resp.getheader("Content-Type") or ""


def test_binds_loopback_by_default(server: ViewerServer) -> None:
    assert server.server_address[0] == "127.0.0.1"
    assert server.url.startswith("http://127.0.0.1:")


def test_foreign_host_header_refused(server: ViewerServer) -> None:
    """DNS rebinding: a page served as evil.example that resolves to 127.0.0.1 gets nothing."""
    port = server.server_address[1]
    assert get(server, "/api/episodes", host=f"evil.example:{port}")[0] == 403
    assert get(server, "/api/episodes", host=f"localhost:{port}")[0] == 200
    assert get(server, "/api/episodes", host=f"127.0.0.1:{port}")[0] == 200


def test_page_and_static_files(server: ViewerServer) -> None:
    status, body, ctype = get(server, "/")
    assert status == 200 and "text/html" in ctype
    assert b"app.js" in body
    for name in ("app.js", "style.css", "draw.js"):
        status, body, _ = get(server, f"/static/{name}")
        assert status == 200 and len(body) > 100, name


def test_api_run_and_episode_list(server: ViewerServer) -> None:
    status, body, ctype = get(server, "/api/run")
    assert status == 200 and "application/json" in ctype
    run = json.loads(body)
    assert run["run"]["format"] == "navila-agent-run/1"
    assert run["summary"]["episodes"] == 4
    eps = json.loads(get(server, "/api/episodes")[1])["episodes"]
    assert [e["uid"] for e in eps] == [f"r2r_val_unseen:{i}" for i in (1, 2, 3, 4)]
    by_uid = {e["uid"]: e for e in eps}
    assert by_uid["r2r_val_unseen:2"]["parse_failures"] == 1
    assert by_uid["r2r_val_unseen:3"]["status"] == "error" and not by_uid["r2r_val_unseen:3"]["has_record"]
    assert by_uid["r2r_val_unseen:1"]["has_record"] and by_uid["r2r_val_unseen:1"]["metrics"]["sr"] == 1.0
    assert "steps" not in by_uid["r2r_val_unseen:1"]  # the list never carries records


def test_api_episode_record_and_files(server: ViewerServer) -> None:
    status, body, _ = get(server, "/api/episode/r2r_val_unseen:2")
    assert status == 200
    rec = json.loads(body)
    assert rec["uid"] == "r2r_val_unseen:2" and rec["missing"] == []
    assert rec["base"] == "/files/rollouts/r2r_val_unseen__2/"
    assert any(not d["parse_ok"] for d in rec["decisions"])
    status, body, ctype = get(server, rec["base"] + rec["steps"][3]["frame"])
    assert status == 200 and ctype.startswith("image/jpeg") and body[:2] == b"\xff\xd8"
    status, body, ctype = get(server, rec["base"] + rec["map"]["image"])
    assert status == 200 and ctype.startswith("image/png")
    # URL-encoded uid works the same
    assert get(server, "/api/episode/r2r_val_unseen%3A2")[0] == 200


def test_episode_without_record_is_404(server: ViewerServer) -> None:
    status, body, _ = get(server, "/api/episode/r2r_val_unseen:3")
    assert status == 404 and "record" in json.loads(body)["error"]


def test_unfinished_record_folder_is_not_listed_as_recorded(run_dir: Path) -> None:
    (run_dir / "rollouts" / "r2r_val_unseen__4" / "record.json").unlink()  # frames written, record never
    rows = {e["uid"]: e for e in list_episodes(load_run(run_dir))}
    assert not rows["r2r_val_unseen:4"]["has_record"] and rows["r2r_val_unseen:1"]["has_record"]


@pytest.mark.parametrize(
    "path",
    [
        "/files/../../../etc/passwd",
        "/files/%2e%2e/%2e%2e/etc/passwd",
        "/files/rollouts/%2E%2E/%2E%2E/%2E%2E/etc/hostname",
        "/files//etc/passwd",
        "/files/rollouts/..%2f..%2f..%2fetc/passwd",
        "/static/../server.py",
        "/static/%2e%2e/server.py",
        "/api/episode/..",
        "/api/episode/..%2f..%2fetc",
        "/files/run.json%00.png",
    ],
)
def test_path_traversal_refused(server: ViewerServer, path: str) -> None:
    status, body, _ = get(server, path)
    assert status in (403, 404), (path, status)
    assert b"root:" not in body and b"def " not in body
    assert get(server, "/api/episodes")[0] == 200  # still serving


def test_symlink_escaping_run_folder_refused(run_dir: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret")
    os.symlink(secret, run_dir / "leak.txt")
    os.symlink(tmp_path, run_dir / "rollouts" / "updir")
    srv = make_server(load_run(run_dir), ViewerConfig(open_browser=False))
    start_in_thread(srv)
    try:
        for path in ("/files/leak.txt", "/files/rollouts/updir/secret.txt"):
            status, body, _ = get(srv, path)
            assert status == 403 and b"top secret" not in body
        assert safe_resolve(srv.run.root, "leak.txt") is None
    finally:
        srv.shutdown()
        srv.server_close()


def test_not_a_run_folder(tmp_path: Path) -> None:
    with pytest.raises(RunFolderError, match="does not exist"):
        load_run(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunFolderError, match=r"run.json is missing"):
        load_run(tmp_path / "empty")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "run.json").write_text("{not json")
    with pytest.raises(RunFolderError, match=r"run.json is not valid JSON"):
        load_run(bad)
    (bad / "run.json").write_text(json.dumps({"format": "something-else/3"}))
    with pytest.raises(RunFolderError, match="format"):
        load_run(bad)
    (bad / "run.json").write_text(json.dumps({"format": "navila-agent-run/1"}))
    with pytest.raises(RunFolderError, match=r"results.jsonl is missing"):
        load_run(bad)
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(RunFolderError, match="not a folder"):
        load_run(tmp_path / "file.txt")


def test_missing_frames_warn_and_serve(run_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    ep = run_dir / "rollouts" / "r2r_val_unseen__1"
    for f in sorted((ep / "frames").iterdir())[5:]:
        f.unlink()
    (ep / "topdown.png").unlink()
    srv = make_server(load_run(run_dir), ViewerConfig(open_browser=False))
    start_in_thread(srv)
    try:
        with caplog.at_level(logging.WARNING, logger="viz.server"):
            status, body, _ = get(srv, "/api/episode/r2r_val_unseen:1")
            rec = json.loads(body)
            assert status == 200
            assert "topdown.png" in rec["missing"] and "frames/000005.jpg" in rec["missing"]
            assert "frames/000004.jpg" not in rec["missing"]
            assert get(srv, rec["base"] + "frames/000006.jpg")[0] == 404
            assert get(srv, rec["base"] + "frames/000001.jpg")[0] == 200
        assert any("missing" in r.getMessage() for r in caplog.records)
    finally:
        srv.shutdown()
        srv.server_close()


def test_malformed_record_and_results_do_not_crash(run_dir: Path) -> None:
    (run_dir / "rollouts" / "r2r_val_unseen__4" / "record.json").write_text(
        '{"format": "navila-agent-rollout/1"}'
    )
    with (run_dir / "results.jsonl").open("a") as fh:
        fh.write('{"uid": "r2r_val_unseen:9", "metrics": {"ne": NaN}}\n{"half a line')
    srv = make_server(load_run(run_dir), ViewerConfig(open_browser=False))
    start_in_thread(srv)
    try:
        status, body, _ = get(srv, "/api/episode/r2r_val_unseen:4")
        assert status == 422 and "steps" in json.loads(body)["error"]
        eps = json.loads(get(srv, "/api/episodes")[1])["episodes"]
        assert len(eps) == 5 and eps[-1]["metrics"]["ne"] is None  # NaN -> null, partial line skipped
    finally:
        srv.shutdown()
        srv.server_close()


def test_large_run_list_is_fast(tmp_path: Path) -> None:
    import time

    run = build_run(tmp_path / "big", n_episodes=1000, frame_size=16)
    srv = make_server(load_run(run), ViewerConfig(open_browser=False))
    start_in_thread(srv)
    try:
        t0 = time.perf_counter()
        status, body, _ = get(srv, "/api/episodes")
        elapsed = time.perf_counter() - t0
        assert status == 200 and len(json.loads(body)["episodes"]) == 1000
        assert elapsed < 1.0 and len(body) < 600_000
    finally:
        srv.shutdown()
        srv.server_close()


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="port"):
        ViewerConfig(port=70000)
    with pytest.raises(ValueError, match="host"):
        ViewerConfig(host="")
