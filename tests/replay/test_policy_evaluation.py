"""Policy evaluation (the paper's Table 3) and object metrics: episode-level agreement, the
correlation of GT vs predicted success rates across policies with bootstrap intervals, and the
object Chamfer / final object error on hand-made scenes. No sim, no model: fast."""

from __future__ import annotations

import numpy as np
import pytest

from kinema4d_core import statistics as St
from kinema4d_core import success as S
from kinema4d_core.metrics import depth_to_pointmap
from kinema4d_core.statistics import Outcome


def _outcomes(rates: dict[str, tuple[float, float]], n: int = 10) -> list[Outcome]:
    """n episodes per policy whose GT / predicted success rates are exactly the given ones."""
    out = []
    for pol, (g, s) in rates.items():
        for i in range(n):
            out.append(Outcome("push", pol, f"{pol}_{i}", i < round(g * n), i < round(s * n)))
    return out


def test_agreement_counts_only_episodes_with_both_outcomes():
    outs = [Outcome("push", "a", "e0", True, True), Outcome("push", "a", "e1", True, False),
            Outcome("push", "a", "e2", False, False), Outcome("push", "a", "e3", None, True),
            Outcome("push", "b", "e4", False, None)]
    assert St.agreement(outs) == (2, 3)
    rows = {r["policy"]: r for r in St.success_table(outs, by="policy")}
    assert set(rows) == {"a", "b", "all"}
    assert rows["a"]["agreement"] == pytest.approx(2 / 3) and rows["a"]["agreement_n"] == 3
    assert rows["a"]["agreement_ci"] == pytest.approx(St.wilson_interval(2, 3))
    assert rows["b"]["agreement"] is None and rows["b"]["agreement_ci"] == (0.0, 1.0)
    # grouping by scenario keeps the old rows (with the agreement added)
    (sc, all_) = St.success_table(outs)
    assert sc["scenario"] == "push" and sc["gt_n"] == 4 and sc["sim_n"] == 4 and sc["agreement_n"] == 3
    with pytest.raises(ValueError):
        St.success_table(outs, by="episode")


def test_correlation_with_seeded_bootstrap_intervals():
    outs = _outcomes({"scripted": (0.8, 0.7), "aim-2cm": (0.5, 0.6), "aim-4cm": (0.2, 0.3)})
    corr = St.policy_correlation(outs, bootstrap=200, seed=3)
    g, s = np.array([0.5, 0.2, 0.8]), np.array([0.6, 0.3, 0.7])   # sorted by policy name
    assert corr["pearson"] == pytest.approx(np.corrcoef(g, s)[0, 1]) and corr["spearman"] == pytest.approx(1.0)
    for key in ("pearson_ci", "spearman_ci"):
        lo, hi = corr[key]
        assert -1.0 <= lo <= hi <= 1.0
    assert corr["pearson_ci"][1] > 0.9 and corr["pearson_ci"][0] < corr["pearson"]  # 10 episodes: wide
    assert corr["bootstrap"]["replicates"] == 200 and corr["bootstrap"]["defined"]["pearson"] > 100
    assert St.policy_correlation(outs, bootstrap=200, seed=3) == corr          # seeded: reproducible
    assert St.policy_correlation(outs, bootstrap=200, seed=4)["pearson_ci"] != corr["pearson_ci"]
    assert "pearson_ci" not in St.policy_correlation(outs)                     # no bootstrap by default


def test_constant_or_too_few_rates_give_a_reason_never_a_number():
    # a no-dynamics baseline that predicts failure everywhere: constant predicted rate
    flat = _outcomes({"scripted": (0.8, 0.0), "aim-2cm": (0.5, 0.0), "aim-4cm": (0.2, 0.0)})
    corr = St.policy_correlation(flat, bootstrap=50, seed=0)
    for key in ("pearson", "spearman", "pearson_ci", "spearman_ci"):
        assert isinstance(corr[key], str) and corr[key].startswith("unavailable"), corr[key]
    assert "simulated success rates are constant" in corr["pearson"]
    two = St.policy_correlation(_outcomes({"a": (0.8, 0.7), "b": (0.2, 0.3)}), bootstrap=50)
    assert two["pearson"].startswith("unavailable: needs >= 3 policies") and isinstance(two["spearman_ci"], str)
    # defined on the data, but most resamples miss policy a's single successes and make the
    # rates constant: an interval from too few defined replicates is refused, with the count
    rare = [Outcome("push", "a", f"a{i}", i == 0, i == 1) for i in range(8)]
    rare += [Outcome("push", p, f"{p}{i}", False, False) for p in ("b", "c") for i in range(8)]
    c = St.policy_correlation(rare, bootstrap=200, seed=0)
    assert c["pearson"] == pytest.approx(1.0) and c["bootstrap"]["defined"]["pearson"] < 100
    assert c["pearson_ci"].startswith("unavailable: the correlation is undefined (constant rates) in ")


def _scene(T=4, h=40, w=40, shift_px=0, drop_object=False):
    """Top-down camera 1 m above a table at z=0, a 6 cm tall box whose top face is seen (10x10 px),
    ``shift_px`` columns to the right; the robot covers the left columns."""
    K = np.array([[40.0, 0, (w - 1) / 2], [0, 40.0, (h - 1) / 2], [0, 0, 1]])
    T_bc = np.eye(4)
    T_bc[:3, :3] = np.diag([1.0, -1.0, -1.0])
    T_bc[2, 3] = 1.0
    depth = np.ones((T, h, w))
    mask = np.zeros((T, h, w), bool)
    mask[:, :, :6] = True
    depth[:, :, :6] = 0.5
    if not drop_object:
        depth[:, 15:25, 15 + shift_px:25 + shift_px] = 0.94
    return depth_to_pointmap(depth, K), mask, T_bc


def test_object_metrics_are_zero_for_gt_against_itself_and_grow_with_a_shift():
    crit = S.SuccessCriteria(task="lift")
    pm, mask, T_bc = _scene()
    gt = S.detect_success(pm, mask, T_bc, crit)
    assert len(gt.object_points) == 4 and all(len(p) == 100 for p in gt.object_points)
    same = S.object_metrics(gt.object_points, gt.object_points)
    assert same["object_chamfer_m"] == 0.0 and same["final_object_error_m"] == 0.0
    assert same["final_object_frame"] == 3 and same["final_object_is_last_frame"] and "reason" not in same
    pm_s, _, _ = _scene(shift_px=5)
    moved = S.object_metrics(gt.object_points, S.detect_success(pm_s, mask, T_bc, crit).object_points)
    step = 0.94 / 40.0                                                # metres per pixel at the box top
    assert moved["final_object_error_m"] == pytest.approx(5 * step, rel=1e-6)
    assert 0 < moved["object_chamfer_m"] < 5 * step and moved["frames_compared"] == 4
    # the object vanishes from the prediction's last frame: the error is taken at the last shared frame
    pm_gone, _, _ = _scene(drop_object=True)
    late = S.detect_success(np.concatenate([pm_s[:3], pm_gone[3:]]), mask, T_bc, crit)
    part = S.object_metrics(gt.object_points, late.object_points)
    assert part["final_object_frame"] == 2 and part["final_object_is_last_frame"] is False
    assert part["final_object_error_m"] == pytest.approx(5 * step, rel=1e-6)


def test_object_metrics_say_why_without_an_object():
    crit = S.SuccessCriteria(task="lift")
    pm, mask, T_bc = _scene()
    gt = S.detect_success(pm, mask, T_bc, crit).object_points
    none = S.detect_success(_scene(drop_object=True)[0], mask, T_bc, crit).object_points
    m = S.object_metrics(gt, none)
    assert m["object_chamfer_m"] is None and m["final_object_error_m"] is None
    assert m["reason"] == "no object found in the prediction" and m["gt_frames_with_object"] == 4
    assert S.object_metrics(none, none)["reason"].startswith("no object found in the ground truth nor")
    with pytest.raises(S.InputError, match="frames"):
        S.object_metrics(gt, none[:2])
