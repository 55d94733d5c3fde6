"""Results folders: one per run, never rewritten, the newest reachable as `latest`.

  <workdir>/localization/<YYYYmmdd-HHMMSS>/   boxes.json, report.md, figures of one run
  <workdir>/localization/latest               symlink to the newest complete run
  <workdir>/segmentation/...                  the same for segmentation runs (label volumes, IoU)

A run is written into a hidden partial folder (ssl_ct.outputs.atomic_dir) and renamed into
place when complete; then `latest` is switched to it (an atomic rename of a new link).
"""

import contextlib
import json
import os
import time

import ml_collections

from ssl_ct import outputs
from ssl_ct.errors import InputError

FOLDER = "localization"
LATEST = "latest"


def root(workdir, folder=FOLDER):
  return os.path.join(workdir, folder)


def _new_name(parent):
  stamp = time.strftime("%Y%m%d-%H%M%S")
  name, n = stamp, 1
  while os.path.lexists(os.path.join(parent, name)):
    n += 1
    name = f"{stamp}-{n}"
  return name


@contextlib.contextmanager
def new_run(workdir, folder=FOLDER):
  """Yields the folder to write one run into; publishes it as `latest` on success."""
  parent = root(workdir, folder)
  os.makedirs(parent, exist_ok=True)
  final = os.path.join(parent, _new_name(parent))
  with outputs.atomic_dir(final) as tmp:
    yield tmp
  link = os.path.join(parent, f".{LATEST}{outputs.PARTIAL}{os.getpid()}")
  if os.path.lexists(link):
    os.remove(link)
  os.symlink(os.path.basename(final), link)  # relative: the workdir can be moved or copied
  os.replace(link, os.path.join(parent, LATEST))


def read_config(run_dir, *, what=None, fix="localize again to make a complete results folder"):
  """The config a run (or a workdir) was made with, its config.json; one-line InputError saying `fix` when unreadable."""
  path = os.path.join(run_dir, "config.json")
  try:
    with open(path) as f:
      return ml_collections.ConfigDict(json.load(f))
  except (OSError, ValueError) as e:
    raise InputError(f"{what or path}: cannot read {path} ({e}); {fix}" if what else f"{path} cannot be read ({e}); {fix}") from e


def latest(workdir, folder=FOLDER):
  """The newest complete run's folder; InputError when the workdir has none."""
  path = os.path.join(root(workdir, folder), LATEST)
  if not os.path.isdir(path):
    raise InputError(f"no results in {root(workdir, folder)}; run --mode=localize (or --mode=all) first")
  return os.path.realpath(path)
