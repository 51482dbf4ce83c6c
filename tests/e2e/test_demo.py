"""`tools/dev.py demo` keeps working: every example workflow runs and the comparison sheet is drawn."""

from __future__ import annotations

import demo
from PIL import Image


def test_every_example_workflow_runs_on_the_tiny_models(server, tmp_path):
    demo.write_input_image(server.base_dir)
    workflows = sorted((demo.REPO_ROOT / "workflows").glob("*.json"))
    written = demo.run_workflows(server, workflows, tmp_path, log=print)
    assert len(written) >= len(workflows)


def test_comparison_sheet_has_every_row_and_column(server, tmp_path):
    sheet = demo.make_comparison(server, tmp_path, log=print)
    width, height = Image.open(sheet).size
    tile = demo.SHEET_SIZE * demo.TILE_SCALE
    assert width > len(demo.COLUMNS) * tile and height > len(demo.PAIR_ROWS) * tile
    assert "W2SDKSampler" in server.object_info(), "the sheet's W2SD columns need the pack's nodes"
