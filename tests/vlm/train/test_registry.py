"""Training-data registry and mixtures."""

from __future__ import annotations

import json

import pytest

from vlm.train.registry import DEFAULT_REGISTRY, load_registry, parse_mixture


def write(path, text):
    path.write_text(text)
    return path


def test_default_registry_resolves_cache_placeholder(tmp_path):
    reg = load_registry(DEFAULT_REGISTRY, {"cache": str(tmp_path)})
    assert {"r2r_gen", "rxr_gen"} <= set(reg)
    assert reg["r2r_gen"].path == tmp_path / "train_data" / "r2r_gen"


def test_relative_paths_weights_and_mixture(tmp_path):
    reg = load_registry(
        write(tmp_path / "r.yaml", "datasets:\n  a: {path: data/a, weight: 2}\n  b: {path: /x/b}\n")
    )
    assert reg["a"].path == tmp_path / "data" / "a" and reg["a"].weight == 2.0
    mix = parse_mixture("a+b*0.5", reg)
    assert [(e.name, e.weight) for e in mix] == [("a", 2.0), ("b", 0.5)]


def test_mixture_accepts_a_collected_folder(tmp_path):
    folder = tmp_path / "my_collect"
    folder.mkdir()
    (folder / "manifest.json").write_text(json.dumps({"format": "navila-agent-trajectories/1"}))
    [entry] = parse_mixture(str(folder), {})
    assert entry.name == "my_collect" and entry.path == folder


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("datasets:\n  a: {path: p, type: webdataset}\n", "unknown type 'webdataset'"),
        ("datasets:\n  a: {path: p, weight: 0}\n", "weight must be > 0"),
        ("datasets:\n  a: {path: '{nope}/p'}\n", "unknown placeholder"),
        ("datasets:\n  a: {path: p, colour: red}\n", "unknown field"),
        ("nothing: 1\n", "top-level 'datasets:'"),
    ],
)
def test_registry_errors_name_the_problem(tmp_path, yaml_text, message):
    with pytest.raises(ValueError, match=message):
        load_registry(write(tmp_path / "r.yaml", yaml_text))


def test_mixture_errors(tmp_path):
    reg = load_registry(write(tmp_path / "r.yaml", "datasets:\n  a: {path: p}\n"))
    with pytest.raises(ValueError, match="unknown dataset 'zz'; available: a"):
        parse_mixture("a+zz", reg)
    with pytest.raises(ValueError, match="appears twice"):
        parse_mixture("a+a", reg)
    with pytest.raises(ValueError, match="weight after"):
        parse_mixture("a*x", reg)
    with pytest.raises(ValueError, match="expected names"):
        parse_mixture("a+", reg)
