"""The results store of one run folder: run.json (configuration + fingerprint), results files, summaries.

Why it looks like this (see docs/rollout_format.md for the on-disk format):

- One JSON line per finished episode, appended, flushed and fsynced before the next episode is reported, so a
  `kill -9` loses at most the line being written. A torn last line (no trailing newline, or not JSON) is
  ignored when reading and cut off before the next append, so the episode is simply run again.
- Exactly one process writes each results file: the parent process of each rank collects its workers' results
  through a queue. Rank 0 of a single-node run writes `results.jsonl`; rank R of a multi-node run writes
  `results-rank{R:03d}.jsonl` in the shared output folder, so nodes never append to the same file (appends
  from several NFS clients are not atomic). Whichever rank sees every episode recorded merges the shards into
  `results.jsonl` (atomically, sorted by uid) and writes the summary; `navila-agent eval --merge-only` does the
  same by hand.
- run.json stores the full configuration and a fingerprint of the fields that change results (agent, model,
  split, seed, ...). A folder written with a different fingerprint is refused instead of mixing two runs;
  fields that only change speed or what is saved (workers, GPUs, --limit, --record) are not fingerprinted, so a
  run can be resumed on a different machine shape.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RUN_FORMAT = "navila-agent-run/1"
RUN_FILE = "run.json"
RESULTS_FILE = "results.jsonl"
SHARD_GLOB = "results-rank*.jsonl"
SUMMARY_JSON = "summary.json"
SUMMARY_MD = "summary.md"
ROLLOUTS_DIR = "rollouts"
VIDEOS_DIR = "videos"


class RunFolderError(ValueError):
    """The output folder cannot be used for this run (different configuration, unreadable run.json, ...)."""


def fingerprint(config: Mapping[str, Any]) -> str:
    """A short stable hash of a JSON-serialisable configuration (key order does not matter)."""
    canonical = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to `path` so readers see either the old or the new file, never half of one.

    Writes a temporary file in the same folder (same filesystem), fsyncs it, then `os.replace`s it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    """`atomic_write_text` of `obj` as indented JSON (non-finite floats written as null)."""
    atomic_write_text(path, json.dumps(json_safe(obj), indent=2, sort_keys=False) + "\n")


def json_safe(obj: Any) -> Any:
    """Replace NaN / inf floats (not valid JSON) with None, recursively; numpy scalars become Python ones."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "shape", None) == ():
        return json_safe(obj.item())  # numpy scalar
    if hasattr(obj, "tolist") and callable(obj.tolist):
        return json_safe(obj.tolist())  # numpy array
    return obj


def results_file_name(rank: int, world_size: int) -> str:
    """The results file written by `rank`: results.jsonl alone, results-rankRRR.jsonl in a multi-node run."""
    return RESULTS_FILE if world_size == 1 else f"results-rank{rank:03d}.jsonl"


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Complete JSON lines of a results file; a torn last line (a kill mid-write) is skipped.

    A damaged line that is not the last one means the file was edited or two writers collided: that is an
    error worth stopping for, not something to skip silently.
    """
    path = Path(path)
    if not path.exists():
        return []
    lines = path.read_bytes().split(b"\n")
    # Everything after the final newline was never completed (the writer appends line + newline in one write,
    # then fsyncs): skip it; the episode is simply run again.
    complete = lines[:-1]
    records: list[dict[str, Any]] = []
    for i, raw in enumerate(complete):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as e:
            raise RunFolderError(
                f"{path}: line {i + 1} is not valid JSON ({e}); the results file is damaged"
            ) from e
        if not isinstance(obj, dict) or "uid" not in obj:
            raise RunFolderError(f"{path}: line {i + 1} is not an episode record (no 'uid')")
        records.append(obj)
    return records


def repair_tail(path: Path) -> int:
    """Cut a torn last line (anything after the final newline) off `path`; return the bytes removed."""
    path = Path(path)
    if not path.exists():
        return 0
    size = path.stat().st_size
    if size == 0:
        return 0
    with open(path, "rb+") as f:
        # Scan backwards in blocks for the last newline; result lines are small, so this reads little.
        pos, block = size, 4096
        keep = 0
        while pos > 0:
            start = max(0, pos - block)
            f.seek(start)
            chunk = f.read(pos - start)
            idx = chunk.rfind(b"\n")
            if idx >= 0:
                keep = start + idx + 1
                break
            pos = start
        if keep < size:
            f.truncate(keep)
            f.flush()
            os.fsync(f.fileno())
    return size - keep


class ResultWriter:
    """Appends one JSON line per episode to one results file, flushed and fsynced before returning."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        repair_tail(self.path)
        self._f = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - kept open for the run

    def write(self, record: Mapping[str, Any]) -> None:
        """Append `record` as one line; it is on disk when this returns."""
        line = json.dumps(json_safe(record), separators=(",", ":"), sort_keys=False)
        self._f.write(line + "\n")
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> ResultWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def results_files(run_dir: Path) -> list[Path]:
    """Every results file of a run folder: the merged/single-node file first, then rank shards."""
    run_dir = Path(run_dir)
    files = [run_dir / RESULTS_FILE] if (run_dir / RESULTS_FILE).exists() else []
    return files + sorted(run_dir.glob(SHARD_GLOB))


def load_results(run_dir: Path) -> dict[str, dict[str, Any]]:
    """All recorded episodes of a run folder keyed by uid (the last record of a uid wins)."""
    out: dict[str, dict[str, Any]] = {}
    for path in results_files(run_dir):
        for rec in read_jsonl(path):
            out[rec["uid"]] = rec
    return out


def _config_diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    keys = sorted(set(old) | set(new))
    return [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys if old.get(k) != new.get(k)]


def open_run(
    run_dir: Path,
    config: Mapping[str, Any],
    fingerprinted: Iterable[str],
    overwrite: bool = False,
    when_set: Iterable[str] = (),
) -> dict[str, Any]:
    """Create or reopen a run folder for `config`; return the run.json content.

    `fingerprinted` names the config keys that change results; `when_set` those that count only when not None
    (options added later: a folder written before one existed keeps its fingerprint). A folder whose run.json has
    another fingerprint is refused (RunFolderError naming the differing fields and how to start fresh) unless
    `overwrite`, which deletes the previous results, summaries and rollouts first.
    """
    run_dir = Path(run_dir)
    keys = sorted(fingerprinted)
    missing = [k for k in keys if k not in config]
    if missing:
        raise ValueError(f"open_run: fingerprinted keys missing from config: {missing}")
    fp_config = {k: config[k] for k in keys} | {k: config[k] for k in sorted(when_set) if config.get(k) is not None}
    fp = fingerprint(fp_config)
    run_file = run_dir / RUN_FILE
    if run_file.exists() and not overwrite:
        try:
            old = json.loads(run_file.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise RunFolderError(
                f"{run_file} is unreadable ({e}); use --output to pick another folder or --overwrite to start fresh"
            ) from e
        if old.get("fingerprint") != fp:
            compared = [*keys, *sorted(when_set)]
            diff = _config_diff(
                {k: old.get("config", {}).get(k) for k in compared}, {k: config.get(k) for k in compared}
            )
            raise RunFolderError(
                f"{run_dir} holds results of a different configuration ({'; '.join(diff) or 'fingerprint differs'}). "
                "Use --output to write elsewhere, or --overwrite to delete those results and start fresh."
            )
        # Same experiment: keep the original creation time, record the latest full config (workers, ...).
        meta = {**old, "config": json_safe(dict(config))}
        atomic_write_json(run_file, meta)
        return meta
    if overwrite and run_dir.exists():
        clear_run(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    meta = {
        "format": RUN_FORMAT,
        "config": json_safe(dict(config)),
        "fingerprinted": keys,
        "fingerprint": fp,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    atomic_write_json(run_file, meta)
    # Every run folder has a results.jsonl from the start (the viewer opens a run that has one), also a multi-node
    # run whose episodes are in the rank files until the merge.
    (run_dir / RESULTS_FILE).touch(exist_ok=True)
    return meta


def clear_run(run_dir: Path) -> None:
    """Delete what a run wrote into `run_dir` (and nothing else a user may have put there)."""
    run_dir = Path(run_dir)
    for path in [run_dir / RUN_FILE, run_dir / SUMMARY_JSON, run_dir / SUMMARY_MD, *results_files(run_dir)]:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    shutil.rmtree(run_dir / ROLLOUTS_DIR, ignore_errors=True)
    shutil.rmtree(run_dir / VIDEOS_DIR, ignore_errors=True)


def read_run(run_dir: Path) -> dict[str, Any]:
    """The run.json of a run folder (RunFolderError with the path when missing or unreadable)."""
    run_file = Path(run_dir) / RUN_FILE
    try:
        return json.loads(run_file.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise RunFolderError(f"{run_file} not found: {run_dir} is not a navila-agent run folder") from e
    except json.JSONDecodeError as e:
        raise RunFolderError(f"{run_file} is not valid JSON ({e})") from e


def merge_shards(run_dir: Path) -> int:
    """Rewrite results.jsonl atomically as every recorded episode, one line per uid, sorted; return the count.

    Shard files are kept (they are what a resumed rank reads and appends to); readers deduplicate by uid.
    """
    records = load_results(run_dir)
    text = "".join(json.dumps(json_safe(records[u]), separators=(",", ":")) + "\n" for u in sorted(records))
    atomic_write_text(Path(run_dir) / RESULTS_FILE, text)
    return len(records)
