"""Test set-up: 8 fake CPU devices (for mesh tests) and the shared fixtures directory."""

import os
import pathlib

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
FIXTURES = pathlib.Path(os.environ.get("GENXD_FIXTURES", REPO.parent / "shared" / "fixtures"))


@pytest.fixture(scope="session")
def fixtures_dir() -> pathlib.Path:
    if not FIXTURES.is_dir():
        pytest.fail(f"shared fixtures not found at {FIXTURES} (set GENXD_FIXTURES)")
    return FIXTURES


@pytest.fixture(scope="session")
def tiny_a(fixtures_dir) -> pathlib.Path:
    return fixtures_dir / "genxd-tiny-a"
