"""benchmarks/learned.py's rows files: what a run writes is enough to redraw its tables. No ComfyUI.

Two fake rows (held-out digits and their noisier copies, judged like samples) go through rows_json and
load_rows; every figure and paired interval recomputed from the file must match the one computed from the
samples themselves.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import judges  # noqa: E402
import learned  # noqa: E402

ROUNDS = 40


def _result(judge: learned.Judge, name: str, digits: np.ndarray, classes: np.ndarray) -> learned.Result:
    values = {
        "digits": digits,
        "pred": judges.predict(digits),
        "nn_distance": np.array([judges.nearest_neighbour_distance(d[None]) for d in digits]),
        "out_of_range": (digits > 0.9).reshape(len(digits), -1).mean(1),
    }
    metrics = ["minority_share", *learned.QUALITY]
    stats = {m: judge.stat(m, values, classes) for m in metrics}
    figures = {m: learned.bootstrap(f, len(digits), ROUNDS) for m, f in stats.items()}
    setting = {"node": "KSampler", "sampler_name": "euler", "scheduler": "simple", "steps": 10, "cfg": 1.0}
    return learned.Result(
        "checkpoints", "euler", name, name, 10, len(digits), 1.0, figures, digits[:4], "minority_share",
        stats, setting=setting, per_sample={**values, "classes": classes},
    )  # fmt: skip


def test_rows_file_recomputes_every_figure(tmp_path):
    judge = learned.Judge(stand_in=False, minority=(0, 1, 2, 3, 4))
    real = judges.load_digits().test_x[:60]
    noisy = np.clip(real + np.random.default_rng(0).normal(0, 0.2, real.shape), 0, 1).astype(np.float32)
    classes = np.full(len(real), -1)
    stock = _result(judge, "stock", real, classes)
    other = _result(judge, "other", noisy, classes)
    for m in ("minority_share", "frechet"):
        other.delta[m] = learned.paired_difference(other.stats[m], stock.stats[m], len(real), ROUNDS)

    path = tmp_path / "rows.json"
    meta = {
        "run": "test",
        "machine": "test",
        "comfyui": "none",
        "command": "none",
        "minority": [0, 1, 2, 3, 4],
    }
    path.write_text(json.dumps(learned.rows_json([stock, other], meta)))
    loaded = learned.load_rows([path], ROUNDS)

    assert [r.row for r in loaded] == ["stock", "other"]
    assert loaded[1].setting == other.setting and loaded[1].nfe == 10
    for before, after in zip((stock, other), loaded, strict=True):
        for m, f in before.figures.items():
            # Digits are stored to 1e-4: the Frechet distance moves in its fourth decimal at most.
            tol = 5e-3 if m == "frechet" else 1e-6
            assert abs(after.figures[m].value - f.value) < tol, (m, after.figures[m], f)
            assert abs(after.figures[m].low - f.low) < tol and abs(after.figures[m].high - f.high) < tol
    for m, d in other.delta.items():
        got = loaded[1].delta[m]
        assert abs(got.value - d.value) < 5e-3 and abs(got.low - d.low) < 5e-3, (m, got, d)
    assert other.figures["frechet"].value > stock.figures["frechet"].value + 0.5  # the rows do differ


def test_tradeoff_figure_draws_stock_curves_and_settings_as_points(tmp_path):
    import tradeoff

    judge = learned.Judge(stand_in=False, minority=(0, 1, 2, 3, 4))
    real = judges.load_digits().test_x[:40]
    classes = np.full(len(real), -1)
    rows = [_result(judge, name, real, classes) for name in ("stock", "stock_nfe", "cfg_2", "w2sd")]
    rows[1].nfe, rows[2].setting = 25, {**rows[2].setting, "cfg": 2.0}
    path = tmp_path / "rows.json"
    meta = {"run": "t", "machine": "t", "comfyui": "none", "command": "none", "minority": [0, 1, 2, 3, 4]}
    path.write_text(json.dumps({**learned.rows_json(rows, meta), "steps": 10}))

    grouped = tradeoff.groups([path], ROUNDS)
    assert list(grouped) == [("flow", "checkpoints", "euler", 10)]
    curves = tradeoff.stock_curves(grouped[("flow", "checkpoints", "euler", 10)])
    assert [r.row for r in curves["stock, more steps"]] == ["stock", "stock_nfe"]  # sorted by NFE
    assert [r.row for r in curves["stock, CFG sweep"]] == ["stock", "cfg_2"]  # sorted by cfg
    assert [r.row for r in tradeoff.points(grouped[("flow", "checkpoints", "euler", 10)])] == ["w2sd"]

    out = tmp_path / "tradeoff.png"
    assert tradeoff.main([str(path), "--out", str(out), "--bootstrap", str(ROUNDS)]) == 0
    assert out.stat().st_size > 10_000  # a drawn figure, not an empty canvas
