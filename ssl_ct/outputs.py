"""Where ssl_ct may write, and how: never into an input, only over its own outputs, atomically.

Every writer (convert, crop, main's workdir, phantoms) goes through these functions:
- `check_apart(outputs, inputs)`: an output may not equal, contain or lie inside an input
  (real paths: symlinks resolved, hard links and bind mounts caught by inode).
- `check_writable(path, overwrite)`: an existing output is replaced only with `overwrite`,
  and only when ssl_ct wrote it (`is_ours`: its attributes or contents say so).
- `atomic_dir` / `atomic_file`: the output is built in a hidden `.partial-` sibling held under
  an advisory lock, then renamed into place; a partial left by a killed run (its lock died with
  it) is removed by the next run writing the same output (`remove_stale_partials`).
- `lock_folder`: one ssl_ct run at a time in a workdir or crop folder (fcntl, released when the
  process ends, however it ends).
"""

import contextlib
import errno
import fcntl
import glob
import json
import os
import shutil
import uuid

from ssl_ct.errors import InputError

MARKER = "ssl_ct"  # key of the attributes / JSON objects that ssl_ct writes
LOCK_FILE = ".ssl_ct.lock"
PARTIAL = ".partial-"


def real(path):
  """Absolute path with every symlink resolved (also for a path that does not exist yet)."""
  return os.path.realpath(os.path.abspath(os.fspath(path)))


def _ancestors(path):
  """`path` and every folder above it that exists (real paths)."""
  found, path = [], real(path)
  while True:
    if os.path.exists(path):
      found.append(path)
    parent = os.path.dirname(path)
    if parent == path:
      return found
    path = parent


def _same(a, b):
  try:
    return os.path.samefile(a, b)
  except OSError:
    return False


def check_apart(outputs, inputs, fix="write the output somewhere else"):
  """InputError when an output equals, contains or lies inside an input path."""
  inputs = [p for p in inputs if p]
  for out in outputs:
    for inp in inputs:
      ro, ri = real(out), real(inp)
      if ro == ri or (os.path.exists(ro) and _same(ro, ri)):
        raise InputError(f"output {out} is the input {inp}; {fix}")
      if ro.startswith(ri.rstrip(os.sep) + os.sep) or any(_same(a, ri) for a in _ancestors(ro)[1:]):
        raise InputError(f"output {out} lies inside the input {inp}; {fix}")
      if ri.startswith(ro.rstrip(os.sep) + os.sep) or any(_same(a, ro) for a in _ancestors(ri)[1:] if os.path.exists(ro)):
        raise InputError(f"output {out} contains the input {inp}; {fix}")


def _json(path):
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def is_ours(path):
  """True for what ssl_ct writes: a zarr store or JSON file carrying the ssl_ct marker, a
  synthetic set (phantoms.json), a report whose first line ssl_ct wrote, a workdir config."""
  if os.path.isdir(path):
    meta = _json(os.path.join(path, "zarr.json"))
    if isinstance(meta, dict) and MARKER in meta.get("attributes", {}):
      return True
    return isinstance(_json(os.path.join(path, "phantoms.json")), dict)
  if path.endswith(".json"):
    content = _json(path)
    return isinstance(content, dict) and MARKER in content
  if path.endswith(".md"):
    try:
      with open(path) as f:
        return f.readline().startswith(("# Crop report", "# Localization report"))
    except (OSError, UnicodeDecodeError):
      return False
  return False


def check_location(path):
  """InputError when `path` cannot be created: a file on its way, or a read-only folder."""
  parent = os.path.dirname(real(path))
  existing = parent
  while not os.path.exists(existing):
    existing = os.path.dirname(existing)
  if not os.path.isdir(existing):
    raise InputError(f"cannot write {path}: {existing} is a file, not a folder; choose an output path under a folder")
  if not os.access(existing, os.W_OK | os.X_OK):
    raise InputError(f"cannot write {path}: the folder {existing} is read-only for this user; choose a writable output folder")


def check_writable(path, overwrite):
  """Fails before any work when `path` exists and may not be replaced."""
  check_location(path)
  if not os.path.lexists(path):
    return
  if not overwrite:
    raise InputError(f"{path} already exists; choose another output path or pass --overwrite to replace it")
  if os.path.islink(path) or not is_ours(path):
    raise InputError(
      f"{path} exists and was not written by ssl_ct; --overwrite replaces only ssl_ct's own outputs: choose another path"
    )


def _try_lock(fd):
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return True
  except OSError as e:
    if e.errno in (errno.EAGAIN, errno.EACCES):
      return False
    raise


def remove_stale_partials(path):
  """Removes `.<name>.partial-*` siblings of `path` that no live writer holds (a killed run's)."""
  parent, base = os.path.split(real(path))
  for stale in glob.glob(os.path.join(glob.escape(parent), f".{glob.escape(base)}{PARTIAL}*")):
    try:
      fd = os.open(stale, os.O_RDONLY)
    except OSError:
      continue
    try:
      if _try_lock(fd):
        _remove(stale)
    finally:
      os.close(fd)


def _remove(path):
  if os.path.isdir(path) and not os.path.islink(path):
    shutil.rmtree(path, ignore_errors=True)
  elif os.path.lexists(path):
    os.remove(path)


def _partial_name(path):
  parent, base = os.path.split(os.path.abspath(path))
  return os.path.join(parent, f".{base}{PARTIAL}{uuid.uuid4().hex[:8]}")


def _commit(tmp, path):
  """Renames the finished `tmp` into `path`, replacing an earlier output last."""
  if os.path.lexists(path):
    trash = f"{tmp}.old"
    os.rename(path, trash)
    os.rename(tmp, path)
    _remove(trash)
  else:
    os.rename(tmp, path)


@contextlib.contextmanager
def atomic_dir(path, overwrite=False):
  """Yields a locked hidden sibling folder that becomes `path` only if the block succeeds."""
  check_writable(path, overwrite)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  remove_stale_partials(path)
  tmp = _partial_name(path)
  os.makedirs(tmp)
  fd = os.open(tmp, os.O_RDONLY)
  fcntl.flock(fd, fcntl.LOCK_EX)  # a later run knows this partial is live while the lock is held
  try:
    yield tmp
    _commit(tmp, path)
  finally:
    os.close(fd)
    _remove(tmp)


@contextlib.contextmanager
def atomic_file(path, mode="w"):
  """Yields a file object whose content replaces `path` only once it is completely written."""
  check_location(path)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  remove_stale_partials(path)
  tmp = _partial_name(path)
  try:
    with open(tmp, mode) as f:
      fcntl.flock(f.fileno(), fcntl.LOCK_EX)
      yield f
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  finally:
    _remove(tmp)


def write_text(path, text):
  with atomic_file(path) as f:
    f.write(text)


def write_json(path, obj):
  write_text(path, json.dumps(obj, indent=1) + "\n")


def check_lockable(folder, what):
  """InputError when lock_folder(folder) could not create its lock file; creates nothing."""
  if os.path.exists(folder) and not os.path.isdir(folder):
    raise InputError(f"{what} {folder} is a file, not a folder; pass a folder path")
  check_location(os.path.join(folder, LOCK_FILE))


def lock_folder(folder, what):
  """Exclusive lock on `folder` for this process's lifetime; InputError naming the holder's pid."""
  check_lockable(folder, what)
  os.makedirs(folder, exist_ok=True)
  fd = os.open(os.path.join(folder, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
  if not _try_lock(fd):
    holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
    os.close(fd)
    raise InputError(
      f"{what} {folder} is in use by another ssl_ct run (pid {holder}); wait for it to finish or use another {what}"
    )
  os.ftruncate(fd, 0)
  os.write(fd, str(os.getpid()).encode())
  return fd
