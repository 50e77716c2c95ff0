"""`navila-agent viz` / `viz export` end to end through the typer app (bad input -> clear message, exit 2)."""

from __future__ import annotations

import threading
from pathlib import Path

import cv2
import pytest
import typer
from typer.testing import CliRunner

from benchmarks.cli.viz import register


@pytest.fixture(scope="module")
def app() -> typer.Typer:
    a = typer.Typer()

    @a.command("noop")
    def _noop() -> None:  # a second command so typer keeps `viz` as a sub-group, as in the real app
        pass

    register(a)
    return a


runner = CliRunner()


def test_viz_help_lists_serve_and_export(app: typer.Typer) -> None:
    res = runner.invoke(app, ["viz", "--help"])
    assert res.exit_code == 0 and "serve" in res.output and "export" in res.output


def test_not_a_run_folder_is_a_clear_error(app: typer.Typer, tmp_path: Path) -> None:
    res = runner.invoke(app, ["viz", str(tmp_path), "--no-open"])
    assert res.exit_code == 2
    assert "is not a run folder: run.json is missing" in res.output
    assert "Traceback" not in res.output
    res = runner.invoke(app, ["viz", str(tmp_path / "missing"), "--no-open"])
    assert res.exit_code == 2 and "does not exist" in res.output
    res = runner.invoke(app, ["viz"])
    assert res.exit_code == 2 and "give a RUN_DIR" in res.output


def test_bad_flags(app: typer.Typer, run_dir: Path) -> None:
    res = runner.invoke(app, ["viz", str(run_dir), "--no-open", "--port", "99999"])
    assert res.exit_code == 2 and "port" in res.output
    res = runner.invoke(app, ["viz", "--live", "--no-open"])
    assert res.exit_code == 2 and "--live needs --episode" in res.output
    res = runner.invoke(app, ["viz", str(run_dir), "--live", "--episode", "r2r_val_unseen:1", "--no-open"])
    assert res.exit_code == 2 and "not both" in res.output
    res = runner.invoke(
        app, ["viz", "--live", "--episode", "r2r_val_unseen", "--agent", "manual", "--no-open"]
    )
    assert res.exit_code == 2 and "needs one episode" in res.output
    res = runner.invoke(
        app, ["viz", "--live", "--episode", "nosuchsplit:1", "--agent", "manual", "--no-open"]
    )
    assert res.exit_code == 2 and "--episode" in res.output and "Traceback" not in res.output


def test_export_writes_mp4(app: typer.Typer, run_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "ep4.mp4"
    res = runner.invoke(
        app, ["viz", "export", str(run_dir), "--episode", "r2r_val_unseen:4", "--out", str(out), "--fps", "8"]
    )
    assert res.exit_code == 0, res.output
    assert f"wrote {out}" in res.output.replace("\n", "")
    cap = cv2.VideoCapture(str(out))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 27 and cap.get(cv2.CAP_PROP_FPS) == pytest.approx(8)
    res = runner.invoke(app, ["viz", "export", str(run_dir), "--episode", "r2r_val_unseen:3"])
    assert res.exit_code == 2 and "no rollout record" in res.output
    res = runner.invoke(app, ["viz", "export", str(tmp_path), "--episode", "x:1"])
    assert res.exit_code == 2 and "not a run folder" in res.output


def test_serve_prints_url_and_serves(
    app: typer.Typer, run_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The command binds, prints the URL and serves; `serve` is patched to answer one request and return."""
    import urllib.request

    import viz.server as server_mod

    seen: dict[str, object] = {}

    def one_request(server: server_mod.ViewerServer, open_browser: bool = True) -> None:
        seen["open"] = open_browser
        t = threading.Thread(target=server.handle_request)
        t.start()
        with urllib.request.urlopen(server.url + "api/episodes", timeout=5) as r:
            seen["status"] = r.status
        t.join(5)
        server.server_close()

    monkeypatch.setattr(server_mod, "serve", one_request)
    res = runner.invoke(app, ["viz", str(run_dir), "--no-open"])
    assert res.exit_code == 0, res.output
    assert "http://127.0.0.1:" in res.output and seen == {"open": False, "status": 200}


def test_viz_is_registered_on_the_navila_agent_app() -> None:
    from benchmarks.cli import app as real_app

    res = runner.invoke(real_app, ["viz", "--help"])
    assert res.exit_code == 0 and "export" in res.output


def test_port_in_use_is_a_clear_error(app: typer.Typer, run_dir: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        res = runner.invoke(app, ["viz", str(run_dir), "--no-open", "--port", str(port)])
    assert res.exit_code == 2 and f"cannot listen on 127.0.0.1:{port}" in res.output
