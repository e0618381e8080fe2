"""Tests of figures/curves.py: metrics.jsonl reading and the training-curve PNG."""
import json
import os

import numpy as np
import pytest

from metafusion_jax.figures import curves
from reliability import bad_input

MIN_PNG_BYTES = 8_000  # a blank 9x3.4 inch figure is ~5 kB; two panels with curves are more


def write_log(path, rows):
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


def fake_run(workdir):
    rows = []
    for epoch in range(1, 7):
        rows.append({"step": 3 * epoch, "time": 0.0, "train/loss": 0.7 / epoch})
        if epoch % 2 == 0:
            rows.append({"step": 3 * epoch, "time": 0.0, "val/recall@20": 0.1 * epoch - 0.01 *
                         epoch ** 2})
    write_log(os.path.join(workdir, "metrics.jsonl"), rows)


def test_read_metrics_collects_each_tag(tmp_path):
    fake_run(tmp_path)
    scalars = curves.read_metrics(str(tmp_path / "metrics.jsonl"))
    assert sorted(scalars) == ["train/loss", "val/recall@20"]
    steps, loss = scalars["train/loss"]
    np.testing.assert_array_equal(steps, [3, 6, 9, 12, 15, 18])
    np.testing.assert_allclose(loss, [0.7 / e for e in range(1, 7)])
    steps, val = scalars["val/recall@20"]
    np.testing.assert_array_equal(steps, [6, 12, 18])
    np.testing.assert_allclose(val, [0.16, 0.24, 0.24])


def test_draw_metammf_curves_writes_a_png(tmp_path):
    fake_run(tmp_path)
    path = curves.draw_metammf_curves(str(tmp_path), title="fake")
    assert path == str(tmp_path / "figures" / "training_curves.png")
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert os.path.getsize(path) > MIN_PNG_BYTES


def test_bad_metric_logs(tmp_path):
    with bad_input("figures: training curves of a workdir without metrics.jsonl",
                   match="no metrics log"):
        curves.read_metrics(str(tmp_path / "metrics.jsonl"))
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "train/loss": 1.0}\nnot json\n')
    with bad_input("figures: a metrics.jsonl line that is not JSON", match="line 2 is not JSON"):
        curves.read_metrics(str(tmp_path / "metrics.jsonl"))
    write_log(tmp_path / "metrics.jsonl", [{"step": 1, "train/loss": 1.0}])
    with bad_input("figures: training curves without a val/recall@20 tag",
                   match="no 'val/recall@20'"):
        curves.draw_metammf_curves(str(tmp_path))
