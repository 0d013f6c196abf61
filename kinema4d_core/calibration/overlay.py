"""Verify a calibration by overlay: render the robot mask for the current joints into the camera
image and score it against a robot segmentation (IoU, mean boundary distance in pixels).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

from kinema4d_core.errors import InputError

if TYPE_CHECKING:
    from kinema4d_core.camera import CameraModel
    from kinema4d_core.robot import RobotModel


@dataclass(frozen=True)
class OverlayScore:
    """Agreement of the rendered robot mask with a reference segmentation.

    iou: intersection over union in [0, 1]; boundary_px: symmetric mean distance (pixels) between
    the two mask outlines (inf when one mask is empty).
    """

    iou: float
    boundary_px: float
    rendered_pixels: int
    reference_pixels: int

    def as_dict(self) -> dict:
        return {"iou": self.iou, "boundary_px": self.boundary_px,
                "rendered_pixels": self.rendered_pixels, "reference_pixels": self.reference_pixels}


def _mask(a: np.ndarray, field: str) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim != 2:
        raise InputError(f"expected an (H,W) mask, got shape {a.shape}", field=field,
                         fix="pass a single-channel mask (bool or 0/255)")
    return a.astype(bool)


def mask_iou(rendered: np.ndarray, reference: np.ndarray) -> float:
    """Intersection over union of two (H,W) masks (1.0 when both are empty)."""
    a, b = _mask(rendered, "rendered"), _mask(reference, "reference")
    if a.shape != b.shape:
        raise InputError(f"mask shapes differ: {a.shape} vs {b.shape}", field="reference",
                         fix="score masks of the same camera resolution")
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def _boundary(m: np.ndarray) -> np.ndarray:
    eroded = cv2.erode(m.astype(np.uint8), np.ones((3, 3), np.uint8), borderType=cv2.BORDER_CONSTANT, borderValue=0)
    return m & ~eroded.astype(bool)


def mean_boundary_distance(rendered: np.ndarray, reference: np.ndarray) -> float:
    """Symmetric mean distance (pixels) from each outline pixel of one mask to the other's outline."""
    a, b = _mask(rendered, "rendered"), _mask(reference, "reference")
    if a.shape != b.shape:
        raise InputError(f"mask shapes differ: {a.shape} vs {b.shape}", field="reference",
                         fix="score masks of the same camera resolution")
    ba, bb = _boundary(a), _boundary(b)
    if not ba.any() or not bb.any():
        return 0.0 if not ba.any() and not bb.any() else float("inf")

    def dist_to(boundary: np.ndarray) -> np.ndarray:
        return cv2.distanceTransform((~boundary).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)

    d_ab = dist_to(bb)[ba]
    d_ba = dist_to(ba)[bb]
    return float((d_ab.sum() + d_ba.sum()) / (d_ab.size + d_ba.size))


def score_masks(rendered: np.ndarray, reference: np.ndarray) -> OverlayScore:
    """IoU and mean boundary distance of a rendered robot mask against a reference segmentation."""
    a, b = _mask(rendered, "rendered"), _mask(reference, "reference")
    return OverlayScore(mask_iou(a, b), mean_boundary_distance(a, b), int(a.sum()), int(b.sum()))


def overlay_image(rgb: np.ndarray, rendered: np.ndarray, reference: np.ndarray | None = None, *,
                  alpha: float = 0.4, fill: tuple[int, int, int] = (0, 200, 255),
                  outline: tuple[int, int, int] = (0, 255, 0),
                  reference_outline: tuple[int, int, int] = (255, 0, 0)) -> np.ndarray:
    """(H,W,3) uint8 RGB: the camera image with the rendered mask tinted and outlined (green);
    the reference segmentation's outline, if given, is drawn in red."""
    img = np.asarray(rgb)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise InputError(f"expected an (H,W,3) uint8 image, got {img.shape} {img.dtype}", field="rgb",
                         fix="pass the camera image as rgb8")
    m = _mask(rendered, "rendered")
    if m.shape != img.shape[:2]:
        raise InputError(f"mask {m.shape} does not match image {img.shape[:2]}", field="rendered",
                         fix="render the mask with the camera model of this image")
    out = img.astype(np.float32)
    out[m] = (1 - alpha) * out[m] + alpha * np.asarray(fill, np.float32)
    out = out.astype(np.uint8)
    if reference is not None:
        r = _mask(reference, "reference")
        if r.shape != m.shape:
            raise InputError(f"reference {r.shape} does not match image {m.shape}", field="reference",
                             fix="pass the segmentation of this image")
        out[_boundary(r)] = reference_outline
    out[_boundary(m)] = outline
    return out


class MaskRenderer:
    """Renders the robot's silhouette in a camera for joint configurations (base-frame FK)."""

    def __init__(self, robot: "RobotModel", camera: "CameraModel"):
        from kinema4d_core.render import RobotRenderer

        self.robot = robot
        self.camera = camera
        self._renderer = RobotRenderer(camera, robot.meshes)

    def mask(self, q: np.ndarray) -> np.ndarray:
        """(H,W) bool robot mask at joint positions ``q`` (robot.joint_names order)."""
        return self._renderer.render_base(self.robot.mesh_poses(q)).mask


def render_robot_mask(robot: "RobotModel", camera: "CameraModel", q: np.ndarray) -> np.ndarray:
    """(H,W) bool mask of the robot at ``q`` seen by ``camera`` (one-off; keep a MaskRenderer for streams)."""
    return MaskRenderer(robot, camera).mask(q)
