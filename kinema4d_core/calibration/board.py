"""ChArUco calibration board: YAML definition, printable image and corner detection.

Board frame (OpenCV's): origin at the outer top-left corner of the board, x along the rows of
squares (``squares_x`` direction), y along ``squares_y``, z into the board. Corner ``id`` k is
the k-th inner chessboard corner (row-major, ``(squares_x-1)*(squares_y-1)`` in all); its
position in the board frame is ``board_points(spec)[k]`` in metres.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import cv2
import numpy as np

from kinema4d_core.errors import CalibrationError, ConfigError, InputError
from kinema4d_core.io import read_yaml


@dataclass(frozen=True)
class BoardSpec:
    """Geometry of a printed ChArUco board. Lengths in metres."""

    squares_x: int
    squares_y: int
    square_length: float
    marker_length: float
    dictionary: str = "DICT_5X5_100"
    legacy_pattern: bool = False

    @property
    def n_corners(self) -> int:
        """Number of inner chessboard corners (the ids a detection can report)."""
        return (self.squares_x - 1) * (self.squares_y - 1)

    @property
    def size_m(self) -> tuple[float, float]:
        """(width, height) of the board in metres."""
        return self.squares_x * self.square_length, self.squares_y * self.square_length


@dataclass(frozen=True)
class CharucoDetection:
    """Detected inner corners of one image.

    ids: (n,) int corner ids, sorted; corners: (n, 2) float64 pixel positions (OpenCV centres);
    n_markers: ArUco markers found (0 means the board or its dictionary was not seen).
    """

    ids: np.ndarray
    corners: np.ndarray
    n_markers: int

    @property
    def n_corners(self) -> int:
        return int(self.ids.shape[0])


def _positive(data: dict, key: str, kind: type, source: str) -> float | int:
    if key not in data:
        raise ConfigError(f"missing key '{key}'", field=f"{source}:{key}",
                          fix="see calibration/charuco_board.yaml for a complete board definition")
    value = data[key]
    try:
        if isinstance(value, bool):
            raise TypeError
        out = kind(value)
        if kind is int and out != value:
            raise TypeError
    except (TypeError, ValueError):
        raise ConfigError(f"expected a {kind.__name__}, got {value!r}", field=f"{source}:{key}",
                          fix=f"write a positive {kind.__name__}") from None
    if not out > 0:
        raise ConfigError(f"must be > 0, got {value!r}", field=f"{source}:{key}", fix="write a positive value")
    return out


def board_from_dict(data: dict, source: str = "board") -> BoardSpec:
    """Validate a board mapping (the YAML contents) and build a BoardSpec."""
    if not isinstance(data, dict):
        raise ConfigError("board definition must be a mapping", field=source,
                          fix="see calibration/charuco_board.yaml")
    kind = data.get("type", "charuco")
    if kind != "charuco":
        raise ConfigError(f"unsupported board type {kind!r}", field=f"{source}:type", fix="use type: charuco")
    sx = _positive(data, "squares_x", int, source)
    sy = _positive(data, "squares_y", int, source)
    if sx < 2 or sy < 2:
        raise ConfigError(f"a ChArUco board needs at least 2x2 squares, got {sx}x{sy}",
                          field=f"{source}:squares_x", fix="count the squares of the printed board")
    sq = _positive(data, "square_length", float, source)
    mk = _positive(data, "marker_length", float, source)
    if mk >= sq:
        raise ConfigError(f"marker_length {mk} must be smaller than square_length {sq}",
                          field=f"{source}:marker_length", fix="measure both on the printed board (metres)")
    dictionary = str(data.get("dictionary", "DICT_5X5_100"))
    if not dictionary.startswith("DICT_") or not hasattr(cv2.aruco, dictionary):
        raise ConfigError(f"unknown ArUco dictionary {dictionary!r}", field=f"{source}:dictionary",
                          fix="use an OpenCV name such as DICT_5X5_100 or DICT_6X6_250")
    spec = BoardSpec(sx, sy, sq, mk, dictionary, bool(data.get("legacy_pattern", False)))
    n_markers = (sx * sy) // 2
    dict_size = cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, dictionary)).bytesList.shape[0]
    if n_markers > dict_size:
        raise ConfigError(f"the board needs {n_markers} markers but {dictionary} has only {dict_size}",
                          field=f"{source}:dictionary", fix="use a larger dictionary or a smaller board")
    return spec


def load_board(path: str | os.PathLike) -> BoardSpec:
    """Read a board YAML (see calibration/charuco_board.yaml)."""
    data = read_yaml(path, field="board", what="board file",
                     fix="pass a board YAML such as calibration/charuco_board.yaml")
    return board_from_dict(data, source=str(path))


def cv_board(spec: BoardSpec) -> "cv2.aruco.CharucoBoard":
    """The OpenCV CharucoBoard for ``spec``."""
    dictionary = cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, spec.dictionary))
    board = cv2.aruco.CharucoBoard((spec.squares_x, spec.squares_y), spec.square_length,
                                   spec.marker_length, dictionary)
    board.setLegacyPattern(spec.legacy_pattern)
    return board


def board_points(spec: BoardSpec) -> np.ndarray:
    """(n_corners, 3) float64 inner-corner positions in the board frame, metres, indexed by id."""
    s = spec.square_length
    ys, xs = np.mgrid[1:spec.squares_y, 1:spec.squares_x]
    pts = np.stack([xs.ravel() * s, ys.ravel() * s, np.zeros(xs.size)], axis=1)
    return pts.astype(np.float64)


def board_image(spec: BoardSpec, pixels_per_square: int = 100, margin_px: int | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
    """Render the board for printing or for synthetic views.

    Returns ``(image, H_pixel_board)``: a (h, w) uint8 grey image with a white margin, and the
    3x3 homography mapping board-plane metres (x, y, 1) to pixel coordinates (OpenCV centres).
    """
    if pixels_per_square < 20:
        raise InputError(f"pixels_per_square={pixels_per_square} is too small for the markers to be readable",
                         field="pixels_per_square", fix="use >= 20 (100 for printing)")
    margin = pixels_per_square // 2 if margin_px is None else int(margin_px)
    w = spec.squares_x * pixels_per_square + 2 * margin
    h = spec.squares_y * pixels_per_square + 2 * margin
    image = cv_board(spec).generateImage((w, h), marginSize=margin, borderBits=1)
    ppm = pixels_per_square / spec.square_length
    H = np.array([[ppm, 0.0, margin - 0.5], [0.0, ppm, margin - 0.5], [0.0, 0.0, 1.0]])
    return image, H


def detect_charuco(image: np.ndarray, spec: BoardSpec) -> CharucoDetection:
    """Detect the board's inner corners in an RGB or grey uint8 image (sub-pixel refined)."""
    img = np.asarray(image)
    if img.dtype != np.uint8 or img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] not in (1, 3, 4)):
        raise InputError(f"expected an (H,W) or (H,W,3) uint8 image, got {img.shape} {img.dtype}",
                         field="image", fix="pass the camera image as uint8")
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY) if img.shape[2] == 3 else (
            cv2.cvtColor(img, cv2.COLOR_RGBA2GRAY) if img.shape[2] == 4 else img[..., 0])
    detector = cv2.aruco.CharucoDetector(cv_board(spec))
    ch_corners, ch_ids, _mk_corners, mk_ids = detector.detectBoard(img)
    n_markers = 0 if mk_ids is None else int(len(mk_ids))
    if ch_ids is None or len(ch_ids) == 0:
        return CharucoDetection(np.zeros(0, np.int64), np.zeros((0, 2)), n_markers)
    ids = np.asarray(ch_ids, dtype=np.int64).reshape(-1)
    corners = np.asarray(ch_corners, dtype=np.float64).reshape(-1, 2)
    order = np.argsort(ids)
    return CharucoDetection(ids[order], corners[order], n_markers)


def rejection_reason(detection: CharucoDetection, spec: BoardSpec, min_corners: int) -> str | None:
    """Why a view cannot be used (``None`` if it can): board not seen, too few or collinear corners."""
    if detection.n_markers == 0 and detection.n_corners == 0:
        return ("board not found: no ArUco marker of dictionary "
                f"{spec.dictionary} detected (wrong dictionary in the board YAML, board out of view or blurred)")
    if detection.n_corners < min_corners:
        return (f"only {detection.n_corners} ChArUco corners detected (< min_corners={min_corners}) from "
                f"{detection.n_markers} markers; check squares_x/squares_y/dictionary of the board YAML "
                "or move the board closer")
    if np.any(detection.ids >= spec.n_corners) or np.any(detection.ids < 0):
        return f"corner ids out of range for a {spec.squares_x}x{spec.squares_y} board"
    pts = board_points(spec)[detection.ids, :2]
    centred = pts - pts.mean(axis=0)
    sv = np.linalg.svd(centred, compute_uv=False)
    if sv.shape[0] < 2 or sv[1] < 1e-3 * max(sv[0], 1e-12):
        return "detected corners are collinear (pose is ambiguous)"
    return None


def require_detection(detection: CharucoDetection, spec: BoardSpec, min_corners: int, field: str) -> None:
    """Raise CalibrationError naming ``field`` if the detection is not usable."""
    reason = rejection_reason(detection, spec, min_corners)
    if reason is not None:
        raise CalibrationError(reason, field=field,
                               fix="check the board YAML against the printed board and that the board is fully visible")
