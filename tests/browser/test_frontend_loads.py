"""Smoke test of the browser layer: ComfyUI's frontend opens in headless Chromium against the test server."""

from __future__ import annotations

from pathlib import Path


def test_frontend_loads_and_draws_the_canvas(server, chromium_browser, tmp_path: Path) -> None:
    page = chromium_browser.new_page(viewport={"width": 1280, "height": 800})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto(server.url)
        page.wait_for_selector("canvas#graph-canvas", timeout=90_000)
        page.wait_for_function("() => window.app && window.app.graph", timeout=90_000)
        node_types = page.evaluate("() => Object.keys(LiteGraph.registered_node_types)")
        assert "KSampler" in node_types and "CheckpointLoaderSimple" in node_types
        shot = tmp_path / "frontend.png"
        page.screenshot(path=str(shot))
        assert shot.stat().st_size > 10_000
    finally:
        page.close()
    assert not errors, f"JavaScript errors on the page: {errors}\n--- server log ---\n{server.log_tail()}"
