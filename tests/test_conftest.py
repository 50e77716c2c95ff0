"""The suite's own setup: tests on the real R2R-CE sample skip loudly, never silently."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

CONFTEST = Path(__file__).with_name("conftest.py")
SAMPLE_TEST = """
def test_reads_sample(r2r_sample_dir):
    assert (r2r_sample_dir / "val_seen" / "val_seen.json.gz").is_file()
"""


def _run(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, shared: Path) -> pytest.RunResult:
    pytester.makeconftest(CONFTEST.read_text())
    pytester.makepyfile(test_sample=SAMPLE_TEST)
    monkeypatch.setenv("NAVILA_AGENT_SHARED_DATA", str(shared))
    return pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")


def test_missing_sample_skips_with_a_summary_banner(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    result = _run(pytester, monkeypatch, tmp_path / "nowhere")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(
        ["*1 tests skipped: real R2R-CE sample not present at *nowhere/r2r_vlnce_sample*"]
    )


def test_present_sample_runs_without_a_banner(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    val_seen = tmp_path / "shared" / "r2r_vlnce_sample" / "val_seen"
    val_seen.mkdir(parents=True)
    for name in ("val_seen.json.gz", "val_seen_gt.json.gz"):
        (val_seen / name).write_bytes(b"")
    result = _run(pytester, monkeypatch, tmp_path / "shared")
    result.assert_outcomes(passed=1)
    assert "real R2R-CE sample not present" not in result.stdout.str()
