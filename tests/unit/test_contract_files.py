"""proto/ is complete for a client in any language: google.rpc comes with it, unchanged."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VENDORED = ("status.proto", "error_details.proto", "code.proto")


@pytest.mark.parametrize("name", VENDORED)
def test_google_rpc_is_the_one_the_server_uses(name: str) -> None:
    """The copy in proto/google/rpc is byte for byte the .proto of the installed
    googleapis-common-protos, whose Python modules encode the server's error details."""
    installed = resources.files("google.rpc").joinpath(name).read_bytes()
    assert (ROOT / "proto" / "google" / "rpc" / name).read_bytes() == installed


def test_every_airlock_file_names_its_go_and_java_packages() -> None:
    for path in sorted((ROOT / "proto" / "airlock").rglob("*.proto")):
        text = path.read_text(encoding="utf-8")
        for option in ("go_package", "java_package", "java_multiple_files"):
            assert f"option {option} = " in text, f"{path.name}: no {option}"
