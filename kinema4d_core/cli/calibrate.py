"""``kinema4d calibrate``: camera extrinsics (eye-to-hand), reconstructed-mesh alignment, board image.

- ``handeye``: views_dir/view_XXX.png + joints.npz -> calibration YAML (camera pose in the base frame).
- ``align-mesh``: reconstructed mesh + correspondences -> twin folder (twin.yaml + pieces/<link>.ply).
- ``board``: printable PNG of a board YAML.

Both solvers print their error figures and exit 1 without writing anything when the result is
worse than the thresholds given as options.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from kinema4d_core.errors import ConfigError, InputError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("calibrate", help="camera extrinsics (hand-eye), mesh-to-robot alignment, board image",
                              description="Calibration tools; see docs/calibration.md.")
    sub = p.add_subparsers(dest="calibrate_command", metavar="<step>", required=True)

    h = sub.add_parser("handeye", help="eye-to-hand: fixed camera, ChArUco board on the flange",
                       description="Detect the board in DIR/view_XXX.png, take the flange pose of each view from "
                                   "DIR/joints.npz (joint_names (N,), positions (V,N), row i = i-th image in name "
                                   "order), solve AX = XB, refine the reprojection error and write --out.")
    h.add_argument("--robot", required=True, help="robot name (see urdf/) or robot config yaml")
    h.add_argument("--board", required=True, type=Path, help="board YAML (calibration/charuco_board.yaml)")
    h.add_argument("--views", required=True, type=Path, help="folder with view_XXX.png and joints.npz")
    h.add_argument("--out", required=True, type=Path, help="calibration YAML to write (previous kept as .bak)")
    h.add_argument("--camera-info", type=Path, default=None,
                   help="intrinsics: a ROS camera_info YAML or a calibration YAML (default: the existing --out)")
    h.add_argument("--ee-frame", default=None, help="frame the board is fixed to (default: the robot's ee_frame)")
    h.add_argument("--child-frame", default=None, help="camera optical frame name (default: from the intrinsics file)")
    h.add_argument("--min-corners", type=int, default=6, help="reject views with fewer corners (default 6)")
    h.add_argument("--min-views", type=int, default=4, help="usable views needed (default 4)")
    h.add_argument("--max-rms-px", type=float, default=1.0, help="max reprojection rms in px (default 1.0)")
    h.add_argument("--max-translation-std-mm", type=float, default=5.0,
                   help="max jackknife std of the camera position in mm (default 5)")
    h.add_argument("--max-rotation-std-deg", type=float, default=0.5,
                   help="max jackknife std of the camera rotation in degrees (default 0.5)")
    h.set_defaults(func=run_handeye)

    a = sub.add_parser("align-mesh", help="align a reconstructed robot mesh to the URDF and cut it per link",
                       description="Umeyama + RANSAC on the correspondences, point-to-plane ICP (with scale) "
                                   "against the URDF surface at q_ref, then one piece per link. Writes a twin "
                                   "folder (twin.yaml, pieces/<link>.ply, alignment.yaml) for kinema4d_core.twin.")
    a.add_argument("--robot", required=True, help="robot name (see urdf/) or robot config yaml")
    a.add_argument("--mesh", required=True, type=Path, help="reconstructed mesh (.ply/.obj/.stl/.glb)")
    a.add_argument("--correspondences", required=True, type=Path, help="correspondences .npz (docs/calibration.md)")
    a.add_argument("--out", required=True, type=Path, help="twin folder to write")
    a.add_argument("--ransac-threshold", type=float, default=0.03, help="RANSAC inlier distance, metres (default 0.03)")
    a.add_argument("--min-inliers", type=int, default=6, help="min RANSAC inliers (default 6)")
    a.add_argument("--max-icp-rms-mm", type=float, default=5.0, help="max ICP point-to-plane rms, mm (default 5)")
    a.add_argument("--min-overlap", type=float, default=0.8,
                   help="min fraction of mesh points that end within the ICP gate (default 0.8)")
    a.add_argument("--no-icp", action="store_true", help="keep the RANSAC similarity (no ICP)")
    a.set_defaults(func=run_align_mesh)

    b = sub.add_parser("board", help="write a printable PNG of a board YAML")
    b.add_argument("--board", required=True, type=Path, help="board YAML")
    b.add_argument("--out", required=True, type=Path, help="PNG to write")
    b.add_argument("--pixels-per-square", type=int, default=200, help="resolution (default 200)")
    b.set_defaults(func=run_board)


# ------------------------------------------------------------------------------------- handeye
def _intrinsics(path: Path, base_frame: str, child_frame: str | None):
    """CameraModel (identity pose) from a camera_info YAML or a calibration YAML."""
    import yaml

    from kinema4d_core.camera import calibration_from_dict

    if not path.is_file():
        raise ConfigError(f"{path} does not exist", field="--camera-info",
                          fix="pass a camera_info / calibration YAML, or an existing --out to take intrinsics from")
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML ({exc})", field=str(path), fix="fix the YAML syntax") from None
    if not isinstance(doc, dict):
        raise ConfigError("is not a YAML mapping", field=str(path), fix="give a ROS camera_info YAML")
    doc = dict(doc)
    ext = doc.get("extrinsics") if isinstance(doc.get("extrinsics"), dict) else {}
    doc["extrinsics"] = {"parent_frame": base_frame,
                         "child_frame": child_frame or ext.get("child_frame", "camera_optical_frame"),
                         "translation": [0.0, 0.0, 0.0], "rotation": [0.0, 0.0, 0.0, 1.0]}
    return calibration_from_dict(doc, path)


def _read_views(folder: Path, robot) -> tuple[list[Path], np.ndarray]:
    if not folder.is_dir():
        raise InputError(f"{folder} is not a folder", field="--views", fix="give the folder holding view_XXX.png")
    images = sorted(folder.glob("view_*.png"))
    joints = folder / "joints.npz"
    if not images:
        raise InputError(f"no view_*.png in {folder}", field="--views", fix="save the camera images as view_000.png ...")
    if not joints.is_file():
        raise InputError(f"{joints} is missing", field="--views",
                         fix="save joint_names (N,) and positions (V,N) with numpy.savez as joints.npz")
    try:
        with np.load(joints, allow_pickle=False) as data:
            missing = [key for key in ("joint_names", "positions") if key not in data]
            if missing:
                raise InputError(f"missing array '{missing[0]}'", field=f"joints.npz:{missing[0]}",
                                 fix="save joint_names (N,) and positions (V,N)")
            names = [str(n) for n in data["joint_names"]]
            pos = np.asarray(data["positions"], np.float64)
    except InputError:
        raise
    except (OSError, ValueError, TypeError) as exc:   # not an .npz, pickled objects, non-numeric positions
        raise InputError(f"cannot read {joints} ({exc})", field="joints.npz",
                         fix="save joint_names (N,) and positions (V,N) with numpy.savez (plain arrays)") from None
    if pos.ndim != 2 or pos.shape != (len(images), len(names)):
        raise InputError(f"positions has shape {pos.shape}, expected ({len(images)} images, {len(names)} joints)",
                         field="joints.npz:positions", fix="one row of joint positions per view image")
    Q = np.stack([robot.joint_vector(names, row) for row in pos])
    return images, robot.check_positions(Q, field="joints.npz:positions")


def run_handeye(args: argparse.Namespace) -> int:
    import imageio.v2 as imageio

    from kinema4d_core.calibration.board import detect_charuco, load_board
    from kinema4d_core.calibration.handeye import HandEyeView, solve_eye_to_hand
    from kinema4d_core.camera import save_calibration
    from kinema4d_core.robot import load_robot

    start = time.perf_counter()
    robot = load_robot(args.robot)
    spec = load_board(args.board)
    intr_path = args.camera_info or args.out
    camera = _intrinsics(intr_path, robot.config.base_frame, args.child_frame)
    images, Q = _read_views(args.views, robot)
    ee_frame = args.ee_frame or robot.config.ee_frame
    views = []
    for path, q in zip(images, Q):
        image = np.asarray(imageio.imread(path))
        if image.shape[:2] != (camera.height, camera.width):
            raise InputError(f"{path.name} is {image.shape[1]}x{image.shape[0]}, the intrinsics are for "
                             f"{camera.width}x{camera.height}", field="--views", fix="use images of the calibrated camera")
        if image.dtype != np.uint8:
            raise InputError(f"{path.name} is {image.dtype}", field="--views", fix="save 8-bit images")
        views.append(HandEyeView(path.stem, robot.frame_pose(q, ee_frame), detect_charuco(image, spec)))
    result = solve_eye_to_hand(views, spec, camera, min_corners=args.min_corners, min_views=args.min_views)
    print(result.summary())
    problems = []
    if not result.rms_px <= args.max_rms_px:
        problems.append(f"reprojection rms {result.rms_px:.3f} px > --max-rms-px {args.max_rms_px}")
    if not result.translation_std_m * 1000 <= args.max_translation_std_mm:
        problems.append(f"translation spread {result.translation_std_m * 1000:.2f} mm > "
                        f"--max-translation-std-mm {args.max_translation_std_mm}")
    if not result.rotation_std_deg <= args.max_rotation_std_deg:
        problems.append(f"rotation spread {result.rotation_std_deg:.3f} deg > "
                        f"--max-rotation-std-deg {args.max_rotation_std_deg}")
    if problems:
        print("kinema4d calibrate handeye: result unusable, nothing written: " + "; ".join(problems))
        return 1
    save_calibration(camera.with_pose(result.T_base_camera), args.out)
    print(f"kinema4d calibrate handeye: wrote {args.out} ({time.perf_counter() - start:.1f} s)")
    return 0


# ---------------------------------------------------------------------------------- align-mesh
def _load_mesh(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    from kinema4d_core.robot import load_mesh_file

    if not path.is_file():
        raise InputError(f"{path} does not exist", field="--mesh", fix="pass the reconstructed mesh file")
    try:
        V, F, colors = load_mesh_file(path)
    except Exception as exc:  # trimesh raises many types for unreadable files
        raise InputError(f"cannot read {path} ({type(exc).__name__}: {exc})", field="--mesh",
                         fix="pass a readable triangle mesh (.ply/.obj/.stl/.glb)") from exc
    if len(F) == 0:
        raise InputError(f"{path} holds no triangles", field="--mesh",
                         fix="pass the reconstructed surface as a triangle mesh (not a point cloud)")
    return V, F, colors


def run_align_mesh(args: argparse.Namespace) -> int:
    import trimesh
    import yaml

    from kinema4d_core.calibration.align import align_mesh, load_correspondences, segment_mesh
    from kinema4d_core.io import StagedOutput
    from kinema4d_core.robot import load_robot

    start = time.perf_counter()
    robot = load_robot(args.robot)
    V, F, colors = _load_mesh(args.mesh)
    corr = load_correspondences(args.correspondences, robot)
    if args.out.exists() and not args.out.is_dir():
        raise InputError(f"{args.out} exists and is not a folder", field="--out", fix="choose a folder path")
    al = align_mesh(V, corr, robot, ransac_threshold=args.ransac_threshold, icp=not args.no_icp)
    fit = al.ransac
    print(f"RANSAC: {int(fit.inliers.sum())}/{len(fit.inliers)} correspondences within {args.ransac_threshold} m, "
          f"inlier rms {fit.inlier_rms * 1000:.2f} mm")
    if al.icp is not None:
        print(f"ICP: {al.icp.iterations} iterations (converged {al.icp.converged}), point-to-plane rms "
              f"{al.icp.rms * 1000:.3f} mm, overlap {al.icp.inlier_fraction:.3f}")
    print(f"scale {al.scale:.6f} recon units per metre")
    problems = []
    if fit.inliers.sum() < args.min_inliers:
        problems.append(f"{int(fit.inliers.sum())} RANSAC inliers < --min-inliers {args.min_inliers}")
    if al.icp is not None and not al.icp.rms * 1000 <= args.max_icp_rms_mm:
        problems.append(f"ICP rms {al.icp.rms * 1000:.3f} mm > --max-icp-rms-mm {args.max_icp_rms_mm}")
    if al.icp is not None and al.icp.inlier_fraction < args.min_overlap:
        problems.append(f"overlap {al.icp.inlier_fraction:.3f} < --min-overlap {args.min_overlap}")
    if problems:
        print("kinema4d calibrate align-mesh: result unusable, nothing written: " + "; ".join(problems))
        return 1
    face_colors = colors if colors is not None and colors.shape == (len(F), 3) else None
    pieces, _owner = segment_mesh(V, F, al.T_base_recon, robot, corr.q_ref, face_colors=face_colors)
    twin = {"T_recon_base": [[float(v) for v in row] for row in al.T_recon_base],
            "q_ref": [float(v) for v in corr.q_ref], "joint_names": list(robot.joint_names)}
    figures = {"robot": robot.config.name, "mesh": str(args.mesh), "scale": al.scale,
               "ransac_inliers": int(fit.inliers.sum()), "ransac_correspondences": int(len(fit.inliers)),
               "ransac_inlier_rms_m": fit.inlier_rms,
               "icp_rms_m": None if al.icp is None else al.icp.rms,
               "icp_overlap": None if al.icp is None else al.icp.inlier_fraction,
               "pieces": {p.link: int(len(p.faces)) for p in pieces}}
    with StagedOutput(args.out) as st:
        st.path("twin.yaml").write_text(yaml.safe_dump(twin, sort_keys=False))
        st.path("alignment.yaml").write_text(yaml.safe_dump(figures, sort_keys=False))
        for p in pieces:
            mesh = trimesh.Trimesh(p.vertices, p.faces, process=False)
            if p.colors is not None:
                mesh.visual.face_colors = np.column_stack([p.colors, np.full(len(p.colors), 255, np.uint8)])
            mesh.export(st.path(f"pieces/{p.link}.ply"))
    print(f"kinema4d calibrate align-mesh: {len(pieces)} link pieces -> {args.out} "
          f"({time.perf_counter() - start:.1f} s)")
    return 0


# --------------------------------------------------------------------------------------- board
def run_board(args: argparse.Namespace) -> int:
    import cv2

    from kinema4d_core.calibration.board import board_image, load_board
    from kinema4d_core.io import atomic_path

    spec = load_board(args.board)
    image, _ = board_image(spec, args.pixels_per_square)
    if args.out.suffix.lower() != ".png":
        raise InputError(f"{args.out} is not a .png", field="--out", fix="write e.g. board.png")
    with atomic_path(args.out) as tmp:
        if not cv2.imwrite(str(tmp), image):
            raise InputError(f"cannot write {args.out}", field="--out", fix="choose a writable path")
    w, h = spec.size_m
    print(f"kinema4d calibrate board: {image.shape[1]}x{image.shape[0]} px -> {args.out}; print it so that one "
          f"square measures {spec.square_length * 1000:.1f} mm (board {w * 1000:.0f} x {h * 1000:.0f} mm), "
          "then measure and correct the YAML")
    return 0
