"""ssl_ct: self-supervised sample localization in 3D tomographic volumes.

`ssl_ct.load_localizer(DIR)` and `ssl_ct.write_crop(...)` are the Python API (ssl_ct/api.py); they
load JAX on first use, so the command-line tools that do not need it start fast. Importing the
package sets ssl_ct's default XLA flags (ssl_ct/xla_flags.py) in the environment, without loading JAX.
"""

from ssl_ct import xla_flags

xla_flags.apply()  # before JAX starts its backend: the flags are read once, then

__version__ = "0.1.0"
_API = ("load_localizer", "write_crop", "Localizer", "Result")


def __getattr__(name):
  if name in _API:
    from ssl_ct import api

    return getattr(api, name)
  raise AttributeError(f"module 'ssl_ct' has no attribute {name!r}")
