"""Reading a run folder (docs/rollout_format.md) for the viewer and the video exporter.

Everything here is a pure read of files under one run folder; the web server and the MP4 writer share it so
that the page and the video always agree on what a run contains. Paths coming from a browser are resolved by
`safe_resolve`, the one place that decides whether a requested file lies inside the run folder.

    from viz.run_folder import load_run, list_episodes
    run = load_run("runs/2026-11-27_r2r")
    rows = list_episodes(run)
"""

from __future__ import annotations

import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

RUN_FORMAT = "navila-agent-run/1"
ROLLOUT_FORMAT = "navila-agent-rollout/1"
RUN_FILE = "run.json"
RESULTS_FILE = "results.jsonl"
SUMMARY_FILE = "summary.json"
ROLLOUTS_DIR = "rollouts"
RECORD_FILE = "record.json"


class RunFolderError(ValueError):
    """A folder is not a readable run folder, or a record inside it is malformed (message names the file)."""


@dataclass(frozen=True)
class RunFolder:
    """A validated run folder: its root and the parsed `run.json` / `summary.json` (summary may be absent)."""

    root: Path  # absolute, symlinks resolved: every served path must stay below it
    run: dict[str, Any]  # parsed run.json
    summary: dict[str, Any] | None = None  # parsed summary.json, None while the run is still going
    warnings: list[str] = field(default_factory=list)  # non-fatal problems found while loading


def episode_dir_name(uid: str) -> str:
    """Folder name of an episode's record: the uid with ':' replaced by '__' and '/' by '_' (portable file
    names; docs/rollout_format.md). The runner writes records under this name and the viewer reads them."""
    return uid.replace(":", "__").replace("/", "_")


def _read_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RunFolderError(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise RunFolderError(f"{path} is not valid JSON (line {exc.lineno}: {exc.msg})") from exc


def load_run(run_dir: str | os.PathLike[str]) -> RunFolder:
    """Validate that `run_dir` is a run folder and parse its run.json / summary.json.

    Why strict: the viewer should fail at the command line with a message naming the missing file, not serve an
    empty page. A run is a folder with a run.json of format navila-agent-run/1 and a results.jsonl (possibly
    still empty while the run is in progress).
    """
    root = Path(run_dir).expanduser()
    if not root.exists():
        raise RunFolderError(f"run folder {root} does not exist")
    if not root.is_dir():
        raise RunFolderError(f"{root} is not a folder; expected a run folder written by `navila-agent run`")
    root = root.resolve()
    run_path = root / RUN_FILE
    if not run_path.is_file():
        raise RunFolderError(
            f"{root} is not a run folder: {RUN_FILE} is missing (expected the output folder of `navila-agent run`)"
        )
    run = _read_json(run_path)
    if not isinstance(run, dict):
        raise RunFolderError(f"{run_path} must hold a JSON object, got {type(run).__name__}")
    fmt = run.get("format")
    if fmt != RUN_FORMAT:
        raise RunFolderError(f"{run_path}: field 'format' is {fmt!r}; this viewer reads {RUN_FORMAT!r}")
    if not (root / RESULTS_FILE).is_file():
        raise RunFolderError(f"{root} is not a run folder: {RESULTS_FILE} is missing")
    warnings: list[str] = []
    summary = None
    summary_path = root / SUMMARY_FILE
    if summary_path.is_file():
        try:
            summary = _read_json(summary_path)
        except RunFolderError as exc:  # a half-written summary must not hide the episodes
            warnings.append(str(exc))
    return RunFolder(root=root, run=run, summary=summary, warnings=warnings)


def _finite_or_none(value: Any) -> Any:
    """JSON has no NaN/inf; the runner may still write them (Python's json does). Map them to None for browsers."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def json_safe(value: Any) -> Any:
    """A copy of parsed JSON with NaN / inf replaced by None (the runner may write them; browsers reject them)."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    return _finite_or_none(value)


def _clean_metrics(metrics: Any) -> dict[str, Any]:
    if not isinstance(metrics, dict):
        return {}
    return {str(k): _finite_or_none(v) for k, v in metrics.items()}


def episode_row(result: dict[str, Any], has_record: bool) -> dict[str, Any]:
    """One row of the episode list: the few fields the list needs, so a 1000-episode list stays small."""
    return {
        "uid": str(result.get("uid", "")),
        "episode_id": str(result.get("episode_id", "")),
        "split": result.get("split"),
        "scene_id": result.get("scene_id"),
        "instruction": result.get("instruction") or "",
        "status": result.get("status", "ok"),
        "error": result.get("error"),
        "metrics": _clean_metrics(result.get("metrics")),
        "parse_failures": int(result.get("parse_failures") or 0),
        "decisions": result.get("decisions"),
        "has_record": has_record,
    }


def read_results(run: RunFolder) -> list[dict[str, Any]]:
    """Parse results.jsonl; a malformed line (e.g. a crash mid-write) is skipped with a warning, not fatal."""
    rows: list[dict[str, Any]] = []
    path = run.root / RESULTS_FILE
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                log.warning("%s line %d is not valid JSON (%s); skipped", path, lineno, exc.msg)
                continue
            if not isinstance(obj, dict) or "uid" not in obj:
                log.warning("%s line %d has no 'uid'; skipped", path, lineno)
                continue
            rows.append(obj)
    return rows


def list_episodes(run: RunFolder) -> list[dict[str, Any]]:
    """The episode list for the viewer: one row per results.jsonl line, in file order, with `has_record`."""
    rollouts = run.root / ROLLOUTS_DIR
    # A folder without record.json is an episode whose recording never finished (the runner writes it last).
    recorded = {p.parent.name for p in rollouts.glob(f"*/{RECORD_FILE}")} if rollouts.is_dir() else set()
    return [episode_row(r, episode_dir_name(str(r["uid"])) in recorded) for r in read_results(run)]


def record_dir(run: RunFolder, uid: str) -> Path:
    """Folder of one episode's record; refuses uids that would leave rollouts/ (e.g. '../x')."""
    name = episode_dir_name(uid)
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\x00" in name:
        raise RunFolderError(f"invalid episode uid {uid!r}")
    return run.root / ROLLOUTS_DIR / name


def load_record(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Parse and check one record.json (a file, or the episode folder holding it).

    Checks only what the viewer and the video rely on (steps with positions and frames, decisions, map), with
    messages that name the file and field, so a record from another writer fails clearly.
    """
    p = Path(path)
    if p.is_dir():
        p = p / RECORD_FILE
    if not p.is_file():
        raise RunFolderError(f"no rollout record at {p} (was the run made with --record?)")
    rec = json_safe(_read_json(p))
    if not isinstance(rec, dict):
        raise RunFolderError(f"{p} must hold a JSON object")
    if rec.get("format") != ROLLOUT_FORMAT:
        raise RunFolderError(f"{p}: field 'format' is {rec.get('format')!r}; expected {ROLLOUT_FORMAT!r}")
    steps = rec.get("steps")
    if not isinstance(steps, list) or not steps:
        raise RunFolderError(f"{p}: field 'steps' must be a non-empty list")
    for i, s in enumerate(steps):
        if not isinstance(s, dict) or not isinstance(s.get("position"), list) or len(s["position"]) != 3:
            raise RunFolderError(f"{p}: steps[{i}].position must be [x, y, z]")
    if not isinstance(rec.get("decisions", []), list):
        raise RunFolderError(f"{p}: field 'decisions' must be a list")
    rec.setdefault("decisions", [])
    m = rec.get("map")
    if m is not None:
        for key in ("image", "origin", "resolution"):
            if key not in m:
                raise RunFolderError(f"{p}: field 'map.{key}' is missing")
        if not (isinstance(m["resolution"], (int, float)) and m["resolution"] > 0):
            raise RunFolderError(
                f"{p}: field 'map.resolution' must be a positive number, got {m['resolution']!r}"
            )
    rec["metrics"] = _clean_metrics(rec.get("metrics"))
    return rec


def missing_files(record: dict[str, Any], episode_dir: Path) -> list[str]:
    """Relative paths a record names (frames, map image) that are not on disk: the page shows placeholders."""
    names = [s.get("frame") for s in record["steps"] if s.get("frame")]
    if record.get("map"):
        names.append(record["map"]["image"])
    return [n for n in names if not (episode_dir / n).is_file()]


def safe_resolve(root: Path, relative: str) -> Path | None:
    """The file `relative` names below `root`, or None when it would escape `root` or is not a regular file.

    Why here and not in the HTTP handler: this is the security boundary of the viewer. The request path is
    already URL-decoded (so %2e%2e arrives as '..'); absolute paths, '..' segments, NUL bytes and symlinks that
    point outside the run folder are all refused, by resolving the final path and checking it stays below root.
    """
    if not relative or "\x00" in relative or "\\" in relative:
        return None
    if relative.startswith("/") or os.path.isabs(relative):
        return None
    parts = relative.split("/")
    if any(part in ("..",) for part in parts):
        return None
    candidate = (root / relative).resolve()
    try:
        candidate.relative_to(root)
    except ValueError:
        return None
    if not candidate.is_file():
        return None
    return candidate
