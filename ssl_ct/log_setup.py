"""Console logging of the CLIs: ssl_ct's own INFO lines; libraries (orbax, grain, jax, ...) from WARNING up.

orbax alone writes a dozen INFO lines per checkpoint. `--verbosity=1` (absl's DEBUG) keeps
every library's lines.
"""

import logging as py_logging
import os

from absl import logging

_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


class OnlyOwnInfo(py_logging.Filter):
  """Passes WARNING and above from anywhere, lower levels only from files of the ssl_ct package."""

  def filter(self, record):
    return record.levelno >= py_logging.WARNING or os.path.abspath(record.pathname).startswith(_PACKAGE)


def quiet_libraries():
  if logging.get_verbosity() >= logging.DEBUG:
    return
  handler = logging.get_absl_handler()
  if not any(isinstance(f, OnlyOwnInfo) for f in handler.filters):
    handler.addFilter(OnlyOwnInfo())
