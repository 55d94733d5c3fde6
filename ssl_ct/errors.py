"""One error type for bad user input, and the CLI helpers that report it in one line."""

import os
import re
import sys

from absl import flags


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


def usage_error(message, prog):
  """A bad command line: one `error:` line that points at --help, and exit status 2."""
  print(f"error: {' '.join(str(message).split())}; see {prog} --help", file=sys.stderr)
  sys.exit(2)


def required_flag(error):
  """The flag an absl error says was left out ("--boxes"), or None for any other error."""
  match = re.match(r"flag (--[\w.]+)=None: Flag --[\w.]+ must have a value other than None", " ".join(str(error).split()))
  return match.group(1) if match else None


def _flag_error_message(error):
  missing = required_flag(error)
  return f"{missing} is required" if missing else " ".join(str(error).split())


def wants_help(argv):
  return any(arg in ("-h", "--help", "-help", "--helpshort", "--helpfull") for arg in argv)


def print_help(prog, doc, flag_help, positional=()):
  """Usage line, `doc` and the flags (absl's listing, less its module header); exits 0."""
  lines = [line for line in flag_help.strip().splitlines() if line.startswith(" ")]
  usage = f"usage: {prog} [flags] {' '.join(positional)}".rstrip()
  print(f"{usage}\n\n{doc.strip()}\n\nflags:\n" + "\n".join(lines))
  sys.exit(0)


def parse_flags(flag_values, argv, *, prog, doc, positional=()):
  """Parses a command line into absl `flag_values` (the style of ssl_ct.main) and returns the
  positional arguments, one per name in `positional` (as the usage line shows them: "IN").

  `argv` is the arguments without the program name (None: sys.argv[1:]). `--help` prints `doc`
  and the flags, and exits 0. An unknown or malformed flag, a required flag left out or the
  wrong number of positional arguments is one `error:` line and exit status 2.
  """
  argv = list(sys.argv[1:] if argv is None else argv)
  if wants_help(argv):
    print_help(prog, doc, flag_values.get_help(include_special_flags=False), positional)
  try:
    rest = flag_values([prog, *argv])[1:]
  except flags.Error as e:
    usage_error(_flag_error_message(e), prog)
  if len(rest) != len(positional):
    wanted = " ".join(positional) or "none"
    got = " ".join(rest) or "none"
    usage_error(f"expected positional arguments {wanted}, got {got}", prog)
  return rest
