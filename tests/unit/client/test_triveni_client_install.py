"""`pip install ./clients` into a fresh virtualenv gives a working, typed `triveni` package."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


def _run(*args: str | Path, cwd: Path) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    result = subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, f"{args}\n{result.stdout}\n{result.stderr}"
    return result.stdout


# About 8 s with a warm pip cache, so not marked `slow` (the marker is registered in conftest
# for anything that takes more than ~20 s); the timeout allows for a cold cache.
@pytest.mark.timeout(900)
def test_pip_install_clients_into_a_fresh_venv(tmp_path: Path) -> None:
    # Install from a copy so the build never writes build/ or *.egg-info into the shared tree.
    source = tmp_path / "clients"
    shutil.copytree(
        REPO / "clients",
        source,
        ignore=shutil.ignore_patterns("*.egg-info", "build", "dist", "__pycache__"),
    )
    venv.create(tmp_path / "venv", with_pip=True)
    python = tmp_path / "venv" / ("Scripts" if sys.platform == "win32" else "bin") / "python"

    _run(python, "-m", "pip", "install", "--quiet", str(source), cwd=tmp_path)

    printed = _run(
        python,
        "-c",
        "import triveni, triveni.aio, triveni.webhooks, pathlib; print(triveni.__all__);"
        " root = pathlib.Path(triveni.__file__).parent; print(root);"
        " print((root / 'py.typed').exists(), (root / 'v1' / 'common_pb2.pyi').exists())",
        cwd=tmp_path,
    ).splitlines()
    assert "'Client'" in printed[0]
    assert "'AsyncClient'" in printed[0]
    assert printed[1].startswith(str(tmp_path / "venv"))  # the installed copy, not the tree
    assert printed[2] == "True True"

    usage = _run(python, REPO / "clients" / "examples" / "create_payment.py", "--help", cwd=REPO)
    assert "TRIVENI_API_KEY" not in usage
    assert usage.startswith("usage: create_payment.py")
