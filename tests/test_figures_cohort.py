"""Tests of figures/cohort.py: the Meta Fusion cohort figures from explicit arrays and a run."""
import json
import os

import numpy as np
import pytest

from metafusion_jax.figures import cohort
from reliability import bad_input

DIMS = [[8, 4], [8, 0], [2, 4], [2, 0], [0, 4]]


def fake_run(workdir):
    results = {
        "metric": "mse", "weights": [[0.5, 0.0, 0.5, 0.0, 0.0], [0.3, 0.3, 0.0, 0.0, 0.4]],
        "best_cluster": [[0, 2], [0, 1, 4]],
        "members": {"dims": DIMS, "rho_star": {
            "test": [[1.0, 2.0, 3.0, 4.0, 5.0], [3.0, 2.0, 1.0, 0.0, 1.0]],
            "greedy_members": [[0, 2, 0], [4]]}},
    }
    with open(os.path.join(workdir, "results.json"), "w", encoding="utf-8") as f:
        json.dump(results, f)
    with open(os.path.join(workdir, "metrics.jsonl"), "w", encoding="utf-8") as f:
        for stage, rho, base in (("indep", "0", 1), ("mutual", "0.5", 4), ("baselines", "0", 7)):
            for epoch in range(3):
                row = {"step": base + epoch, "time": 0.0, f"{stage}/rho_{rho}/val_task_mean": 1.0}
                row.update({f"{stage}/rho_{rho}/val_task/member_{m:02d}": 2.0 - 0.1 * epoch + m
                            for m in range(5)})
                f.write(json.dumps(row) + "\n")


def test_draw_metafusion_figures_writes_four_pngs(tmp_path):
    fake_run(tmp_path)
    drawn = cohort.draw_metafusion_figures(str(tmp_path))
    assert sorted(drawn) == ["divergence_weights", "greedy_picks", "member_grid",
                             "val_loss_per_rho"]
    for path in drawn.values():
        assert os.path.dirname(path) == str(tmp_path / "figures")
        assert os.path.getsize(path) > 10_000


def test_results_dict_instead_of_the_file(tmp_path):
    fake_run(tmp_path)
    with open(tmp_path / "results.json", encoding="utf-8") as f:
        results = json.load(f)
    os.remove(tmp_path / "results.json")  # the trainer draws before it writes the file
    drawn = cohort.draw_metafusion_figures(str(tmp_path), results=results)
    assert len(drawn) == 4 and all(os.path.isfile(p) for p in drawn.values())


def test_member_curves_keep_the_cohort_stages_only(tmp_path):
    fake_run(tmp_path)
    from metafusion_jax.figures import curves
    found = cohort.member_curves(curves.read_metrics(str(tmp_path / "metrics.jsonl")))
    assert sorted(found) == [("indep", "0"), ("mutual", "0.5")]  # baselines' models excluded
    steps, values = found[("mutual", "0.5")][3]
    np.testing.assert_array_equal(steps, [4, 5, 6])
    np.testing.assert_allclose(values, [5.0, 4.9, 4.8])


def test_greedy_picks_count_repeats(tmp_path, monkeypatch):
    seen = {}

    def fake_bar(self, x, height, **kwargs):
        seen["counts"] = list(height)
        return original(self, x, height, **kwargs)

    from matplotlib.axes import Axes
    original = Axes.bar
    monkeypatch.setattr(Axes, "bar", fake_bar)
    cohort.plot_greedy_picks([[0, 2, 0], [4]], 5, str(tmp_path / "g.png"))
    assert seen["counts"] == [2, 0, 1, 0, 1]


def test_bad_cohort_inputs(tmp_path):
    with bad_input("figures: Meta Fusion figures of an unfinished run (no results.json)",
                   match="has not finished"):
        cohort.draw_metafusion_figures(str(tmp_path))
    (tmp_path / "results.json").write_text(json.dumps({"metric": "mse"}))
    with bad_input("figures: a results.json without the cohort fields", match="lacks the field"):
        cohort.draw_metafusion_figures(str(tmp_path))
    with bad_input("figures: per-rho curves from a log without member tags",
                   match="no per-member validation curves"):
        cohort.plot_val_loss_per_rho({"train/loss": (np.arange(2), np.ones(2))},
                                     str(tmp_path / "x.png"))
    with bad_input("figures: divergence weights and dims of different member counts",
                   match="dims has 2 members"):
        cohort.plot_divergence_weights([[0.5, 0.5, 0.0]], [[0]], DIMS[:2], str(tmp_path / "w.png"))
