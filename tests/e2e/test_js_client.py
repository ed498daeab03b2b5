"""The JavaScript client package (clients/js): its generated types are current, its
declarations and example type-check with the pinned TypeScript, and ``npm pack`` ships it.
Its behaviour in a browser is tested in tests/browser/test_js_client_browser.py."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from app.http.typescript import typescript
from support.npm import installed

ROOT = Path(__file__).resolve().parents[2]
CLIENT = ROOT / "clients" / "js"


def test_the_generated_types_are_current() -> None:
    assert (CLIENT / "schemas.d.ts").read_text() == typescript(), (
        "clients/js/schemas.d.ts is stale: run .venv/bin/python -m app.http.typescript > "
        "clients/js/schemas.d.ts"
    )


def test_the_declarations_and_the_example_type_check() -> None:
    done = subprocess.run(
        [installed(".bin/tsc"), "-p", CLIENT / "tsconfig.json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_type_error_in_the_example_is_caught(tmp_path: Path) -> None:
    tsc = installed(".bin/tsc")
    for name in ("graphpush.d.ts", "schemas.d.ts", "tsconfig.json"):
        shutil.copy(CLIENT / name, tmp_path / name)
    broken = (CLIENT / "example.js").read_text().replace("data.nodeName", "data.nodeNam")
    (tmp_path / "example.js").write_text(broken)
    done = subprocess.run(
        [tsc, "-p", tmp_path / "tsconfig.json"], capture_output=True, text=True, timeout=120
    )
    assert "Property 'nodeNam' does not exist" in done.stdout, done.stdout + done.stderr


def test_npm_pack_ships_the_module_its_types_and_readme() -> None:
    installed(".bin/tsc")  # npm is there: scripts/setup installed with it
    done = subprocess.run(
        ["npm", "pack", "--dry-run", "--json"],
        cwd=CLIENT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    files = {entry["path"] for entry in json.loads(done.stdout)[0]["files"]}
    expected = {"graphpush.js", "graphpush.d.ts", "push.js", "schemas.d.ts", "README.md"}
    assert files == expected | {"package.json"}


def test_the_readme_example_is_the_type_checked_one() -> None:
    assert (CLIENT / "example.js").read_text() in (CLIENT / "README.md").read_text()
