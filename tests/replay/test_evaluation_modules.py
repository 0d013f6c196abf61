"""evaluation.py is split into batch running (batch), statistics and plots; the old import path
kinema4d_core.evaluation still names the same objects (other branches import from it)."""

import kinema4d_core.batch as batch
import kinema4d_core.evaluation as evaluation
import kinema4d_core.plots as plots
import kinema4d_core.statistics as statistics


def test_old_names_are_the_new_modules_objects():
    for module, names in ((batch, ("Job", "run_batch", "read_marker", "write_batch_report", "MARKER", "REPORT")),
                          (statistics, ("wilson_interval", "Outcome", "success_table", "policy_correlation",
                                        "table_markdown", "outcomes_to_json")),
                          (plots, ("bar_chart_png", "PALETTE"))):
        for name in names:
            assert getattr(evaluation, name) is getattr(module, name), name


def test_statistics_and_plots_do_not_need_the_evaluation_pipeline():
    import subprocess
    import sys

    code = ("import sys, kinema4d_core.statistics, kinema4d_core.plots, kinema4d_core.batch; "
            "print(any(m in sys.modules for m in ('kinema4d_core.evaluation', 'kinema4d_core.service', "
            "'kinema4d_core.backends')))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "False"
