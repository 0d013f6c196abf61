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


def agreement(outcomes: Iterable[Outcome]) -> tuple[int, int]:
    """(episodes whose simulated success equals the GT success, episodes where both are known)."""
    both = [o for o in outcomes if o.gt_success is not None and o.sim_success is not None]
    return sum(bool(o.gt_success) == bool(o.sim_success) for o in both), len(both)


def success_table(outcomes: Sequence[Outcome], by: str = "scenario") -> list[dict[str, Any]]:
    """Per ``by`` group ("scenario" or "policy"; and "all"): GT and simulated success rates,
    Wilson 95 % CIs, sim - GT, and the episode-level agreement (share of episodes with both
    outcomes known where they are equal) with its Wilson 95 % CI."""
    if by not in ("scenario", "policy"):
        raise ValueError(f"success_table groups by scenario or policy, not {by!r}")
    rows = []
    groups = sorted({getattr(o, by) for o in outcomes}) + (["all"] if outcomes else [])
    for key in groups:
        group = [o for o in outcomes if key == "all" or getattr(o, by) == key]
        kg, ng = _rate(o.gt_success for o in group)
        ks, ns = _rate(o.sim_success for o in group)
        ka, na = agreement(group)
        gt = kg / ng if ng else None
        sim = ks / ns if ns else None
        rows.append({by: key, "episodes": len(group), "gt_rate": gt, "gt_ci": wilson_interval(kg, ng),
                     "gt_n": ng, "sim_rate": sim, "sim_ci": wilson_interval(ks, ns), "sim_n": ns,
                     "difference": (sim - gt) if gt is not None and sim is not None else None,
                     "agreement": ka / na if na else None, "agreement_ci": wilson_interval(ka, na),
                     "agreement_n": na})
    return rows


MIN_POLICIES = 3  # a correlation across fewer policies says nothing (two points always lie on a line)


def _policy_rates(outcomes: Sequence[Outcome]) -> list[tuple[str, float, float]]:
    """(policy, GT success rate, simulated success rate) of every policy with both kinds of outcome."""
    rates = []
    for pol in sorted({o.policy for o in outcomes}):
        kg, ng = _rate(o.gt_success for o in outcomes if o.policy == pol)
        ks, ns = _rate(o.sim_success for o in outcomes if o.policy == pol)
        if ng and ns:
            rates.append((pol, kg / ng, ks / ns))
    return rates


def _rate_correlations(gt_rates: Sequence[float], sim_rates: Sequence[float]) -> dict[str, float] | str:
    """Pearson and Spearman correlation of paired per-policy rates, or why they are undefined
    (fewer than ``MIN_POLICIES`` policies; constant rates on either side)."""
    from scipy import stats

    g = np.asarray(gt_rates, float)
    s = np.asarray(sim_rates, float)
    if len(g) < MIN_POLICIES:
        return f"unavailable: needs >= {MIN_POLICIES} policies with GT and simulated outcomes, have {len(g)}"
    if np.ptp(g) == 0 or np.ptp(s) == 0:
        which = "GT and simulated" if np.ptp(g) == np.ptp(s) == 0 else "GT" if np.ptp(g) == 0 else "simulated"
        return f"unavailable: {which} success rates are constant across policies"
    # Spearman = Pearson of the ranks (ties: average ranks), as scipy.stats.spearmanr
    return {"pearson": float(np.corrcoef(g, s)[0, 1]),
            "spearman": float(np.corrcoef(stats.rankdata(g), stats.rankdata(s))[0, 1])}


def policy_correlation(outcomes: Sequence[Outcome], *, bootstrap: int = 0, seed: int = 0,
                       level: float = 0.95) -> dict[str, Any]:
    """Pearson and Spearman correlation of GT vs simulated success rates across policies.

    Needs at least ``MIN_POLICIES`` (3) policies with both rates and non-constant rates;
    otherwise the entries say why they are unavailable (a string, never a number).

    bootstrap > 0 adds percentile confidence intervals (``pearson_ci``, ``spearman_ci``, at
    ``level``): ``bootstrap`` replicates, each resampling every policy's episodes with
    replacement (``numpy.random.default_rng(seed)``, so the intervals are reproducible) and
    recomputing the rates and correlations. Replicates where a correlation is undefined (rates
    constant) are left out and counted; when more than half are undefined the interval is
    unavailable, with that reason.
    """
    rates = _policy_rates(outcomes)
    out: dict[str, Any] = {"policies": [{"policy": p, "gt_rate": g, "sim_rate": s} for p, g, s in rates]}
    corr = _rate_correlations([r[1] for r in rates], [r[2] for r in rates])
    if isinstance(corr, str):
        out.update(pearson=corr, spearman=corr)
    else:
        out.update(corr)
    if bootstrap <= 0:
        return out
    out["bootstrap"] = {"replicates": int(bootstrap), "seed": int(seed), "level": level,
                        "resampling": "episodes within each policy, with replacement"}
    if isinstance(corr, str):
        out.update(pearson_ci=corr, spearman_ci=corr)
        return out
    rng = np.random.default_rng(seed)
    per_policy = []
    for pol, _, _ in rates:
        eps = [o for o in outcomes if o.policy == pol]
        per_policy.append((np.array([np.nan if o.gt_success is None else float(o.gt_success) for o in eps]),
                           np.array([np.nan if o.sim_success is None else float(o.sim_success) for o in eps])))
    samples: dict[str, list[float]] = {"pearson": [], "spearman": []}
    for _ in range(int(bootstrap)):
        g_rates, s_rates = [], []
        for g, s in per_policy:
            idx = rng.integers(0, len(g), len(g))
            g_b, s_b = g[idx], s[idx]
            if np.all(np.isnan(g_b)) or np.all(np.isnan(s_b)):
                break   # this policy drew no outcome of one kind: the replicate has too few policies
            g_rates.append(float(np.nanmean(g_b)))
            s_rates.append(float(np.nanmean(s_b)))
        rep = _rate_correlations(g_rates, s_rates)
        if not isinstance(rep, str):
            for k in samples:
                samples[k].append(rep[k])
    lo_q, hi_q = 100 * (1 - level) / 2, 100 * (1 + level) / 2
    out["bootstrap"]["defined"] = {k: len(v) for k, v in samples.items()}
    for k, vals in samples.items():
        if 2 * len(vals) < bootstrap:
            out[f"{k}_ci"] = (f"unavailable: the correlation is undefined (constant rates) in "
                              f"{bootstrap - len(vals)} of {bootstrap} bootstrap replicates")
        else:
            out[f"{k}_ci"] = (float(np.percentile(vals, lo_q)), float(np.percentile(vals, hi_q)))
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
