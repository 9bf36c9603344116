"""The robust-loss study: squared against absolute error with outliers in the training targets
(TECHNIQUES.md section 12)."""

from __future__ import annotations

from reglab.lab.study.chapters.spec import ArmSpec, section
from reglab.lab.study.claims import Claim, Evidence, paired_finding

FRACTIONS = [0.0, 0.05, 0.1, 0.2]
LOSSES_COMPARED = ["mse", "mae", "huber"]


def _robust_name(loss: str, fraction: float) -> str:
    return f"{loss}-{fraction:g}"


ARMS = {
    _robust_name(loss, f): ArmSpec(
        f"{loss} loss, {f:.0%} of the training targets moved by 10 standard deviations",
        {"training.loss": loss, "data.outliers": f},
        versus=_robust_name(loss, 0.0),
    )
    for loss in LOSSES_COMPARED
    for f in FRACTIONS
}


def _robust_growth(evidence: Evidence):
    from reglab.lab.study.claims import INCONCLUSIVE, Finding

    top = max(FRACTIONS)
    names = {loss: (_robust_name(loss, 0.0), _robust_name(loss, top)) for loss in ("mse", "mae")}
    missing = evidence.lacking(*[a for pair in names.values() for a in pair])
    if missing:
        return Finding(INCONCLUSIVE, f"no finished trial of {missing}", {}, "run the study")
    growth = {}
    for loss, (clean, dirty) in names.items():
        a, b = evidence.values(dirty, "test_rmse"), evidence.values(clean, "test_rmse")
        growth[loss] = {s: a[s] - b[s] for s in a if s in b}
    rows = [{"arm": f"{loss}-growth", "seed": s, "diagnosis": {}, "g": v} for loss, g in growth.items()
            for s, v in g.items()]  # fmt: skip
    found = paired_finding(Evidence(evidence.plan, rows), "mae-growth", "mse-growth", "g", lower=True,
                           label=f"growth of the clean test RMSE from 0% to {top:.0%} outliers")  # fmt: skip
    return found


CLAIMS = (
    Claim(
        "mae-robust-to-outliers",
        "MAE is robust to outliers, MSE is pulled by them: with outliers in the training targets, the absolute-error "
        "fit degrades less than the squared-error fit.",
        f"Per seed, the growth of the test RMSE (on clean targets) from 0% to {max(FRACTIONS):.0%} outliers, the MAE "
        "arms against the MSE arms (paired t-test): holds if MAE's growth is lower with p < 0.05, does not hold if "
        "higher with p < 0.05.",
        _robust_growth,
    ),
)


def figures(evidence: Evidence) -> list[str]:
    from reglab.lab.study import figures, teaching

    series = {loss: [_robust_name(loss, f) for f in FRACTIONS] for loss in LOSSES_COMPARED}
    return [
        *section(
            "Clean test error against the share of outliers",
            figures.outlier_curves(evidence.groups, series),
            "test RMSE against outlier fraction per loss",
            "The test RMSE on clean targets (mean ± std over seeds) of each training loss as a growing share of the "
            "training targets is moved by 10 standard deviations. A robust loss stays flat.",
        ),
        *section(
            "A line fitted through outliers",
            teaching.robust_line_png(),
            "lines fitted by MSE, MAE and Huber through data with outliers",
            "A 1-D linear regression, 20% of the targets moved up (orange crosses), fitted with reglab's Adam under "
            "each loss: the MSE line is pulled towards the outliers, the MAE and Huber lines follow the clean points.",
        ),
    ]
