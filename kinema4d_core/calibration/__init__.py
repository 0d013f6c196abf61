"""Calibration: ChArUco board detection, eye-to-hand and single-view camera extrinsics,
reconstructed-mesh alignment (Umeyama + RANSAC + ICP) and overlay scores. See docs/calibration.md."""
