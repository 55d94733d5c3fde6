"""Test-wide settings: strict rank promotion, a headless matplotlib, the persistent compilation
cache (for this process and every subprocess a test starts: each tiny model compiles once)."""

import os

from ssl_ct import compilation_cache

os.environ.setdefault("MPLBACKEND", "Agg")
for key, value in compilation_cache.environment().items():
  os.environ.setdefault(key, value)

import jax  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")
