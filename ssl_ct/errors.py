"""One error type for bad user input, and the CLI wrapper that reports it in one line."""

import sys


class InputError(ValueError):
  """Bad input (path, volume, config value): the message names the problem and the fix."""


def exit_on_input_error(fn, *args, **kwargs):
  """Runs `fn`; an InputError becomes one line on stderr and exit status 2."""
  try:
    return fn(*args, **kwargs)
  except InputError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(2)
