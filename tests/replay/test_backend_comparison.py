"""`kinema4d evaluate OUT --sim-benchmark N --backends ...`: the same simulated episodes through
several backends, one comparison table; resumable, failures isolated."""

from __future__ import annotations

import json

import pytest

from kinema4d_core import evaluation as V
from kinema4d_core.cli import main

METRICS = ("psnr", "ssim", "cd_l1", "cd_l2", "fscore", "temp_rgb", "temp_cd_l1", "flow_epe")


@pytest.mark.slow
def test_two_backends_on_shared_episodes_then_resume_with_a_failed_episode(tmp_path):
    comparison = tmp_path / "bench"
    # the tiny model generates 49 frames at 48x96, so the comparison runs at that size
    assert main(["evaluate", str(comparison), "--sim-benchmark", "1", "--tasks", "pick_place", "push",
                 "--backends", "static-scene,kinema4d-tiny", "--steps", "1", "--no-lpips", "--quiet"]) == 0
    _check_table(comparison)
    _check_resume_and_isolation(comparison)


def _check_table(comparison):
    cmp = json.loads((comparison / "comparison.json").read_text())
    assert cmp["size"] == [48, 96] and cmp["frames"] == 49 and cmp["sim_episodes"]["ok"] == 2
    assert [(b["name"], b["baseline"]) for b in cmp["backends"]] == [("static-scene", True), ("kinema4d-tiny", False)]
    rows = {(r["backend"], r["task"]): r for r in cmp["rows"]}
    assert set(rows) == {(b, t) for b in ("static-scene", "kinema4d-tiny") for t in ("pick_place", "push", "all")}
    for r in rows.values():
        assert r["ok"] == r["episodes"] == (2 if r["task"] == "all" else 1)
        assert r["gt_n"] == r["sim_n"] == r["episodes"]
        assert 0 <= r["gt_ci"][0] <= r["gt_ci"][1] <= 1 and r["difference"] == pytest.approx(r["sim_rate"] - r["gt_rate"])
        assert all(isinstance(r[m], float) for m in METRICS), r
        assert r["seconds_per_episode"] > 0
    # both backends saw the very same episodes: the same ground-truth outcomes
    for t in ("pick_place", "push"):
        assert rows[("static-scene", t)]["gt_rate"] == rows[("kinema4d-tiny", t)]["gt_rate"]
    # the baseline copies the real first frame; untrained random weights do far worse
    assert rows[("static-scene", "all")]["psnr"] > rows[("kinema4d-tiny", "all")]["psnr"]
    md = (comparison / "comparison.md").read_text()
    assert "| static-scene | **baseline** | pick_place | 1/1 |" in md and "| kinema4d-tiny | untrained reference |" in md
    for b in ("static-scene", "kinema4d-tiny"):
        ev = json.loads((comparison / "backends" / b / "evaluation.json").read_text())
        assert ev["summary"]["evaluated"] == 2


def _check_resume_and_isolation(comparison):
    import shutil

    marker = comparison / "backends" / "static-scene" / "push_scripted_000" / V.MARKER
    before = {p: p.stat().st_mtime_ns for p in comparison.glob("**/" + V.MARKER) if p != marker}
    # a damaged recording fails that episode for the backend that reruns it, nothing else
    shutil.rmtree(marker.parent)
    (comparison / "sim_episodes" / "push_scripted_000" / V.SIM_EPISODE_FILE).write_bytes(b"not an npz")
    assert main(["evaluate", str(comparison), "--sim-benchmark", "1", "--tasks", "pick_place", "push",
                 "--backends", "static-scene", "--steps", "1", "--size", "48", "96", "--no-lpips", "--quiet"]) == 0
    assert {p: p.stat().st_mtime_ns for p in before} == before  # nothing completed was recomputed
    cmp = json.loads((comparison / "comparison.json").read_text())
    rows = {r["task"]: r for r in cmp["rows"]}
    assert rows["push"]["ok"] == 0 and "cannot read episode" in rows["push"]["failed"]["push_scripted_000"]
    assert rows["pick_place"]["ok"] == 1 and isinstance(rows["pick_place"]["psnr"], float)
    assert "Failed episodes:" in (comparison / "comparison.md").read_text()
    # a different size in the same folder is refused rather than mixed
    assert main(["evaluate", str(comparison), "--sim-benchmark", "1", "--backends", "static-scene",
                 "--size", "60", "90", "--quiet"]) == 2


def test_comparison_arguments_are_checked(tmp_path):
    out = str(tmp_path / "x")
    assert main(["evaluate", out, "--sim-benchmark", "1", "--backends", "static-scene,nope"]) == 2
    assert main(["evaluate", out, "--sim-benchmark", "1", "--backends", "kinema4d"]) == 2  # needs --base/--checkpoint
    assert main(["evaluate", out, "--backends", "static-scene"]) == 2  # needs --sim-benchmark
    assert not (tmp_path / "x").exists()


def test_policy_evaluation_table_and_object_metrics_on_two_policies(tmp_path):
    """2 policies x 1 push episode through the baseline: per-policy Table-3 rows with agreement,
    the correlation unavailable with its reason (2 < 3 policies), object metrics finite."""
    import math

    cfg = V.BenchmarkConfig(n=1, tasks=("push",), backends=(("static-scene", ()),), size=(120, 180), n_frames=8,
                            with_lpips=False, policies=("scripted", "aim-4cm"), bootstrap=50, first_seed=100)
    cmp = V.run_backend_comparison(tmp_path / "bench", cfg, progress=False)
    assert cmp["policies"] == ["scripted", "aim-4cm"] and cmp["sim_episodes"]["ok"] == 2
    assert cmp["sim_seeds"] == [100, 100]   # held out: past the seeds a model was trained on
    rec = json.loads((tmp_path / "bench" / "sim_episodes" / "report.json").read_text())
    assert sorted(e["name"] for e in rec["episodes"]) == ["push_aim-4cm_100", "push_scripted_100"]
    aim = next(e for e in rec["episodes"] if e["policy"] == "aim-4cm")
    assert math.dist(aim["believed_cube_xy"], (0.5, -0.08)) == pytest.approx(0.04)
    rows = {r["task"]: r for r in cmp["rows"]}
    for r in rows.values():
        assert r["ok"] == r["agreement_n"] == r["object_n"] == 2 and 0 <= r["agreement"] <= 1
        assert math.isfinite(r["object_chamfer_m"]) and math.isfinite(r["final_object_error_m"])
        assert r["object_chamfer_m"] >= 0 and r["final_object_error_m"] >= 0
    ev = json.loads((tmp_path / "bench" / "backends" / "static-scene" / "evaluation.json").read_text())
    for e in ev["episodes"]:
        assert e["object"]["final_object_frame"] is not None and e["object"]["frames_compared"] > 0
    pe = cmp["policy_evaluation"]
    table = {(r["task"], r["policy"]): r for r in pe["rows"]}
    assert set(table) == {(t, p) for t in ("push", "all") for p in ("scripted", "aim-4cm", "all")}
    for (task, pol), r in table.items():
        assert r["backend"] == "static-scene" and r["baseline"] is True
        assert r["episodes"] == r["gt_n"] == r["sim_n"] == r["agreement_n"] == (2 if pol == "all" else 1)
        assert r["agreement"] == (r["gt_rate"] == r["sim_rate"] if pol != "all" else r["agreement"])
        assert 0 <= r["agreement_ci"][0] <= r["agreement_ci"][1] <= 1
        assert 0 <= r["detected_gt_rate"] <= 1 and 0 <= r["agreement_with_detected_gt"] <= 1
    (c_push, c_all) = pe["correlation"]
    for c in (c_push, c_all):
        assert [p["policy"] for p in c["policies"]] == ["aim-4cm", "scripted"]
        assert c["pearson"].startswith("unavailable: needs >= 3 policies") and isinstance(c["spearman_ci"], str)
        assert c["vs_detected_gt"]["spearman"].startswith("unavailable: needs >= 3 policies")
    md = (tmp_path / "bench" / "comparison.md").read_text()
    assert "policies scripted, aim-4cm, 1 episode(s) per task and policy" in md and "sim seeds 100-100" in md
    assert "## Policy evaluation (Table 3)" in md and "| static-scene | **baseline** | push | aim-4cm | 1 |" in md
    assert "Obj. Chamfer (m)" in md and "unavailable: needs >= 3 policies" in md
