"""JAX's persistent compilation cache, on by default: each step function compiles once per machine.

The cache folder is `$SSL_CT_COMPILATION_CACHE`, else `$XDG_CACHE_HOME/ssl_ct/jax` (by default
`~/.cache/ssl_ct/jax`); `SSL_CT_COMPILATION_CACHE=off` turns it off, and a cache folder the user
gave JAX already (`JAX_COMPILATION_CACHE_DIR`) is kept. The cache holds at most `MAX_BYTES`,
least recently used entries first out. Entries are keyed by the program, the JAX and XLA
versions and the machine, so a stale entry is never used.
"""

import os

MAX_BYTES = 4 * 2**30
_MIN_COMPILE_SECONDS = 0.5  # smaller programs compile faster than they load


def cache_dir():
  """The folder the cache lives in, or None when it is turned off."""
  chosen = os.environ.get("SSL_CT_COMPILATION_CACHE", "")
  if chosen.lower() in ("off", "0", "none", "false"):
    return None
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return chosen or os.path.join(base, "ssl_ct", "jax")


def enable():
  """Points JAX at the cache (before or after `import jax`); returns the folder or None."""
  import jax  # the flags below are JAX's own

  path = jax.config.jax_compilation_cache_dir or cache_dir()
  if path is None:
    return None
  try:
    os.makedirs(path, exist_ok=True)
  except OSError:  # a read-only home: compile every time rather than fail
    return None
  jax.config.update("jax_compilation_cache_dir", path)
  jax.config.update("jax_persistent_cache_min_compile_time_secs", _MIN_COMPILE_SECONDS)
  jax.config.update("jax_compilation_cache_max_size", MAX_BYTES)
  return path


def environment():
  """Environment variables that give a child process (a grain worker, a test's subprocess) the same cache."""
  path = cache_dir()
  if path is None:
    return {}
  return {
    "JAX_COMPILATION_CACHE_DIR": os.environ.get("JAX_COMPILATION_CACHE_DIR", path),
    "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": str(_MIN_COMPILE_SECONDS),
    "JAX_COMPILATION_CACHE_MAX_SIZE": str(MAX_BYTES),
  }
