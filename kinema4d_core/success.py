"""Task success on 4D output (ground truth or a simulated rollout): the same code for both.

Input: a (T,H,W,3) pointmap in the camera optical frame (metres), the camera pose
``T_base_camera`` (4,4) and the robot mask (T,H,W) rendered at each frame's own stamp.

Object pixels of frame t are the pixels
- with a finite, non-zero point,
- outside frame t's robot mask dilated by ``robot_dilation_px`` (mask edges, calibration error
  of a pixel or two, the gripper's shadow in depth),
- outside frame 0's robot mask, dilated the same way (the "ghost": a generator that copies the
  first frame, like the static-scene baseline, keeps the robot's start pose in every frame),
- whose base-frame point lies above ``table_height + table_margin`` and inside ``workspace``,
and of those only the largest 8-connected component, and only when it has at least
``min_object_pixels`` pixels (robot slivers and noise are smaller). Both pixel parameters
are given at ``reference_size`` (the sim camera's 480x720) and scale with the image size. Without an object in a
frame, that frame says nothing (NaN rise).

Tasks: ``lift`` (the object's median height rises more than ``lift_height`` above its value in
the first frame where it is seen), ``place`` (the object's median (x, y) in the last frame lies
in ``target_region``), ``lift+place`` (both).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from kinema4d_core.errors import InputError

MIN_OBJECT_PIXELS = 20      # smallest object component (pixels at REFERENCE_SIZE) that counts as the object
ROBOT_DILATION_PX = 3       # robot mask grown by this many pixels (at REFERENCE_SIZE) before excluding it
REFERENCE_SIZE = (480, 720)  # (H, W) the pixel parameters are given at: the sim camera's size


@dataclass(frozen=True)
class SuccessCriteria:
    """Task success on 4D output, base frame, metres.

    task: "lift" (the object's visible points rise, median z, more than ``lift_height`` above
          their height in the first frame where the object is seen; a camera sees only part of
          a resting object, so its own start is the reference, not the table)
          or "place" (object centroid inside ``target_region`` (xmin, xmax, ymin, ymax) at the end)
          or "lift+place" (both: the sim world's pick-and-place judgement).
    min_object_pixels: the object's connected component must have at least this many pixels
          for a frame to count.
    robot_dilation_px: the robot masks (frame t's and the first frame's) are grown by this
          many pixels before their pixels are excluded.
    reference_size: (H, W) at which the two pixel parameters hold; on an image of another size
          they scale with it (dilation with the side, at least 1 px; minimum size with the area,
          at least min(4, min_object_pixels)), so the same criteria mean the same at every
          size. None: use them as given at every size.
    """

    task: str = "lift"
    table_height: float = 0.0
    lift_height: float = 0.05
    target_region: tuple[float, float, float, float] | None = None
    table_margin: float = 0.01
    workspace: tuple[float, float, float, float] | None = None
    min_object_pixels: int = MIN_OBJECT_PIXELS
    robot_dilation_px: int = ROBOT_DILATION_PX
    reference_size: tuple[int, int] | None = REFERENCE_SIZE

    def at_size(self, height: int, width: int) -> tuple[int, int]:
        """(dilation px, minimum object pixels) for an image of ``height`` x ``width``."""
        if self.reference_size is None:
            return self.robot_dilation_px, self.min_object_pixels
        s2 = (height * width) / float(self.reference_size[0] * self.reference_size[1])
        dil = max(1, int(round(self.robot_dilation_px * np.sqrt(s2)))) if self.robot_dilation_px > 0 else 0
        return dil, max(min(4, self.min_object_pixels), int(round(self.min_object_pixels * s2)))

    def __post_init__(self) -> None:
        if self.task not in ("lift", "place", "lift+place"):
            raise InputError(f"unknown task {self.task!r}", field="task", fix="use lift, place or lift+place")
        if self.task in ("place", "lift+place") and self.target_region is None:
            raise InputError("place needs a target region", field="target_region",
                             fix="pass --region XMIN XMAX YMIN YMAX (metres, base frame)")
        if self.min_object_pixels < 1 or self.robot_dilation_px < 0:
            raise InputError(f"min_object_pixels {self.min_object_pixels}, robot_dilation_px "
                             f"{self.robot_dilation_px}", field="success criteria",
                             fix="use min_object_pixels >= 1 and robot_dilation_px >= 0")


@dataclass(frozen=True)
class SuccessResult:
    """Outcome and the evidence: per-frame object rise (median z of the object points minus that
    of the first frame with an object; m, NaN where none), the object's pixel count per frame
    (0 where none counted), and the last frame's object centroid (x, y) in the base frame.
    object_points: per frame, the (N,3) object points in the base frame (N = 0 where none), as
    segmented for the decision (``object_metrics`` compares two such sequences)."""

    success: bool
    lift: np.ndarray
    final_xy: tuple[float, float] | None
    frames_with_object: int
    object_pixels: np.ndarray
    dilation_px: int = 0
    min_object_pixels: int = 0
    object_points: tuple[np.ndarray, ...] = field(default=(), repr=False, compare=False)

    def summary(self) -> dict:
        """JSON-ready evidence: success, max rise (m), frames with an object, object pixels per frame."""
        return {"success": self.success,
                "max_lift_m": float(np.nanmax(self.lift)) if self.frames_with_object else None,
                "frames_with_object": self.frames_with_object,
                "object_pixels": [int(v) for v in self.object_pixels],
                "robot_dilation_px": self.dilation_px, "min_object_pixels": self.min_object_pixels,
                "final_xy": None if self.final_xy is None else list(self.final_xy)}


def _grown(mask: np.ndarray, px: int) -> np.ndarray:
    from scipy.ndimage import binary_dilation

    m = np.asarray(mask, bool)
    return binary_dilation(m, iterations=px) if px > 0 and m.any() else m


def object_pixels(pointmap: np.ndarray, robot_mask: np.ndarray | None, T_base_camera: np.ndarray,
                  criteria: SuccessCriteria, ghost_mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The object of one (H,W,3) camera-frame pointmap (metres).

    robot_mask: (H,W) this frame's robot; ghost_mask: (H,W) the first frame's robot (both
    dilated by ``criteria.robot_dilation_px`` here, scaled to the image size by
    ``criteria.at_size``). Returns ((H,W) bool object pixels, (N,3) their points in the base
    frame); both empty when the largest candidate component has fewer than the minimum pixels.
    """
    from scipy.ndimage import label

    pm = np.asarray(pointmap, np.float64)
    if pm.ndim != 3 or pm.shape[-1] != 3:
        raise InputError(f"expected an (H,W,3) pointmap, got {pm.shape}", field="pointmap")
    h, w = pm.shape[:2]
    dilation, min_pixels = criteria.at_size(h, w)
    keep = np.all(np.isfinite(pm), axis=-1) & (np.abs(pm).sum(axis=-1) > 0)
    for m in (robot_mask, ghost_mask):
        if m is not None:
            m = np.asarray(m, bool)
            if m.shape != (h, w):
                raise InputError(f"robot mask {m.shape} does not match the pointmap {(h, w)}", field="robot_mask",
                                 fix="resize the mask (nearest) to the pointmap's size")
            keep &= ~_grown(m, dilation)
    T = np.asarray(T_base_camera, np.float64)
    base = np.zeros_like(pm)
    base[keep] = pm[keep] @ T[:3, :3].T + T[:3, 3]
    keep &= base[..., 2] > criteria.table_height + criteria.table_margin
    if criteria.workspace is not None:
        x0, x1, y0, y1 = criteria.workspace
        keep &= (base[..., 0] >= x0) & (base[..., 0] <= x1) & (base[..., 1] >= y0) & (base[..., 1] <= y1)
    empty = (np.zeros((h, w), bool), np.zeros((0, 3)))
    if not keep.any():
        return empty
    labels, n = label(keep, structure=np.ones((3, 3), bool))
    sizes = np.bincount(labels.reshape(-1), minlength=n + 1)
    sizes[0] = 0
    biggest = int(np.argmax(sizes))
    if sizes[biggest] < min_pixels:
        return empty
    obj = labels == biggest
    return obj, base[obj]


def segment_object_points(pointmap: np.ndarray, robot_mask: np.ndarray | None, T_base_camera: np.ndarray,
                          criteria: SuccessCriteria, ghost_mask: np.ndarray | None = None) -> np.ndarray:
    """Object points (N,3) in the base frame of one (H,W,3) camera-frame pointmap (see ``object_pixels``)."""
    return object_pixels(pointmap, robot_mask, T_base_camera, criteria, ghost_mask)[1]


def detect_success(pointmap: np.ndarray, robot_mask: np.ndarray | None, T_base_camera: np.ndarray,
                   criteria: SuccessCriteria) -> SuccessResult:
    """Success of a (T,H,W,3) camera-frame pointmap sequence (metres) under ``criteria``.

    robot_mask: (T,H,W) the robot at each frame's own stamp (None: no robot excluded); frame 0's
    mask is also excluded from every frame (the ghost of a first-frame copy).
    """
    pm = np.asarray(pointmap)
    if pm.ndim != 4 or pm.shape[-1] != 3:
        raise InputError(f"expected (T,H,W,3) pointmaps, got {pm.shape}", field="pointmap")
    masks = None if robot_mask is None else np.asarray(robot_mask, bool)
    if masks is not None and masks.shape != pm.shape[:3]:
        raise InputError(f"robot mask {masks.shape} does not match the pointmaps {pm.shape[:3]}", field="robot_mask",
                         fix="give one mask per frame at the pointmap's size")
    n = pm.shape[0]
    lift = np.full(n, np.nan)
    pixels = np.zeros(n, int)
    final_xy = None
    ghost = None if masks is None else masks[0]
    points = []
    for t in range(n):
        mask_t = None if masks is None else masks[t]
        obj_px, obj = object_pixels(pm[t], mask_t, T_base_camera, criteria, None if t == 0 else ghost)
        pixels[t] = int(obj_px.sum())
        points.append(obj)
        if len(obj):
            lift[t] = float(np.median(obj[:, 2]))
            if t == n - 1:
                final_xy = (float(np.median(obj[:, 0])), float(np.median(obj[:, 1])))
    seen = int(np.sum(np.isfinite(lift)))
    if seen:
        lift = lift - lift[np.flatnonzero(np.isfinite(lift))[0]]
    lifted = bool(seen and np.nanmax(lift) > criteria.lift_height)
    placed = False
    if criteria.target_region is not None:
        x0, x1, y0, y1 = criteria.target_region
        placed = final_xy is not None and x0 <= final_xy[0] <= x1 and y0 <= final_xy[1] <= y1
    success = {"lift": lifted, "place": placed, "lift+place": lifted and placed}[criteria.task]
    dilation, min_pixels = criteria.at_size(*pm.shape[1:3])
    return SuccessResult(success=bool(success), lift=lift, final_xy=final_xy, frames_with_object=seen,
                         object_pixels=pixels, dilation_px=dilation, min_object_pixels=min_pixels,
                         object_points=tuple(points))


def object_metrics(gt_points: Sequence[np.ndarray], pred_points: Sequence[np.ndarray]) -> dict[str, Any]:
    """How well a prediction reproduces the object, from the per-frame object points (N,3) in
    the base frame (metres) segmented on ground truth and on the prediction by the same code
    (``SuccessResult.object_points`` of ``detect_success``; N = 0 where no object was found).

    object_chamfer_m: mean over the frames where both have object points of the symmetric
      Chamfer distance 0.5 (mean_p d(p, G) + mean_g d(g, P)) between the two point sets
      (``metrics.point_metrics``' CD-L1, all points, no subsampling).
    final_object_error_m: distance between the median object positions (per axis) of GT and
      prediction in the last frame where both see the object (``final_object_frame``; normally
      the last frame, ``final_object_is_last_frame`` says whether it is).
    Where no frame has the object on both sides, both are None and ``reason`` says which side
    lacks it. Also returned: the number of frames compared and each side's frames with an object.
    """
    from kinema4d_core.metrics import point_metrics

    if len(gt_points) != len(pred_points):
        raise InputError(f"{len(gt_points)} GT frames vs {len(pred_points)} predicted frames",
                         field="object points", fix="segment the same frames on both sides")
    seen_gt = [len(g) > 0 for g in gt_points]
    seen_pred = [len(p) > 0 for p in pred_points]
    both = [t for t in range(len(gt_points)) if seen_gt[t] and seen_pred[t]]
    out: dict[str, Any] = {"object_chamfer_m": None, "final_object_error_m": None, "final_object_frame": None,
                           "final_object_is_last_frame": None, "frames_compared": len(both),
                           "gt_frames_with_object": int(sum(seen_gt)),
                           "pred_frames_with_object": int(sum(seen_pred))}
    if not both:
        if not any(seen_gt) and not any(seen_pred):
            out["reason"] = "no object found in the ground truth nor in the prediction"
        elif not any(seen_gt):
            out["reason"] = "no object found in the ground truth"
        elif not any(seen_pred):
            out["reason"] = "no object found in the prediction"
        else:
            out["reason"] = "the ground truth and the prediction never show the object in the same frame"
        return out
    chamfer = [point_metrics(pred_points[t], gt_points[t], max_points=None).cd_l1 for t in both]
    last = both[-1]
    centre = lambda pts: np.median(np.asarray(pts, float), axis=0)  # noqa: E731
    delta = centre(pred_points[last]) - centre(gt_points[last])
    out.update(object_chamfer_m=float(np.mean(chamfer)), final_object_error_m=float(np.linalg.norm(delta)),
               final_object_frame=int(last), final_object_is_last_frame=last == len(gt_points) - 1)
    return out
