"""Test set-up: 8 simulated CPU devices, set before JAX is imported anywhere.

XLA's persistent compilation cache is on for the session (and for the subprocesses that
tests start), so a program compiled once — e.g. the smoke run's chunk — is reused by the
resume and multi-process tests instead of being compiled again on the 2 CI cores.
"""
import os
import pathlib
import tempfile

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                      os.path.join(tempfile.gettempdir(), "palm_jax_test_xla_cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")

import pytest  # noqa: E402

SHARED = pathlib.Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(scope="session")
def shared_dir():
  """`../shared` beside the checkout; tests that need it skip when it is absent."""
  if not SHARED.is_dir():
    pytest.skip("../shared is not present beside the checkout")
  return SHARED
