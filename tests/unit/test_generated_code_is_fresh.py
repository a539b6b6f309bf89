"""The committed protobuf/gRPC code is exactly what scripts/gen-proto produces from proto/."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
COMMITTED = REPO_ROOT / "clients" / "triveni" / "v1"
PROTOS = sorted((REPO_ROOT / "proto" / "triveni" / "v1").glob("*.proto"))

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("grpc_tools") is None,
    reason="grpc_tools (grpcio-tools, a dev dependency) is not installed, so the code cannot "
           "be regenerated to compare")


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Run scripts/gen-proto into a fresh directory; returns its triveni/v1 folder."""
    out = tmp_path_factory.mktemp("gen-proto")
    result = subprocess.run(
        [str(REPO_ROOT / "scripts" / "gen-proto"), str(out)],
        env={**os.environ, "PYTHON": sys.executable}, capture_output=True, text=True,
        timeout=120, check=False)
    assert result.returncode == 0, f"scripts/gen-proto failed:\n{result.stderr}"
    return out / "triveni" / "v1"


def files_in(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir() if p.is_file()}


def test_there_are_protos_to_generate() -> None:
    assert [p.name for p in PROTOS] != []


def test_generation_writes_messages_services_and_stubs_for_every_proto(generated: Path) -> None:
    expected = {f"{p.stem}{suffix}" for p in PROTOS
                for suffix in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py", "_pb2_grpc.pyi")}
    assert expected <= files_in(generated)


def test_every_generated_file_is_committed(generated: Path) -> None:
    missing = sorted(files_in(generated) - files_in(COMMITTED))
    assert missing == [], f"run scripts/gen-proto and commit: {missing}"


def test_committed_generated_files_are_byte_identical_to_a_regeneration(
        generated: Path) -> None:
    stale = sorted(name for name in files_in(generated) & files_in(COMMITTED)
                   if (generated / name).read_bytes() != (COMMITTED / name).read_bytes())
    assert stale == [], f"stale generated code, run scripts/gen-proto: {stale}"


def test_no_committed_pb2_file_lacks_a_generated_twin(generated: Path) -> None:
    orphans = sorted(p.name for p in COMMITTED.glob("*_pb2*") if not (generated / p.name).exists())
    assert orphans == [], f"generated code without a .proto, delete it: {orphans}"
