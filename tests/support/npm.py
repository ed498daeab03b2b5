"""What ``scripts/setup`` installs from npm (``package-lock.json`` at the repository root):
tests that need it skip where it is missing (no npm there), except on CI, where they fail."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

import pytest

NODE_MODULES: Final = Path(__file__).resolve().parents[2] / "node_modules"


def installed(relative: str) -> Path:
    """``node_modules/<relative>``; skips the calling test when it is missing (fails on CI)."""
    path = NODE_MODULES / relative
    if path.exists():
        return path
    message = f"node_modules/{relative} is missing: run scripts/setup (it needs npm)"
    if os.environ.get("CI") == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)
