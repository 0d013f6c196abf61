"""Policy-evaluation statistics: success rates with Wilson score intervals per scenario, the
correlation of ground-truth vs simulated success rates across policies, and their markdown table
(moved verbatim from ``evaluation``, which re-exports these names)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Sequence

import numpy as np


# ----------------------------------------------------------------------------------------------
# Success-rate tables
# ----------------------------------------------------------------------------------------------

def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (95 % for z = 1.96); (0, 1) when n = 0."""
    if n <= 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


@dataclass(frozen=True)
class Outcome:
    """One evaluated episode: ground-truth and simulated success (None where unknown)."""

    scenario: str
    policy: str
    episode: str
    gt_success: bool | None
    sim_success: bool | None


def _rate(values: Iterable[bool | None]) -> tuple[int, int]:
    vals = [bool(v) for v in values if v is not None]
    return sum(vals), len(vals)


def success_table(outcomes: Sequence[Outcome]) -> list[dict[str, Any]]:
    """Per scenario (and "all"): GT and simulated success rates, Wilson 95 % CIs, sim - GT."""
    rows = []
    scenarios = sorted({o.scenario for o in outcomes}) + (["all"] if outcomes else [])
    for sc in scenarios:
        group = [o for o in outcomes if sc == "all" or o.scenario == sc]
        kg, ng = _rate(o.gt_success for o in group)
        ks, ns = _rate(o.sim_success for o in group)
        gt = kg / ng if ng else None
        sim = ks / ns if ns else None
        rows.append({"scenario": sc, "episodes": len(group), "gt_rate": gt, "gt_ci": wilson_interval(kg, ng),
                     "gt_n": ng, "sim_rate": sim, "sim_ci": wilson_interval(ks, ns), "sim_n": ns,
                     "difference": (sim - gt) if gt is not None and sim is not None else None})
    return rows


def policy_correlation(outcomes: Sequence[Outcome]) -> dict[str, Any]:
    """Pearson and Spearman correlation of GT vs simulated success rates across policies.

    Needs at least 3 policies with both rates and non-constant rates; otherwise the entries say
    why they are unavailable.
    """
    from scipy import stats

    rates = []
    for pol in sorted({o.policy for o in outcomes}):
        kg, ng = _rate(o.gt_success for o in outcomes if o.policy == pol)
        ks, ns = _rate(o.sim_success for o in outcomes if o.policy == pol)
        if ng and ns:
            rates.append((pol, kg / ng, ks / ns))
    out: dict[str, Any] = {"policies": [{"policy": p, "gt_rate": g, "sim_rate": s} for p, g, s in rates]}
    if len(rates) < 3:
        reason = f"unavailable: needs >= 3 policies with GT and simulated outcomes, have {len(rates)}"
        out.update(pearson=reason, spearman=reason)
        return out
    g = np.array([r[1] for r in rates])
    s = np.array([r[2] for r in rates])
    if np.ptp(g) == 0 or np.ptp(s) == 0:
        reason = "unavailable: success rates are constant across policies"
        out.update(pearson=reason, spearman=reason)
        return out
    out["pearson"] = float(stats.pearsonr(g, s)[0])
    out["spearman"] = float(stats.spearmanr(g, s)[0])
    return out


def _fmt_rate(rate: float | None, ci: Sequence[float]) -> str:
    return "n/a" if rate is None else f"{rate:.2f} [{ci[0]:.2f}, {ci[1]:.2f}]"


def table_markdown(rows: Sequence[dict[str, Any]], correlation: dict[str, Any] | None = None) -> str:
    """The paper's policy-evaluation table: per scenario GT vs simulated success rate (95 % Wilson
    CI) and their difference, plus the cross-policy correlation."""
    lines = ["| Scenario | Episodes | Ground truth | Simulated | Sim - GT |", "|---|---|---|---|---|"]
    for r in rows:
        diff = "n/a" if r["difference"] is None else f"{r['difference']:+.2f}"
        lines.append(f"| {r['scenario']} | {r['episodes']} | {_fmt_rate(r['gt_rate'], r['gt_ci'])} | "
                     f"{_fmt_rate(r['sim_rate'], r['sim_ci'])} | {diff} |")
    if correlation is not None:
        fmt = lambda v: f"{v:.3f}" if isinstance(v, float) else str(v)  # noqa: E731
        lines += ["", f"Correlation across policies (GT vs simulated success rate): "
                      f"Pearson {fmt(correlation['pearson'])}, Spearman {fmt(correlation['spearman'])}."]
    return "\n".join(lines) + "\n"


def outcomes_to_json(outcomes: Sequence[Outcome]) -> list[dict[str, Any]]:
    """Outcomes as JSON-able dicts."""
    return [asdict(o) for o in outcomes]
