"""The backend registry is the one list of backends: the CLIs, the node parameters, the bring-up
graph and evaluation read it, and registering a backend is one call."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from kinema4d_core.errors import ConfigError
from kinema4d_core.registry import (BackendOption, BackendSpec, backend_names, backend_spec, make_backend,
                                    options_from_params, register_backend, unregister_backend)


def _backend_choices(command: str) -> list[str]:
    from kinema4d_core.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    return list(next(a for a in sub._actions if a.dest == "backend").choices)


@pytest.mark.parametrize("command", ["simulate", "replay", "evaluate"])
def test_every_cli_offers_every_registered_backend(command):
    assert set(backend_names()) >= {"kinema4d", "kinema4d-tiny", "static-scene"}
    assert _backend_choices(command) == list(backend_names())


def test_specs_say_what_each_backend_is():
    assert backend_spec("static-scene").is_baseline and not backend_spec("static-scene").fixed_geometry
    assert not backend_spec("kinema4d").is_baseline and backend_spec("kinema4d").fixed_geometry
    assert [o.name for o in backend_spec("kinema4d").options if o.required] == ["base", "checkpoint"]
    assert backend_spec("kinema4d-tiny").option("device").default == "cpu"
    assert backend_spec("kinema4d").option("device").default == "cuda"
    with pytest.raises(ConfigError, match="unknown backend 'nope'"):
        backend_spec("nope")


class _Echo:
    """A stand-in generator for the registration test (records its options)."""

    name = "echo-test"
    num_frames = 5
    size = (8, 12)

    def __init__(self, folder: Path, *, scale: float = 1.0, fast: bool = False):
        self.folder, self.scale, self.fast = folder, scale, fast


@pytest.fixture
def echo_backend():
    spec = register_backend(BackendSpec(
        name="echo-test", summary="model: test echo", factory=_Echo, fixed_geometry=True, default_steps=3,
        options=(BackendOption("folder", Path, None, "a folder", required=True, flag="checkpoint",
                               param="checkpoint_path"),
                 BackendOption("scale", float, 1.0, "a scale"), BackendOption("fast", bool, False, "fast"))))
    yield spec
    unregister_backend("echo-test")


def test_registering_a_backend_is_one_call_and_every_front_end_sees_it(echo_backend, tmp_path):
    assert "echo-test" in backend_names()
    for command in ("simulate", "replay", "evaluate"):
        assert "echo-test" in _backend_choices(command)
    b = make_backend("echo-test", folder=str(tmp_path), scale="2.5", fast="true")   # strings coerced
    assert b.folder == tmp_path and b.scale == 2.5 and b.fast is True
    assert echo_backend.geometry(b) == (5, (8, 12))
    with pytest.raises(ConfigError, match=r"needs \['folder'\]"):
        make_backend("echo-test")
    with pytest.raises(ConfigError, match="does not take the options"):
        make_backend("echo-test", folder=tmp_path, colour="red")
    with pytest.raises(ConfigError, match="is not a float"):
        make_backend("echo-test", folder=tmp_path, scale="big")
    # node parameters: "" means the backend's default; checkpoint_path names each backend's folder option
    assert options_from_params("echo-test", {"checkpoint_path": "/x", "device": "", "backend": "echo-test"}) == \
        {"folder": "/x"}


def test_one_flag_names_each_backends_folder():
    from kinema4d_core.cli import build_parser
    from kinema4d_core.cli.replay import backend_options, check_backend_args
    from kinema4d_core.errors import InputError

    parser = build_parser()
    args = parser.parse_args(["replay", "b", "--robot", "panda", "--calibration", "c", "--out", "o",
                              "--backend", "kinema4d-tiny", "--checkpoint", "/tiny", "--vae-tiling"])
    check_backend_args(args)
    assert dict(backend_options(args)) == {"checkpoint_dir": "/tiny", "vae_tiling": True}
    assert options_from_params("kinema4d", {"base_path": "/b", "checkpoint_path": "/c", "offload": ""}) == \
        {"base": "/b", "checkpoint": "/c"}
    args = parser.parse_args(["replay", "b", "--robot", "panda", "--calibration", "c", "--out", "o",
                              "--backend", "static-scene", "--device", "cpu"])
    with pytest.raises(InputError, match="--device does not apply to --backend static-scene"):
        check_backend_args(args)


def test_evaluation_reads_roles_and_baselines_from_the_registry():
    from kinema4d_core.evaluation import BenchmarkConfig, comparison_table

    cfg = BenchmarkConfig(n=1, tasks=("push",), backends=(("static-scene", ()), ("kinema4d-tiny", ())))
    res = {"static-scene": {"unavailable": "x"}, "kinema4d-tiny": {"unavailable": "y"}}
    table = comparison_table(res, {"episodes": []}, cfg, (24, 36))
    assert [(b["name"], b["baseline"], b["role"]) for b in table["backends"]] == [
        ("static-scene", True, backend_spec("static-scene").summary),
        ("kinema4d-tiny", False, backend_spec("kinema4d-tiny").summary)]


def test_graph_checks_required_backend_options_from_the_registry():
    graph = pytest.importorskip("kinema4d_ros.graph")
    calib = str(Path(graph.repo_root()) / "calibration" / "sim_camera.yaml")
    with pytest.raises(ConfigError, match="backend kinema4d needs base_path and checkpoint_path"):
        graph.check_args("sim", {"backend": "kinema4d", "calibration": calib})
    graph.check_args("sim", {"backend": "kinema4d-tiny", "calibration": calib})
    assert "kinema4d-tiny" in next(a for a in graph.ARGUMENTS if a.name == "backend").description
