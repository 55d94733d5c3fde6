"""XLA compiler settings ssl_ct turns on by default (as `XLA_FLAGS`, before JAX starts its backend).

XLA:CPU in jaxlib 0.10 hands convolutions to YNNPACK, which runs each one on a single thread;
XLA's own convolutions use every core. Leaving YNNPACK only the dots makes the demo train
steps 1.2-1.3x faster on 2 cores (`python experiments/bench_xla_flags.py`). The flags are CPU
flags: accelerators ignore them.

A flag already in `XLA_FLAGS` is kept as the user set it; `SSL_CT_XLA_DEFAULTS=off` adds none.
They are added only for the jaxlib versions they were measured with (an unknown flag makes XLA
abort the process). `import ssl_ct` applies them, which is before any JAX computation of an
ssl_ct program; a process that ran JAX before importing ssl_ct keeps XLA's own settings.
"""

import importlib.metadata
import os

# flag -> value; the measured effect is in the module docstring.
DEFAULTS = {"xla_cpu_experimental_ynn_fusion_type": "dot"}
# jaxlib (major, minor) the flags exist in: setup.cfg's range.
_JAXLIB_VERSIONS = ((0, 10),)


def _jaxlib_version():
  try:
    major, minor = importlib.metadata.version("jaxlib").split(".")[:2]
    return int(major), int(minor)
  except (importlib.metadata.PackageNotFoundError, ValueError):
    return None


def flags_to_add(xla_flags, jaxlib_version):
  """The `--name=value` flags of DEFAULTS that `xla_flags` does not set already."""
  if jaxlib_version not in _JAXLIB_VERSIONS:
    return []
  return [f"--{name}={value}" for name, value in DEFAULTS.items() if f"--{name}=" not in xla_flags]


def apply(environ=os.environ):
  """Adds the missing default flags to `environ["XLA_FLAGS"]`; returns the ones added."""
  if environ.get("SSL_CT_XLA_DEFAULTS", "").lower() in ("off", "0", "false", "none"):
    return []
  current = environ.get("XLA_FLAGS", "")
  added = flags_to_add(current, _jaxlib_version())
  if added:
    environ["XLA_FLAGS"] = " ".join([current, *added]).strip()
  return added
