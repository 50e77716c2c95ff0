"""The summary of a run: VLN-CE means over the recorded episodes (benchmarks.metrics.aggregate) plus what the
runner knows beyond the metrics — errors, parse failures, the time breakdown, and whether every selected
episode is in — written atomically as summary.json and summary.md.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.metrics import aggregate, format_markdown, stats_json
from benchmarks.store import SUMMARY_JSON, SUMMARY_MD, atomic_write_text


def summarize(records: Sequence[dict[str, Any]], dtw: str, selected: int | None = None) -> dict[str, Any]:
    """Summary of finished-episode records (results.jsonl lines).

    Means are over the episodes that ran to the end (status "ok"); crashed episodes are counted under "errors"
    and never averaged in as zeros, so an infrastructure crash cannot pass for a navigation failure.
    `selected` is how many episodes the run was asked for; "complete" says whether all of them are recorded.
    """
    ok = [r for r in records if r.get("status") == "ok"]
    summary = aggregate([r.get("metrics") or {} for r in ok])
    timings = {
        k: sum(float((r.get("timings") or {}).get(k, 0.0)) for r in records)
        for k in ("sim_s", "model_s", "other_s", "wait_s")
    }
    steps = sum(int((r.get("metrics") or {}).get("steps") or 0) for r in ok)
    summary.update(
        {
            "errors": len(records) - len(ok),
            "error_uids": sorted(r["uid"] for r in records if r.get("status") != "ok"),
            "parse_failures": sum(int(r.get("parse_failures") or 0) for r in records),
            "decisions": sum(int(r.get("decisions") or 0) for r in records),
            "timings": {**timings, "steps": steps},
            "recorded": len(records),
            "selected": len(records) if selected is None else selected,
            "complete": selected is None or len(records) >= selected,
        }
    )
    summary["dtw"] = dtw
    return summary


def step_times_text(timings: dict[str, Any], steps: int) -> str:
    """`sim 1.8 ms, model 33.6 ms, other 0.4 ms[, waiting for the batch 166.6 ms]`: summed `*_s` timings per
    low-level step; the wait only appears when a batched run recorded one (summary.md and the console say the same)."""
    n = max(int(steps), 1)
    text = ", ".join(
        f"{k[:-2]} {1000 * float(timings.get(k, 0.0)) / n:.1f} ms" for k in ("sim_s", "model_s", "other_s")
    )
    wait = float(timings.get("wait_s", 0.0))
    return text + (f", waiting for the batch {1000 * wait / n:.1f} ms" if wait > 0 else "")


def markdown(summary: dict[str, Any], title: str) -> str:
    """summary.md: the metrics table, then errors / parse failures / time per step."""
    t = summary.get("timings", {})
    n = max(int(t.get("steps", 0)), 1)
    lines = [
        format_markdown(summary, title=title),
        f"- episodes recorded: {summary['recorded']} of {summary['selected']}"
        + ("" if summary["complete"] else " (incomplete: rerun the same command to resume)"),
        f"- errors: {summary['errors']}"
        + (f" ({', '.join(summary['error_uids'][:10])})" if summary["errors"] else ""),
        f"- parse failures: {summary['parse_failures']} in {summary['decisions']} decisions",
        f"- DTW: {summary['dtw']}",
        "- time per low-level step: " + step_times_text(t, n),
    ]
    return "\n".join(lines) + "\n"


def write_summary(run_dir: Path, summary: dict[str, Any], title: str) -> None:
    """summary.json (strict JSON, non-finite means as null) and summary.md, each replaced atomically."""
    body = json.loads(stats_json({k: v for k, v in summary.items() if k != "dtw"}, dtw=summary["dtw"]))
    atomic_write_text(Path(run_dir) / SUMMARY_JSON, json.dumps(body, indent=2) + "\n")
    atomic_write_text(Path(run_dir) / SUMMARY_MD, markdown(summary, title))
