"""One error type for bad user input, and the CLI helpers that report it in one line."""

import argparse
import os
import sys


class InputError(ValueError):
  """Bad input (path, volume, config value): the message names the problem and the fix."""


def exit_on_input_error(fn, *args, **kwargs):
  """Runs `fn`; an InputError (or a file-system error) becomes one line on stderr and exit status 2."""
  try:
    return fn(*args, **kwargs)
  except InputError as e:
    message = str(e)
  except OSError as e:  # a full disk, a folder that became read-only, a vanished mount
    where = f"{e.filename}: " if e.filename else ""
    message = f"{where}{e.strerror or e}; check that the path exists, is writable and has space"
  print(f"error: {' '.join(message.split())}", file=sys.stderr)
  sys.exit(2)


def run_cli(main_fn):
  """Runs a CLI's main; a failed run exits at once, without interpreter teardown.

  Outputs were committed or cleaned while the error unwound; tensorstore and orbax callbacks
  still in flight would print tracebacks into a normal teardown.
  """
  try:
    main_fn()
  except SystemExit as e:
    if e.code in (0, None):
      raise
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(e.code if isinstance(e.code, int) else 2)


class CliParser(argparse.ArgumentParser):
  """argparse with a bad command line as one `error:` line (no usage dump) and exit status 2."""

  def error(self, message):
    print(f"error: {message}; see {self.prog} --help", file=sys.stderr)
    sys.exit(2)
