"""`tools/dev.py demo` keeps working: every example workflow runs and the comparison sheet is drawn."""

from __future__ import annotations

import demo
from PIL import Image
from workflow_api import combo_options


def test_demo_prepares_every_workflow_for_the_tiny_models(server):
    """Every model file is swapped for a fixture and every schedule cut (tests/e2e/test_workflows.py runs
    them all; here one runs through the demo's own path)."""
    demo.write_input_image(server.base_dir)
    info = server.object_info()
    workflows = [
        p for p in sorted((demo.REPO_ROOT / "workflows").glob("*.json")) if demo.runs_on_tiny_models(p)
    ]
    for path in workflows:
        api, _ = demo.prepare_workflow(path, info)
        for node in api.values():
            for name, value in node["inputs"].items():
                options = combo_options(info, node["class_type"], name)
                assert options is None or isinstance(value, list) or value in options, (
                    path.name,
                    name,
                    value,
                )
            assert node["inputs"].get("steps", 0) <= demo.MAX_STEPS


def test_demo_runs_a_workflow(server, tmp_path):
    demo.write_input_image(server.base_dir)
    first = sorted((demo.REPO_ROOT / "workflows").glob("*.json"))[:1]
    assert first, "no example workflows in workflows/"
    written = demo.run_workflows(server, first, tmp_path, log=print, max_side=64, max_steps=3)
    assert any(Image.open(p).size == (64, 64) for p in written)  # (others: e.g. a diagnostics plot)


def test_comparison_sheet_has_every_row_and_column(server, tmp_path):
    sheet = demo.make_comparison(server, tmp_path, log=print)
    width, height = Image.open(sheet).size
    tile = demo.SHEET_SIZE * demo.TILE_SCALE
    assert width > len(demo.COLUMNS) * tile and height > len(demo.PAIR_ROWS) * tile
    assert "W2SDKSampler" in server.object_info(), "the sheet's W2SD columns need the pack's nodes"
