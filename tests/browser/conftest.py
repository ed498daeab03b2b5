"""The browser fixtures of every test here: one headless Chromium per module (Playwright),
the example workflows' settings, and new pages that fail the test on any script error.
Skipped only off CI when Chromium or Playwright is missing; with ``CI=true`` a missing
browser fails the run."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from app.settings import Settings, load_settings
from support.browser import WAIT_MS

try:
    from playwright.sync_api import Browser, Page, sync_playwright
except ImportError:  # checked by the browser fixture, which skips or fails
    sync_playwright = None

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
#: Records every change of a node's data-status (the value it left), to prove that nodes
#: light up one step at a time.
RECORD_STATUSES = """
window.__statuses = [];
new MutationObserver((records) => {
  for (const r of records) {
    const t = r.target;
    if (t.dataset && t.dataset.testid === "node") {
      window.__statuses.push([t.dataset.nodeName, r.oldValue]);
    }
  }
}).observe(document, {
  subtree: true, attributes: true, attributeOldValue: true, attributeFilter: ["data-status"],
});
"""


def _executable() -> Path | None:
    if CHROMIUM.exists():
        return CHROMIUM
    found = shutil.which("chromium")
    return Path(found) if found else None


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = _executable()
    missing = [
        name
        for name, absent in (("chromium", executable is None), ("playwright", not sync_playwright))
        if absent
    ]
    if missing:
        message = f"{' and '.join(missing)} missing: run scripts/setup"
        if os.environ.get("CI") == "true":
            pytest.fail(f"browser tests must run in CI, but {message}", pytrace=False)
        pytest.skip(message)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(executable), args=CHROMIUM_ARGS, timeout=WAIT_MS
        )
        yield chromium
        chromium.close()


@pytest.fixture
def examples(tmp_path: Path) -> Settings:
    return load_settings({"data_dir": tmp_path, "load_examples": True}, environ={})


@pytest.fixture
def open_page(browser: Browser) -> Iterator[Callable[..., Page]]:
    """New pages (each in its own context) that fail the test on any script error."""
    contexts = []
    errors: list[str] = []

    def open_(*, init_scripts: tuple[str, ...] = ()) -> Page:
        context = browser.new_context(viewport={"width": 1440, "height": 900})
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        page.on("pageerror", lambda error: errors.append(str(error)))
        for script in (RECORD_STATUSES, *init_scripts):
            page.add_init_script(script)
        return page

    yield open_
    for context in contexts:
        context.close()
    assert not errors, errors
