"""Trade-off figures from the learned benchmark's rows files: the claim, drawn, without sampling again.

    .venv/bin/python benchmarks/tradeoff.py benchmarks/results/learned_rows/<run>.json [...] --out fig.png

Per pair, sampler and step count (one line of panels each): the target (share of digits 0-4, or prompt
accuracy) against the model evaluations per sample (NFE), and against the Frechet distance to real digits
(quality, lower is better). Stock KSampler rows are curves: more steps (stock, stock at equal NFE, 1.5x,
2x) and the CFG sweep; every other row (W2SD settings, other guiders) is a point with its 95% interval,
recomputed from the stored samples with scipy's BCa bootstrap (benchmarks/common/intervals.py). A setting
beats stock when its point lies above both stock curves in the left panel and above-left of them in the
right. Rows files from several runs combine when they share pair, sampler and steps (same seeds: compare
paired differences in the tables, not here). matplotlib is a dev tool (`tools/dev.py setup`), not a pack
dependency.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "benchmarks"), str(ROOT / "tools"), str(ROOT / "tests")]

import learned  # noqa: E402
from common.intervals import Figure  # noqa: E402

FAMILY_NAMES = {"flow": "flow MMDiTs", "eps": "EPS UNets", "v": "v UNets"}
STEP_ROWS = ("stock", "stock_nfe", "stock_nfe_defaults", "stock_15x", "stock_2x")
"""Stock rows that differ from `stock` in their step count only: the curve 'stock, more steps'."""


def groups(
    paths: list[Path], rounds: int, pairs: set[str] | None = None
) -> dict[tuple[str, str, str, int], list[learned.Result]]:
    """The rows of every file by (family, pair, sampler, steps), figures recomputed from the samples (only
    of `pairs` when given -- each a pair key, or family/pair -- since the bootstrap is most of the time)."""
    out: dict[tuple[str, str, str, int], list[learned.Result]] = defaultdict(list)
    names = None if pairs is None else {p.split("/")[-1] for p in pairs}
    for path in paths:
        data = json.loads(Path(path).read_text())
        family = data.get("family", "flow")
        for r in learned.load_rows([path], rounds, pairs=names):
            if pairs is None or r.pair in pairs or f"{family}/{r.pair}" in pairs:
                out[(family, r.pair, r.sampler, data["steps"])].append(r)
    return out


def stock_curves(rows: list[learned.Result]) -> dict[str, list[learned.Result]]:
    """'more steps' and 'CFG sweep' curves (each through the plain stock row), sorted along their axis."""
    by_name = {r.row: r for r in rows}
    steps = sorted((by_name[n] for n in STEP_ROWS if n in by_name), key=lambda r: r.nfe)
    cfgs = [r for r in rows if r.row.startswith("cfg_")] + ([by_name["stock"]] if "stock" in by_name else [])
    cfgs.sort(key=lambda r: float(r.setting.get("cfg", 0)))
    return {"stock, more steps": steps, "stock, CFG sweep": cfgs}


def points(rows: list[learned.Result]) -> list[learned.Result]:
    """The rows drawn as points, each once (rows files of one cell may repeat a row)."""
    seen: dict[str, learned.Result] = {}
    for r in rows:
        if r.row not in STEP_ROWS and not r.row.startswith("cfg_"):
            seen.setdefault(r.row, r)
    return list(seen.values())


def marker(row: str) -> str:
    """W2SD's settings round, the core's DualModelGuider triangles, ComfyUI-AutoGuidance diamonds."""
    return "^" if row.startswith("dmg") else "D" if row.startswith("ag") else "o"


def _point(ax: Any, x: float, y: Figure, xerr: Figure | None, **style: Any) -> None:
    """A row's point with its intervals drawn as lines (a BCa interval need not contain its point)."""
    ax.plot([x], [y.value], linestyle="none", **style)
    ax.vlines(x, y.low, y.high, color=style["color"])
    if xerr is not None:
        ax.hlines(y.value, xerr.low, xerr.high, color=style["color"])


def draw(grouped: dict[tuple[str, str, str, int], list[learned.Result]], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = sorted(grouped)
    fig, axes = plt.subplots(len(keys), 2, figsize=(11, 4.2 * len(keys)), squeeze=False)
    colours = plt.get_cmap("tab20").colors
    for (family, pair, sampler, steps), (ax_nfe, ax_q) in zip(keys, axes, strict=True):
        rows = grouped[(family, pair, sampler, steps)]
        metric = rows[0].metric
        for (name, curve), style in zip(stock_curves(rows).items(), ("-", "--"), strict=True):
            if len(curve) < 1:
                continue
            kw = {"color": "0.35", "linestyle": style, "marker": "s", "label": name}
            ax_nfe.plot([r.nfe for r in curve], [r.target.value for r in curve], **kw)
            ax_q.plot([r.quality.value for r in curve], [r.target.value for r in curve], **kw)
            for r in curve:  # the stock rows' own intervals, lighter
                ax_nfe.vlines(r.nfe, r.target.low, r.target.high, color="0.7")
        for i, r in enumerate(points(rows)):
            style = {"color": colours[i % len(colours)], "marker": marker(r.row), "label": r.label}
            _point(ax_nfe, r.nfe, r.target, None, **style)
            _point(ax_q, r.quality.value, r.target, r.quality, **style)
        title = f"{FAMILY_NAMES.get(family, family)}: {pair}, {sampler}, {steps} steps"
        ax_nfe.set(title=title, xlabel="model evaluations per sample (NFE)", ylabel=metric)
        ax_q.set(title=title, xlabel="Frechet distance to real digits (lower is better)", ylabel=metric)
        for ax in (ax_nfe, ax_q):
            ax.grid(alpha=0.3)
        ax_q.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.suptitle("W2SD against stock's trade-off (95% BCa bootstrap intervals over the seeds)", y=1.0)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110, bbox_inches="tight")
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("rows", type=Path, nargs="+", help="rows files written by benchmarks/learned.py")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "tradeoff.png")
    p.add_argument("--bootstrap", type=int, default=learned.BOOTSTRAP, help="bootstrap rounds per interval")
    p.add_argument(
        "--pairs",
        default=None,
        help="comma list of pair keys (or family/pair, e.g. eps/cfg) to draw (default: all)",
    )
    args = p.parse_args(argv)
    grouped = groups(args.rows, args.bootstrap, set(args.pairs.split(",")) if args.pairs else None)
    if not grouped:
        p.error("no rows to draw")
    draw(grouped, args.out)
    print(f"wrote {args.out} ({len(grouped)} panels' lines)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
