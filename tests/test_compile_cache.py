"""The persistent compilation cache: a second start of the same job compiles nothing.

A "start" is `palm_jax.main.run_job` after `jax.clear_caches()` (which drops every
in-memory compiled program, as a new process would have none). JAX's own monitoring
events are counted: the second start reads every program back
(`/jax/compilation_cache/cache_hits`) and misses none (`.../cache_misses`).
"""
import collections
import os
import runpy

import jax
import jax.monitoring
import pytest

from palm_jax import main
from palm_jax.runtime import compile_cache

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def events():
  counts = collections.Counter()
  listener = lambda name, **kw: counts.update([name])
  jax.monitoring.register_event_listener(listener)
  yield counts
  jax.monitoring.unregister_event_listener(listener)


@pytest.fixture
def cache_everything():
  """Tiny programs compile faster than the tests' 0.5 s threshold; cache them too."""
  old = jax.config.jax_persistent_cache_min_compile_time_secs
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
  yield
  jax.config.update("jax_persistent_cache_min_compile_time_secs", old)


def test_second_start_skips_compilation(tmp_path, events, cache_everything):
  assert compile_cache.enable()           # tests: $JAX_COMPILATION_CACHE_DIR, kept as is
  config = runpy.run_path(os.path.join(ROOT, "configs", "sample.py"))["get_config"]()
  config.generator = "random"
  config.generator_kwargs = dict(z_dim=4, c_dim=2, w_dim=4, img_resolution=8,
                                 img_channels=3, mapping_kwargs=dict(num_layers=1),
                                 synthesis_kwargs=dict(channel_base=32, channel_max=4))
  config.rows, config.cols = 2, 3
  # Programs earlier tests left in memory would not be compiled (nor written to disk, under
  # their 0.5 s threshold) by the first start, and so would miss on the second: start cold.
  jax.clear_caches()
  main.run_job(config, str(tmp_path / "first"))
  jax.clear_caches()
  events.clear()
  main.run_job(config, str(tmp_path / "second"))
  assert (tmp_path / "second" / "samples.png").exists()
  assert events["/jax/compilation_cache/cache_hits"] >= 2       # init + generate at least
  assert events["/jax/compilation_cache/cache_misses"] == 0


def test_cache_location_and_opt_out(monkeypatch, tmp_path):
  monkeypatch.setenv("PALM_JAX_CACHE", str(tmp_path))
  assert compile_cache.default_dir() == str(tmp_path / "xla")
  monkeypatch.delenv("PALM_JAX_CACHE")
  assert compile_cache.default_dir() == os.path.expanduser("~/.cache/palm_jax/xla")
  monkeypatch.setenv("PALM_JAX_XLA_CACHE", "0")
  assert compile_cache.enable() is None
  monkeypatch.delenv("PALM_JAX_XLA_CACHE")
  assert compile_cache.enable(False) is None
  old = jax.config.jax_compilation_cache_dir
  monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
  monkeypatch.setenv("PALM_JAX_CACHE", str(tmp_path))
  jax.config.update("jax_compilation_cache_dir", None)
  try:
    assert compile_cache.enable() == str(tmp_path / "xla")
    assert jax.config.jax_compilation_cache_dir == str(tmp_path / "xla")
  finally:
    jax.config.update("jax_compilation_cache_dir", old)
