"""n8n's published TypeScript types, checked from Python: the pinned npm project
``tests/contracts/n8n-types`` (installed by ``scripts/setup``), a generated module of typed
constants, one ``tsc`` run on it, and the real ``flatted`` parser."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

NPM_PROJECT = Path(__file__).resolve().parents[1] / "contracts" / "n8n-types"
#: Where ``scripts/setup`` copies the lock it installed.
INSTALLED_LOCK = NPM_PROJECT / "node_modules" / ".installed-lock.json"


def toolchain() -> tuple[str, Path]:
    """``node`` and ``tsc`` of the installed npm project. Skips the calling test when either
    is missing or the install is not of the committed lock; on CI (``CI=true``) fails."""
    node = shutil.which("node")
    lock = (NPM_PROJECT / "package-lock.json").read_bytes()
    if node is None:
        problem = "node is not installed"
    elif not INSTALLED_LOCK.is_file() or INSTALLED_LOCK.read_bytes() != lock:
        problem = f"{NPM_PROJECT} is not installed or out of date: run scripts/setup"
    else:
        return node, NPM_PROJECT / "node_modules" / "typescript" / "bin" / "tsc"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{problem} (CI=true: the n8n type contract must run)", pytrace=False)
    pytest.skip(problem)


class Module:
    """A TypeScript module of constants typed by ``n8n-types/wire.ts``, one per line (so
    an ``@ts-expect-error`` above one covers all of it), each known by its line for tsc's
    report."""

    def __init__(self) -> None:
        wire = json.dumps(str(NPM_PROJECT / "wire"))
        self.lines = [f"import type {{ Push, RunData }} from {wire};"]
        self.names: dict[int, str] = {}

    def push(self, name: str, message: dict[str, Any], broken: str | None = None) -> None:
        """``message`` as n8n's push message of its ``type`` (the wire form)."""
        self.add(name, f"Push[{json.dumps(message['type'])}]", message, broken)

    def add(self, name: str, type_: str, value: Any, broken: str | None = None) -> None:
        """``value`` as ``type_``; with ``broken`` (why), tsc must reject it."""
        name = re.sub(r"\W", "_", name)
        if broken is not None:
            self.lines.append(f"// @ts-expect-error: {broken}")
            self.names[len(self.lines)] = f"{name} (broken on purpose, yet accepted)"
        self.lines.append(f"export const {name}: {type_} = {json.dumps(value)};")
        self.names[len(self.lines)] = name

    def typecheck(self, node: str, tsc: Path, directory: Path) -> str:
        """Write the module to ``directory`` and run ``tsc --noEmit --strict`` on it once:
        tsc's report, empty when it accepts the module, each place named by its constant."""
        source = directory / "messages.ts"
        source.write_text("\n".join(self.lines) + "\n")
        config = directory / "tsconfig.json"
        base = str(NPM_PROJECT / "tsconfig.json")
        config.write_text(json.dumps({"extends": base, "files": [source.name]}))
        command = [node, str(tsc), "-p", str(config), "--noEmit", "--strict", "--pretty", "false"]
        done = subprocess.run(
            command, cwd=directory, capture_output=True, text=True, timeout=150, check=False
        )
        report = (done.stdout + done.stderr).strip()
        assert report or done.returncode == 0, f"tsc exited {done.returncode} saying nothing"
        return re.sub(
            r"^messages\.ts\((\d+),\d+\)",
            lambda place: f"{place[0]} {self.names.get(int(place[1]), '')}",
            "\n".join(line[:400] for line in report.splitlines()),
            flags=re.MULTILINE,
        )


def parse_flatted(node: str, texts: list[str]) -> list[Any]:
    """Each ``flatted`` text parsed by the ``flatted`` package n8n uses."""
    command = [node, str(NPM_PROJECT / "parse-flatted.mjs")]
    done = subprocess.run(
        command, input=json.dumps(texts), capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    parsed: list[Any] = json.loads(done.stdout)
    return parsed


def broken_copy(value: Any, path: str, replacement: Any) -> Any:
    """A copy of ``value`` with the field at ``path`` (``a.0.b``) replaced, or deleted when
    ``replacement`` is ``...``."""
    broken = copy.deepcopy(value)
    *parents, last = path.split(".")
    target = broken
    for key in parents:
        target = target[int(key)] if isinstance(target, list) else target[key]
    if replacement is ...:
        del target[last]
    else:
        target[last] = replacement
    return broken
