"""`kinema4d replay` / `evaluate` / `view` end to end on real bags with the static-scene backend."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from kinema4d_core import bags as B
from kinema4d_core.cli import main
from tests.replay.replay_helpers import write_recording

H, W = 48, 72


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from kinema4d_core.camera import load_calibration, save_calibration
    from kinema4d_core.robot import load_robot

    root = tmp_path_factory.mktemp("replay")
    cam = load_calibration("calibration/sim_camera.yaml").resized(H, W)
    calib = root / "camera.yaml"
    save_calibration(cam, calib)
    robot = load_robot("panda")
    # two good episodes (8 and 10 frames) and a short one (3 frames), separated by gaps
    bag = write_recording(root / "rec", storage="mcap", episodes=[(100.0, 8), (110.0, 10), (120.0, 3)],
                          depth=True, h=H, w=W, K=cam.K, joint_names=robot.joint_names, home=robot.home())
    return root, calib, bag


def _replay(root, calib, bags, out, *extra):
    return main(["replay", *map(str, bags), "--robot", "panda", "--calibration", str(calib), "--out", str(out),
                 "--frames", "6", "--episodes-by", "gap:2.0", "--depth-topic", "/camera/depth", "--quiet", *extra])


def test_replay_writes_rollouts_bags_and_a_report_with_failure_reasons(setup):
    root, calib, bag = setup
    out = root / "out"
    assert _replay(root, calib, [bag], out) == 1  # one episode is too short
    report = json.loads((out / "report.json").read_text())
    by_name = {e["name"]: e for e in report["episodes"]}
    assert [by_name[n]["status"] for n in ("episode_000", "episode_001", "episode_002")] == ["ok", "ok", "failed"]
    assert "only 3 aligned camera frames, the model needs 6" in by_name["episode_002"]["reason"]
    for name in ("episode_000", "episode_001"):
        d = out / name
        with np.load(d / "rollout.npz") as z:
            assert z["rgb"].shape == (6, H, W, 3) and z["pointmap"].shape == (6, H, W, 3)
        with np.load(d / "ground_truth.npz") as g:
            stamps = g["stamps"]
            assert g["rgb"].shape == (6, H, W, 3) and g["depth"].shape == (6, H, W)
        # the predicted bag carries one image, cloud and camera info per frame at the frame stamps
        msgs = list(B.iter_messages(d / "rollout_bag"))
        clouds = [(t, raw, ty) for topic, ty, t, raw in msgs if topic == "/kinema4d/points"]
        assert len(clouds) == 6
        np.testing.assert_allclose([t * 1e-9 for t, _, _ in clouds], stamps, atol=1e-6)
        cloud = B.typestore().deserialize_cdr(clouds[0][1], clouds[0][2])
        xyz, rgb = B.pointcloud_to_numpy(cloud)
        assert cloud.header.frame_id and len(xyz) > 0 and rgb is not None
        assert np.all(xyz[:, 2] > 0)  # in front of the camera, metres
    assert by_name["episode_000"]["alignment"]["unmatched"] == 0


def test_rerun_skips_completed_episodes(setup):
    root, calib, bag = setup
    out = root / "resume"
    assert _replay(root, calib, [bag], out, "--no-bag") == 1
    before = {p.parent.name: p.stat().st_mtime_ns for p in out.glob("*/rollout.npz")}
    shutil.rmtree(out / "episode_001")  # as if the run had died before finishing this one
    assert _replay(root, calib, [bag], out, "--no-bag") == 1
    after = {p.parent.name: p.stat().st_mtime_ns for p in out.glob("*/rollout.npz")}
    assert after["episode_000"] == before["episode_000"]  # not recomputed
    assert "episode_001" in after  # recomputed
    report = json.loads((out / "report.json").read_text())
    assert report["counts"] == {"ok": 2, "failed": 1}


def test_a_corrupt_bag_fails_alone(setup):
    root, calib, bag = setup
    broken = root / "broken"
    shutil.copytree(bag, broken)
    (data,) = broken.glob("*.mcap")
    data.write_bytes(data.read_bytes()[:2000])
    out = root / "multi"
    assert _replay(root, calib, [bag, broken], out, "--no-bag") == 1
    report = json.loads((out / "report.json").read_text())
    assert report["bag_failures"][0]["source"] == str(broken)
    assert "corrupt or truncated" in report["bag_failures"][0]["reason"]
    assert report["counts"] == {"ok": 2, "failed": 1}
    assert (out / "rec_episode_000" / "rollout.npz").is_file()


def test_evaluate_writes_metrics_tables_and_plots(setup):
    root, calib, bag = setup
    out = root / "eval"
    _replay(root, calib, [bag], out, "--no-bag")
    assert main(["evaluate", str(out), "--task", "lift", "--no-lpips", "--table-height", "-1.0"]) == 0
    ev = json.loads((out / "evaluation.json").read_text())
    ok = [e for e in ev["episodes"] if e["status"] == "ok"]
    assert len(ok) == 2
    for e in ok:
        assert 0 < e["video"]["ssim"] <= 1 and e["video"]["psnr"] > 5
        assert e["video"]["lpips"].startswith("unavailable")
        assert e["geometry"]["cd_l1"] >= 0 and 0 <= e["geometry"]["fscore"] <= 1
        assert isinstance(e["sim_success"], bool) and isinstance(e["gt_success"], bool)
    failed = [e for e in ev["episodes"] if e["status"] == "failed"]
    assert failed and "model needs 6" in failed[0]["reason"]
    md = (out / "evaluation.md").read_text()
    assert "| episode_000 | ok |" in md and "Ground truth" in md
    assert {p.name for p in (out / "plots").glob("*.png")} >= {"psnr.png", "ssim.png", "chamfer.png",
                                                               "success_rate.png"}


def test_view_writes_an_rrd_that_reads_back(setup):
    from kinema4d_core.viewer import read_rrd_summary

    root, calib, bag = setup
    out = root / "view"
    _replay(root, calib, [bag], out, "--no-bag")
    rrd = root / "ep.rrd"
    assert main(["view", str(out / "episode_000"), "--out", str(rrd)]) == 0
    summary = read_rrd_summary(rrd)
    assert summary["/world/camera/points"] == 6 and summary["/world/camera/image"] == 6
    assert summary["/ground_truth/image"] == 6
    assert main(["view", str(out / "nope"), "--out", str(rrd)]) == 2


def test_sim_benchmark_runs_the_scripted_policy_through_the_baseline(tmp_path):
    out = tmp_path / "bench"
    assert main(["evaluate", str(out), "--sim-benchmark", "1", "--tasks", "pick_place", "--frames", "6",
                 "--no-lpips", "--quiet"]) == 0
    ev = json.loads((out / "evaluation.json").read_text())
    (ep,) = ev["episodes"]
    assert ep["status"] == "ok" and isinstance(ep["gt_success"], bool) and isinstance(ep["sim_success"], bool)
    assert ep["geometry"]["cd_l1"] > 0 and ev["success_table"][0]["scenario"] == "pick_place"


def test_an_unreadable_rollout_fails_its_episode_alone_in_evaluate(setup):
    # a truncated rollout.npz used to raise BadZipFile out of evaluate_directory (no evaluation at all)
    root, calib, bag = setup
    out = root / "eval_corrupt"
    _replay(root, calib, [bag], out, "--no-bag")
    npz = out / "episode_001" / "rollout.npz"
    npz.write_bytes(npz.read_bytes()[:100])
    assert main(["evaluate", str(out), "--no-lpips"]) == 0
    ev = {e["name"]: e for e in json.loads((out / "evaluation.json").read_text())["episodes"]}
    assert ev["episode_000"]["status"] == "ok" and ev["episode_000"]["video"]["psnr"] > 5
    assert ev["episode_001"]["status"] == "not evaluated" and "BadZipFile" in ev["episode_001"]["reason"]


def test_backend_options_that_do_not_apply_are_refused_before_any_episode(setup, capsys):
    # static-scene used to receive --device and fail every episode with the same ConfigError
    root, calib, bag = setup
    out = root / "wrong_options"
    assert _replay(root, calib, [bag], out, "--device", "cpu") == 2
    assert _replay(root, calib, [bag], out, "--backend", "kinema4d") == 2
    err = capsys.readouterr().err
    assert "--device does not apply to --backend static-scene" in err
    assert "backend kinema4d needs the model" in err
    assert not out.exists()
