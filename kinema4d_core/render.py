"""Exact z-buffer rasterizer for robot meshes: camera-frame pointmap, depth, mask, link id, RGB.

What "exact" means here: a pixel shows a triangle iff the ray through the pixel centre (pixel
centres at integer coordinates, OpenCV) hits the triangle, and the nearest hit wins, exactly like
a ray caster. Lens distortion is handled exactly: every pixel's undistorted normalized ray
(x/z, y/z) comes from ``CameraModel.pixel_rays`` (Newton inversion), and coverage is tested in
that undistorted plane, where triangles stay straight. Depth is perspective-correct (1/z is
affine in the undistorted plane), and ``pointmap = depth * (x/z, y/z, 1)`` for every pixel.

Candidate pixels per triangle (a conservative pixel box; the exact test above decides):
- fast path, all three vertices inside the field of view: box of the three distorted vertex
  pixels widened by l^2 * M2 / 8 (the most a distorted edge of normalized length l can bulge,
  M2 = bound of the distortion's second derivatives over the field of view, measured at
  construction); used while that margin is <= ``SAG_TOL_PX``. Without distortion M2 = 0.
- otherwise: the triangle's bounding rectangle in the undistorted plane, clipped to the field
  of view, with its boundary sampled densely enough that the bulge between samples stays below
  ``SAG_TOL_PX``, widened by that bound.
Both are conservative as long as the distortion is one-to-one over the field of view, which the
renderer checks at construction (ConfigError otherwise). Vertices that are bit-identical are
merged at construction (unindexed meshes repeat them per face), which changes nothing drawn.

Near plane: triangles are clipped against z = ``near`` (default 1 cm) in the camera frame
(Sutherland-Hodgman, a clipped triangle becomes one or two triangles); nothing nearer than
``near`` is drawn. Back faces are drawn (meshes need not be closed or consistently oriented).

Parallelism: one numba ``prange`` region per frame (``_draw``, fused clip + set-up + raster, no
per-triangle arrays in memory). Worker w draws the face chunks c with c % n_workers == w
(``FACE_CHUNK`` faces each, interleaved so the meshes spread over the workers) into its own
z-buffer, so no two threads ever write the same entry (race-free without atomics). Each pixel
keeps the lexicographic minimum of (z, slot) (slot = face index, F + face for the second triangle
of a near-plane clip); ``_resolve`` takes the same minimum over the workers' buffers, inside the
rectangle they touched, and resets them. The result is therefore the nearest hit with ties going
to the lowest slot, independent of the thread count and of scheduling. The vertex transform and
the resolve run serially: they are short, and every extra parallel region costs a fork/join that
turns into milliseconds of waiting when the machine is oversubscribed.

RGB: face colours on a black background; Lambert shading with a head light is optional and
OFF by default (``shade=False``), so robot pixels carry the mesh material colours unchanged.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Sequence

import numba
import numpy as np
from numba import njit, prange

from kinema4d_core.camera import CameraModel
from kinema4d_core.errors import ConfigError, InputError
from kinema4d_core.mesh import LinkMesh

FACE_CHUNK = 2048
"""Faces per interleaved chunk (the unit of work per thread)."""

SAG_TOL_PX = 0.05
"""Largest allowed deviation (pixels) of a sampled distorted edge from the true curved edge."""

_MAX_EDGE_SAMPLES = 4096


@dataclass(frozen=True, eq=False)
class RenderResult:
    """One rendered frame, camera optical frame, metres.

    pointmap: (H,W,3) float32 camera-frame XYZ of the visible robot surface (0 where none).
    depth: (H,W) float32 planar z (0 where none).  mask: (H,W) bool robot pixels.
    link_id: (H,W) int16 ``LinkMesh.link_index`` of the visible mesh (-1 where none).
    rgb: (H,W,3) uint8 face colours on black, or None when the renderer has ``with_rgb=False``.
    """

    pointmap: np.ndarray
    depth: np.ndarray
    mask: np.ndarray
    link_id: np.ndarray
    rgb: np.ndarray | None = None


# ----------------------------------------------------------------------------- numba kernels
@njit(cache=True, inline="always")
def _distort_px(x, y, d, fx, skew, cx, fy, cy):
    r2 = x * x + y * y
    r4 = r2 * r2
    r6 = r4 * r2
    radial = (1.0 + d[0] * r2 + d[1] * r4 + d[4] * r6) / (1.0 + d[5] * r2 + d[6] * r4 + d[7] * r6)
    xd = x * radial + 2.0 * d[2] * x * y + d[3] * (r2 + 2.0 * x * x)
    yd = y * radial + d[2] * (r2 + 2.0 * y * y) + 2.0 * d[3] * x * y
    return fx * xd + skew * yd + cx, fy * yd + cy


@njit(cache=True)
def _transform_vertices(verts, vmesh, T, d, intr, box, near, out, vn, vpx):
    """Camera-frame vertices ``out``; for vertices in front of the near plane ``vn`` = (x/z, y/z, 1/z);
    vpx = distorted pixel (u, v) of those whose ray lies inside the field-of-view box (NaN otherwise,
    meaning "not usable for the fast bounding box")."""
    for i in range(verts.shape[0]):
        m = vmesh[i]
        x, y, z = verts[i, 0], verts[i, 1], verts[i, 2]
        for r in range(3):
            out[i, r] = T[m, r, 0] * x + T[m, r, 1] * y + T[m, r, 2] * z + T[m, r, 3]
        vpx[i, 0] = np.nan
        vpx[i, 1] = np.nan
        if out[i, 2] > near:
            iz = 1.0 / out[i, 2]
            xn = out[i, 0] * iz
            yn = out[i, 1] * iz
            vn[i, 0] = xn
            vn[i, 1] = yn
            vn[i, 2] = iz
            if box[0] <= xn <= box[1] and box[2] <= yn <= box[3]:
                u, v = _distort_px(xn, yn, d, intr[0], intr[1], intr[2], intr[3], intr[4])
                vpx[i, 0] = u
                vpx[i, 1] = v


@njit(cache=True, inline="always")
def _raster_one(zb, sb, slot, ua, ub, va, vb, a0, b0, c0, a1, b1, c1, a2, b2, c2, az, bz, cz, rays, near):
    """Z-buffer one raster triangle into a worker's buffers; the lexicographic minimum of
    (z, slot) wins, so the result does not depend on which worker drew what, or in which order."""
    for v in range(va, vb + 1):
        for u in range(ua, ub + 1):
            x = rays[v, u, 0]
            y = rays[v, u, 1]
            if a0 * x + b0 * y + c0 < 0.0:
                continue
            if a1 * x + b1 * y + c1 < 0.0:
                continue
            if a2 * x + b2 * y + c2 < 0.0:
                continue
            iz = az * x + bz * y + cz
            if iz <= 0.0:
                continue
            z = 1.0 / iz
            if z < near:
                continue
            zo = zb[v, u]
            if z < zo or (z == zo and slot < sb[v, u]):
                zb[v, u] = z
                sb[v, u] = slot


@njit(cache=True, inline="always")
def _draw_one(x0, y0, iz0, x1, y1, iz1, x2, y2, iz2, pu0, pv0, pu1, pv1, pu2, pv2, slot, zb, sb, rect,
              d, intr, box, m2, width, height, rays, near):
    """Set up one triangle in front of the near plane (barycentric coefficients, affine 1/z and a
    conservative pixel box) and rasterize it into one worker's z-buffer.

    x*, y*: undistorted normalized coordinates of the vertices, iz*: 1 / z (camera frame).
    pu*, pv*: distorted pixels of the three vertices, or NaN when they cannot be used for the box.
    rect: the worker's (umin, umax, vmin, vmax) of everything drawn, grown here.
    """
    fx, skew, cx, fy, cy = intr[0], intr[1], intr[2], intr[3], intr[4]
    area = (x1 - x0) * (y2 - y0) - (y1 - y0) * (x2 - x0)
    if not (abs(area) > 1e-20):
        return
    ua = 0
    ub = -1
    va = 0
    vb = -1
    fast = False
    if not np.isnan(pu0 + pv0 + pu1 + pv1 + pu2 + pv2):
        # fast path: all vertices inside the field of view; the image of an edge of normalized
        # length l deviates from its chord by at most l^2 * m2 / 8 pixels
        l2 = max((x1 - x0) ** 2 + (y1 - y0) ** 2, max((x2 - x1) ** 2 + (y2 - y1) ** 2,
                                                        (x0 - x2) ** 2 + (y0 - y2) ** 2))
        margin = l2 * m2 / 8.0 + 1e-7
        if margin <= SAG_TOL_PX:
            fast = True
            ua = max(int(np.ceil(min(pu0, min(pu1, pu2)) - margin)), 0)
            ub = min(int(np.floor(max(pu0, max(pu1, pu2)) + margin)), width - 1)
            va = max(int(np.ceil(min(pv0, min(pv1, pv2)) - margin)), 0)
            vb = min(int(np.floor(max(pv0, max(pv1, pv2)) + margin)), height - 1)
    if not fast:
        # general path: undistorted bounding rectangle, clipped to the field of view box
        rx0 = max(min(x0, min(x1, x2)), box[0])
        rx1 = min(max(x0, max(x1, x2)), box[1])
        ry0 = max(min(y0, min(y1, y2)), box[2])
        ry1 = min(max(y0, max(y1, y2)), box[3])
        if rx0 > rx1 or ry0 > ry1:
            return
        umin = 1e300
        umax = -1e300
        vmin = 1e300
        vmax = -1e300
        margin = 1e-7
        if m2 == 0.0:
            # pinhole: affine map, the rectangle's corners bound it exactly
            for k in range(4):
                xx = rx0 if (k & 1) == 0 else rx1
                yy = ry0 if (k & 2) == 0 else ry1
                u = fx * xx + skew * yy + cx
                v = fy * yy + cy
                umin = min(umin, u)
                umax = max(umax, u)
                vmin = min(vmin, v)
                vmax = max(vmax, v)
        else:
            step = np.sqrt(8.0 * SAG_TOL_PX / m2)
            nx = min(max(int(np.ceil((rx1 - rx0) / step)), 1), _MAX_EDGE_SAMPLES)
            ny = min(max(int(np.ceil((ry1 - ry0) / step)), 1), _MAX_EDGE_SAMPLES)
            sx = (rx1 - rx0) / nx
            sy = (ry1 - ry0) / ny
            margin = m2 * max(sx * sx, sy * sy) / 8.0 + 1e-7
            for i in range(nx + 1):
                xx = rx0 + i * sx
                for yy in (ry0, ry1):
                    u, v = _distort_px(xx, yy, d, fx, skew, cx, fy, cy)
                    umin = min(umin, u)
                    umax = max(umax, u)
                    vmin = min(vmin, v)
                    vmax = max(vmax, v)
            for j in range(1, ny):
                yy = ry0 + j * sy
                for xx in (rx0, rx1):
                    u, v = _distort_px(xx, yy, d, fx, skew, cx, fy, cy)
                    umin = min(umin, u)
                    umax = max(umax, u)
                    vmin = min(vmin, v)
                    vmax = max(vmax, v)
        ua = max(int(np.ceil(umin - margin)), 0)
        ub = min(int(np.floor(umax + margin)), width - 1)
        va = max(int(np.ceil(vmin - margin)), 0)
        vb = min(int(np.floor(vmax + margin)), height - 1)
    if ua > ub or va > vb:
        return
    inv = 1.0 / area
    # barycentric b_i = A_i x + B_i y + C_i (edge functions divided by the signed area)
    a0 = -(y2 - y1) * inv
    b0 = (x2 - x1) * inv
    c0 = ((y2 - y1) * x1 - (x2 - x1) * y1) * inv
    a1 = -(y0 - y2) * inv
    b1 = (x0 - x2) * inv
    c1 = ((y0 - y2) * x2 - (x0 - x2) * y2) * inv
    a2 = -(y1 - y0) * inv
    b2 = (x1 - x0) * inv
    c2 = ((y1 - y0) * x0 - (x1 - x0) * y0) * inv
    rect[0] = min(rect[0], ua)
    rect[1] = max(rect[1], ub)
    rect[2] = min(rect[2], va)
    rect[3] = max(rect[3], vb)
    _raster_one(zb, sb, slot, ua, ub, va, vb, a0, b0, c0, a1, b1, c1, a2, b2, c2,
                a0 * iz0 + a1 * iz1 + a2 * iz2, b0 * iz0 + b1 * iz1 + b2 * iz2, c0 * iz0 + c1 * iz1 + c2 * iz2,
                rays, near)


@njit(cache=True, parallel=True)
def _draw(vc, vn, vpx, faces, d, intr, box, m2, near, width, height, rays, zbufs, sbufs, rects):
    """Clip, set up and rasterize every face; worker w draws the face chunks c with
    c % n_workers == w into its own z-buffer ``zbufs[w]`` / slot buffer ``sbufs[w]`` (no shared
    writes). Face f draws as slot f, and as slot F + f the second triangle its near-plane clip
    produced. ``zbufs`` must be +inf everywhere on entry (``_resolve`` leaves them so);
    ``rects[w]`` receives the pixel rectangle worker w touched."""
    nf = faces.shape[0]
    nw = zbufs.shape[0]
    n_chunks = (nf + FACE_CHUNK - 1) // FACE_CHUNK
    for w in prange(nw):
        zb = zbufs[w]
        sb = sbufs[w]
        rect = rects[w]
        rect[0] = width
        rect[1] = -1
        rect[2] = height
        rect[3] = -1
        poly = np.empty((4, 3))
        for c in range(w, n_chunks, nw):
            for f in range(c * FACE_CHUNK, min((c + 1) * FACE_CHUNK, nf)):
                i0, i1, i2 = faces[f, 0], faces[f, 1], faces[f, 2]
                n_in = int(vc[i0, 2] > near) + int(vc[i1, 2] > near) + int(vc[i2, 2] > near)
                if n_in == 0:
                    continue
                if n_in == 3:
                    _draw_one(vn[i0, 0], vn[i0, 1], vn[i0, 2], vn[i1, 0], vn[i1, 1], vn[i1, 2],
                              vn[i2, 0], vn[i2, 1], vn[i2, 2],
                              vpx[i0, 0], vpx[i0, 1], vpx[i1, 0], vpx[i1, 1], vpx[i2, 0], vpx[i2, 1],
                              f, zb, sb, rect, d, intr, box, m2, width, height, rays, near)
                    continue
                # crosses the near plane: clip (Sutherland-Hodgman against z = near)
                n = 0
                for k in range(3):
                    ia = faces[f, k]
                    ib = faces[f, (k + 1) % 3]
                    a_in = vc[ia, 2] > near
                    b_in = vc[ib, 2] > near
                    if a_in:
                        for cc in range(3):
                            poly[n, cc] = vc[ia, cc]
                        n += 1
                    if a_in != b_in:
                        t = (near - vc[ia, 2]) / (vc[ib, 2] - vc[ia, 2])
                        for cc in range(3):
                            poly[n, cc] = vc[ia, cc] + t * (vc[ib, cc] - vc[ia, cc])
                        poly[n, 2] = near
                        n += 1
                nan = np.nan
                for s in range(n - 2):
                    _draw_one(poly[0, 0] / poly[0, 2], poly[0, 1] / poly[0, 2], 1.0 / poly[0, 2],
                              poly[s + 1, 0] / poly[s + 1, 2], poly[s + 1, 1] / poly[s + 1, 2], 1.0 / poly[s + 1, 2],
                              poly[s + 2, 0] / poly[s + 2, 2], poly[s + 2, 1] / poly[s + 2, 2], 1.0 / poly[s + 2, 2],
                              nan, nan, nan, nan, nan, nan, f + s * nf, zb, sb, rect, d, intr, box, m2, width,
                              height, rays, near)


@njit(cache=True)
def _resolve(zbufs, sbufs, rect, rays, face_link, face_rgb, face_shade, with_rgb,
             pointmap, depth, mask, link_id, rgb):
    """Merge the workers' z-buffers inside ``rect`` (lexicographic minimum of (z, slot)), write
    pointmap / depth / mask / link id / RGB there (the outputs must hold their background values
    elsewhere on entry), and reset the z-buffers to +inf (ready for the next ``_draw``)."""
    nw = zbufs.shape[0]
    nf = face_link.shape[0]
    u0, u1, v0, v1 = rect[0], rect[1], rect[2], rect[3]
    for v in range(v0, v1 + 1):
        for u in range(u0, u1 + 1):
            z = np.inf
            s = -1
            for w in range(nw):
                zw = zbufs[w, v, u]
                if zw < z or (zw == z and zw < np.inf and sbufs[w, v, u] < s):
                    z = zw
                    s = sbufs[w, v, u]
                zbufs[w, v, u] = np.inf
            if s < 0:
                continue
            f = s % nf
            pointmap[v, u, 0] = z * rays[v, u, 0]
            pointmap[v, u, 1] = z * rays[v, u, 1]
            pointmap[v, u, 2] = z
            depth[v, u] = z
            mask[v, u] = True
            link_id[v, u] = face_link[f]
            if with_rgb:
                sh = face_shade[f]
                for c in range(3):
                    rgb[v, u, c] = np.uint8(min(255.0, face_rgb[f, c] * sh + 0.5))


@njit(cache=True, parallel=True)
def _headlight_shade(vc, faces, out):
    """Lambert factor 0.25 + 0.75 |cos| between the face normal and the view ray to its centroid."""
    for f in prange(faces.shape[0]):
        i, j, k = faces[f, 0], faces[f, 1], faces[f, 2]
        e1x = vc[j, 0] - vc[i, 0]
        e1y = vc[j, 1] - vc[i, 1]
        e1z = vc[j, 2] - vc[i, 2]
        e2x = vc[k, 0] - vc[i, 0]
        e2y = vc[k, 1] - vc[i, 1]
        e2z = vc[k, 2] - vc[i, 2]
        nx = e1y * e2z - e1z * e2y
        ny = e1z * e2x - e1x * e2z
        nz = e1x * e2y - e1y * e2x
        cx = (vc[i, 0] + vc[j, 0] + vc[k, 0]) / 3.0
        cy = (vc[i, 1] + vc[j, 1] + vc[k, 1]) / 3.0
        cz = (vc[i, 2] + vc[j, 2] + vc[k, 2]) / 3.0
        nn = np.sqrt(nx * nx + ny * ny + nz * nz) * np.sqrt(cx * cx + cy * cy + cz * cz)
        cosv = abs(nx * cx + ny * cy + nz * cz) / nn if nn > 0 else 1.0
        out[f] = 0.25 + 0.75 * cosv


# ----------------------------------------------------------------------------- camera analysis
def _fov_box(camera: CameraModel, rays: np.ndarray) -> np.ndarray:
    """Undistorted-plane rectangle holding every pixel ray, widened by 2 pixels."""
    mx, my = 2.0 / camera.K[0, 0], 2.0 / camera.K[1, 1]
    return np.array([rays[..., 0].min() - mx, rays[..., 0].max() + mx,
                     rays[..., 1].min() - my, rays[..., 1].max() + my])


def _distortion_curvature(camera: CameraModel, box: np.ndarray, n: int = 96) -> float:
    """Bound (pixels per normalized unit^2) of the distortion map's second derivatives over ``box``.

    Also checks that the map is one-to-one there (positive Jacobian determinant).
    """
    if not camera.has_distortion:
        return 0.0
    xs = np.linspace(box[0], box[1], n)
    ys = np.linspace(box[2], box[3], n)
    h = 1e-4 * max(box[1] - box[0], box[3] - box[2])
    X, Y = np.meshgrid(xs, ys)

    def f(dx: float, dy: float) -> np.ndarray:
        return np.stack(camera.project_normalized(X + dx, Y + dy))

    f0 = f(0, 0)
    fxp, fxm, fyp, fym = f(h, 0), f(-h, 0), f(0, h), f(0, -h)
    jx, jy = (fxp - fxm) / (2 * h), (fyp - fym) / (2 * h)
    det = jx[0] * jy[1] - jx[1] * jy[0]
    if not np.all(det > 0):
        raise ConfigError("the distortion folds over inside the field of view (not one-to-one)",
                          field="distortion_coefficients",
                          fix="check the calibration; coefficients this strong are not supported")
    hxx = (fxp - 2 * f0 + fxm) / h ** 2
    hyy = (fyp - 2 * f0 + fym) / h ** 2
    hxy = (f(h, h) - f(h, -h) - f(-h, h) + f(-h, -h)) / (4 * h ** 2)
    frob = np.sqrt(hxx ** 2 + hyy ** 2 + 2 * hxy ** 2)   # (2, n, n): per output coordinate
    return float(frob.max()) * 2.0 + 1e-9                # factor 2: safety for the grid sampling


def _shared_vertices(mesh: LinkMesh) -> tuple[np.ndarray, np.ndarray]:
    """(vertices, faces) with bit-identical vertices merged (meshes loaded unindexed repeat them per face).

    Exact: only identical coordinates are merged, so the rendered surface is unchanged; it only
    saves per-frame vertex transforms. Unreferenced vertices are dropped.
    """
    used = mesh.vertices[mesh.faces.ravel()]
    uniq, inverse = np.unique(used, axis=0, return_inverse=True)
    return uniq, inverse.reshape(-1, 3).astype(np.int32)


# ----------------------------------------------------------------------------- renderer
class RobotRenderer:
    """Render robot link meshes into a calibrated camera (see module docstring for exactness).

    meshes: the meshes to draw; ``render`` takes one pose per mesh.
    with_rgb: also produce the robot RGB image (face colours, black background).
    shade: Lambert head-light shading of the RGB image (off by default).
    near: near clipping plane, metres along the optical axis.
    """

    def __init__(self, camera: CameraModel, meshes: Sequence[LinkMesh], *, with_rgb: bool = False,
                 shade: bool = False, near: float = 0.01, warm_up: bool = True):
        if len(meshes) == 0:
            raise InputError("no meshes to render", field="meshes", fix="pass the robot's LinkMesh list")
        if not near > 0:
            raise InputError(f"must be > 0, got {near}", field="near", fix="use a small positive distance (m)")
        self.camera = camera
        self.meshes = tuple(meshes)
        self.with_rgb = bool(with_rgb)
        self.shade = bool(shade)
        self.near = float(near)
        verts, faces = zip(*(_shared_vertices(m) for m in self.meshes))
        offsets = np.cumsum([0] + [v.shape[0] for v in verts])
        self._verts = np.concatenate(verts).astype(np.float64)
        self._vmesh = np.concatenate([np.full(v.shape[0], i, np.int32) for i, v in enumerate(verts)])
        self._faces = np.concatenate([f + offsets[i] for i, f in enumerate(faces)]).astype(np.int32)
        self._face_link = np.concatenate([np.full(m.n_faces, m.link_index, np.int16) for m in self.meshes])
        self._face_rgb = np.concatenate([m.face_colors for m in self.meshes]).astype(np.float64)
        self._rays = np.ascontiguousarray(camera.pixel_rays())
        self._box = _fov_box(camera, self._rays)
        self._m2 = _distortion_curvature(camera, self._box)
        K = camera.K
        self._intr = np.array([K[0, 0], K[0, 1], K[0, 2], K[1, 1], K[1, 2]])
        self._d8 = np.ascontiguousarray(camera.d8)
        n_faces = self._faces.shape[0]
        self._vc = np.empty((self._verts.shape[0], 3))
        self._vn = np.empty((self._verts.shape[0], 3))
        self._vpx = np.empty((self._verts.shape[0], 2))
        self._shade = np.ones(n_faces)
        self._zbufs = np.empty((0, camera.height, camera.width))     # per worker, +inf between frames
        self._sbufs = np.empty((0, camera.height, camera.width), np.int32)
        self._rects = np.empty((0, 4), np.int64)
        self._lock = threading.Lock()                                # the z-buffers are per renderer
        if warm_up:
            self.render(np.tile(np.eye(4), (len(self.meshes), 1, 1)))

    @property
    def n_faces(self) -> int:
        return int(self._faces.shape[0])

    def render(self, T_camera_mesh: np.ndarray) -> RenderResult:
        """Render one frame; ``T_camera_mesh`` (M,4,4) maps each mesh's frame into the camera."""
        T = np.ascontiguousarray(T_camera_mesh, dtype=np.float64)
        if T.shape != (len(self.meshes), 4, 4) or not np.all(np.isfinite(T)):
            raise InputError(f"must be finite ({len(self.meshes)},4,4), got {T.shape}", field="T_camera_mesh",
                             fix="give one camera-from-mesh transform per mesh, in mesh order")
        H, W = self.camera.height, self.camera.width
        pointmap = np.zeros((H, W, 3), np.float32)
        depth = np.zeros((H, W), np.float32)
        mask = np.zeros((H, W), np.bool_)
        link_id = np.full((H, W), -1, np.int16)
        rgb = np.zeros((H, W, 3), np.uint8) if self.with_rgb else np.zeros((1, 1, 3), np.uint8)
        with self._lock:
            n_workers = max(1, numba.get_num_threads())
            if self._zbufs.shape[0] != n_workers:
                self._zbufs = np.full((n_workers, H, W), np.inf)
                self._sbufs = np.full((n_workers, H, W), -1, np.int32)
                self._rects = np.empty((n_workers, 4), np.int64)
            zbufs = self._zbufs
            try:
                _transform_vertices(self._verts, self._vmesh, T, self._d8, self._intr, self._box, self.near,
                                    self._vc, self._vn, self._vpx)
                _draw(self._vc, self._vn, self._vpx, self._faces, self._d8, self._intr, self._box, self._m2,
                      self.near, W, H, self._rays, zbufs, self._sbufs, self._rects)
                if self.with_rgb and self.shade:
                    _headlight_shade(self._vc, self._faces, self._shade)
                rect = np.array([self._rects[:, 0].min(), self._rects[:, 1].max(),
                                 self._rects[:, 2].min(), self._rects[:, 3].max()], np.int64)
                _resolve(zbufs, self._sbufs, rect, self._rays, self._face_link, self._face_rgb, self._shade,
                         self.with_rgb, pointmap, depth, mask, link_id, rgb)
            except BaseException:
                zbufs.fill(np.inf)          # never leave a half-drawn z-buffer for the next frame
                raise
        return RenderResult(pointmap=pointmap, depth=depth, mask=mask, link_id=link_id,
                            rgb=rgb if self.with_rgb else None)

    def render_base(self, T_base_mesh: np.ndarray) -> RenderResult:
        """Render from base-frame mesh poses (M,4,4), e.g. ``RobotModel.mesh_poses(q)``."""
        return self.render(self.camera.T_camera_base @ np.asarray(T_base_mesh, dtype=np.float64))


def warm_up_kernels(meshes: Sequence[LinkMesh]) -> float:
    """Compile every numba kernel of this module (into numba's on-disk cache); returns the seconds taken.

    The first ``RobotRenderer`` of a process otherwise pays the compile: about a minute on two busy
    cores with a cold cache (a fresh setup, or after this file changed), a second or two from the
    cache. ``scripts/setup_env.sh`` calls this so a fresh environment starts warm; projector_node
    calls it when it starts, before any camera or TF pose is known. Uses a 16x12 pinhole camera:
    numba specialises on argument types, not on sizes, distortion values or the camera pose."""
    import time

    t0 = time.perf_counter()
    camera = CameraModel(width=16, height=12, K=np.array([[10.0, 0.0, 8.0], [0.0, 10.0, 6.0], [0.0, 0.0, 1.0]]),
                         D=np.zeros(5), distortion_model="plumb_bob", T_base_camera=np.eye(4))
    RobotRenderer(camera, meshes, with_rgb=True, shade=True)     # warm_up renders once
    return time.perf_counter() - t0
