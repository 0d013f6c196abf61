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


def _write_ros1_recording(path, robot, K, n=8):
    """A ROS 1 bag (rosbags' rosbag1 Writer, noetic types): joint states at 20 Hz, rgb8 images
    and CameraInfo at 10 Hz."""
    from rosbags.rosbag1 import Writer
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS1_NOETIC)
    T = ts.types

    def header(t, seq, frame="cam"):
        ns = int(round(t * 1e9))
        return T["std_msgs/msg/Header"](seq=seq, stamp=T["builtin_interfaces/msg/Time"](sec=ns // 10**9,
                                                                                        nanosec=ns % 10**9),
                                        frame_id=frame)

    roi = T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    with Writer(path) as w:
        js = w.add_connection("/joint_states", "sensor_msgs/msg/JointState", typestore=ts)
        im = w.add_connection("/camera/image_raw", "sensor_msgs/msg/Image", typestore=ts)
        ci = w.add_connection("/camera/camera_info", "sensor_msgs/msg/CameraInfo", typestore=ts)
        msgs = []
        for i in range(2 * n):
            t = 100.0 + i / 20
            q = robot.home() + 0.05 * np.sin(t + np.arange(robot.n_joints))
            q[-1] = robot.home()[-1]
            msgs.append((t, js, T["sensor_msgs/msg/JointState"](header=header(t, i, ""), name=list(robot.joint_names),
                                                               position=q, velocity=np.zeros(0), effort=np.zeros(0)),
                         "sensor_msgs/msg/JointState"))
        for i in range(n):
            t = 100.0 + i / 10
            img = np.full((H, W, 3), 20 * i, np.uint8)
            msgs.append((t, im, T["sensor_msgs/msg/Image"](header=header(t, i), height=H, width=W, encoding="rgb8",
                                                          is_bigendian=0, step=3 * W, data=img.reshape(-1)),
                         "sensor_msgs/msg/Image"))
            msgs.append((t, ci, T["sensor_msgs/msg/CameraInfo"](
                header=header(t, i), height=H, width=W, distortion_model="plumb_bob", D=np.zeros(5),
                K=np.asarray(K, float).reshape(-1), R=np.eye(3).reshape(-1),
                P=np.hstack([K, np.zeros((3, 1))]).reshape(-1), binning_x=0, binning_y=0, roi=roi),
                "sensor_msgs/msg/CameraInfo"))
        for t, conn, msg, ty in sorted(msgs, key=lambda m: m[0]):
            w.write(conn, int(round(t * 1e9)), ts.serialize_ros1(msg, ty))
    return path


def test_a_ros1_bag_says_how_to_convert_it_and_replays_after_conversion(setup, capsys):
    import subprocess
    import sys
    from pathlib import Path

    from kinema4d_core.camera import load_calibration
    from kinema4d_core.robot import load_robot

    root, calib, _ = setup
    ros1 = _write_ros1_recording(root / "lab.bag", load_robot("panda"), load_calibration(calib).K)
    out = root / "ros1"
    args = ["--robot", "panda", "--calibration", str(calib), "--frames", "6", "--no-bag", "--quiet"]
    assert main(["replay", str(ros1), "--out", str(out), *args]) == 1
    printed = capsys.readouterr().out
    command = f"rosbags-convert --src {ros1} --dst {root / 'lab_ros2'}"
    # the terminal names the bag, says it is ROS 1 and gives the exact command
    assert f"unreadable bag {ros1}: " in printed and "ROS 1 bag" in printed and command in printed
    assert command in json.loads((out / "report.json").read_text())["bag_failures"][0]["reason"]
    # that command (the rosbags-convert installed with kinema4d) makes a bag that replays
    exe = Path(sys.executable).parent / "rosbags-convert"
    subprocess.run([str(exe), *command.split()[1:]], check=True, capture_output=True, timeout=120)
    assert main(["replay", str(root / "lab_ros2"), "--out", str(root / "ros1_converted"), *args]) == 0
    with np.load(root / "ros1_converted" / "episode_000" / "ground_truth.npz") as g:
        np.testing.assert_allclose(g["stamps"], 100.0 + np.round(np.linspace(0, 7, 6)) / 10, atol=1e-6)
        assert g["rgb"][-1, 0, 0, 0] == 140


def test_the_terminal_summary_names_each_failed_episode_and_unreadable_bag(setup, capsys):
    root, calib, bag = setup
    missing = root / "no_such_bag"
    assert _replay(root, calib, [bag, missing], root / "summary", "--no-bag") == 1
    printed = capsys.readouterr().out
    assert f"unreadable bag {missing}: " in printed and "does not exist" in printed
    assert "failed episode rec_episode_002" in printed and "only 3 aligned camera frames" in printed
    assert "rec_episode_000" not in printed                                    # ok episodes are only counted


def test_replay_help_shows_the_default_topics(capsys):
    with pytest.raises(SystemExit):
        main(["replay", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for topic in ("/joint_states", "/camera/image_raw", "/camera/camera_info"):
        assert f"(default: {topic})" in text
    assert "rosbags-convert" in text
