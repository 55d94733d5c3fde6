"""Test-wide settings: strict rank promotion, a headless matplotlib, the persistent compilation
cache (for this process and every subprocess a test starts: each tiny model compiles once), one
scratch folder for every temporary file of the run, removed when it ends (tests and their
subprocesses make thousands; left in the system's temp folder they filled it run after run), and
the slowest tests first, so that the two test processes (setup.cfg: -n 2) finish together."""

import atexit
import os
import shutil
import tempfile

from ssl_ct import compilation_cache

_SCRATCH = tempfile.mkdtemp(prefix="ssl_ct_tests_")
os.environ["TMPDIR"] = _SCRATCH  # subprocesses of tests inherit it
tempfile.tempdir = _SCRATCH
atexit.register(shutil.rmtree, _SCRATCH, ignore_errors=True)

os.environ.setdefault("MPLBACKEND", "Agg")
for key, value in compilation_cache.environment().items():
  os.environ.setdefault(key, value)

import jax  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")


# Minutes each on 2 cores; started last, one of them would run alone while the other process idles.
_SLOWEST_FIRST = ("quality_test.py",)


def pytest_collection_modifyitems(items):
  items.sort(key=lambda item: item.path.name not in _SLOWEST_FIRST)  # stable: the rest keep their order
