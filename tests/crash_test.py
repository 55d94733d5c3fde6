"""Runs killed with SIGKILL mid-write leave nothing complete-looking, and a rerun finishes the job;
a second run on a workdir in use fails at once, naming the first."""

import glob
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np
from absl.testing import absltest

from ssl_ct.data import formats
from tests import helpers

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cli(*args, wait=True):
  cmd = [sys.executable, "-m", *args]
  if not wait:
    return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)


def _kill_when(proc, pattern, timeout=120):
  """SIGKILLs `proc` as soon as a path matching `pattern` exists; True if it was still running then."""
  deadline = time.time() + timeout
  while time.time() < deadline and proc.poll() is None:
    if glob.glob(pattern):
      os.kill(proc.pid, signal.SIGKILL)
      proc.wait()
      return True
    time.sleep(0.002)
  proc.wait()
  return False


def _large_volume(path, seed):
  # Random voxels compress badly: writing 64 MiB takes long enough to be caught mid-write.
  np.save(path, np.random.default_rng(seed).integers(0, 65535, (1024, 128, 256), dtype=np.uint16))
  return path


def _hidden(folder):
  return sorted(n for n in os.listdir(folder) if n.startswith(".") and n != ".ssl_ct.lock")


class KilledWriterTest(absltest.TestCase):
  def test_convert_killed_mid_write_then_rerun(self):
    tmp = tempfile.mkdtemp()
    src = _large_volume(os.path.join(tmp, "scan.npy"), 0)
    before = helpers.tree_digest(src)
    out = os.path.join(tmp, "scan.zarr")
    proc = _cli("ssl_ct.convert", "--quiet", src, out, wait=False)
    self.assertTrue(_kill_when(proc, os.path.join(tmp, ".scan.zarr.partial-*", "zarr.json")), "convert finished before the kill")
    self.assertFalse(os.path.exists(out))  # nothing complete-looking
    self.assertLen(_hidden(tmp), 1)  # the killed run's partial, under a lock that died with it
    again = _cli("ssl_ct.convert", "--quiet", src, out)
    self.assertEqual(again.returncode, 0, again.stderr)
    self.assertEqual(_hidden(tmp), [])  # the stale partial was cleaned
    np.testing.assert_array_equal(formats.open_volume(out).read(), np.load(src))
    self.assertEqual(helpers.tree_digest(src), before)

  def test_crop_killed_mid_write_then_rerun_skips_what_is_done(self):
    tmp = tempfile.mkdtemp()
    data = os.path.join(tmp, "data")
    os.makedirs(data)
    for i, name in enumerate(("a", "b")):
      _large_volume(os.path.join(data, f"{name}.npy"), i)
    before = helpers.tree_digest(data)
    box = {"start": [10, 5, 5], "stop": [1000, 120, 250]}
    boxes = os.path.join(tmp, "boxes.json")
    with open(boxes, "w") as f:
      json.dump({"a": box, "b": box}, f)
    out = os.path.join(tmp, "out")
    args = ("ssl_ct.crop", f"--boxes={boxes}", f"--data={data}", f"--out={out}", "--quiet", "--margin=0")
    proc = _cli(*args, wait=False)
    self.assertTrue(_kill_when(proc, os.path.join(out, ".b.zarr.partial-*", "zarr.json")), "crop finished before the kill")
    self.assertTrue(os.path.isdir(os.path.join(out, "a.zarr")))
    self.assertFalse(os.path.exists(os.path.join(out, "b.zarr")))
    self.assertFalse(os.path.exists(os.path.join(out, "crop_report.json")))
    again = _cli(*args)
    self.assertEqual(again.returncode, 0, again.stderr)
    self.assertIn("(1 already done)", again.stdout)
    self.assertEqual(_hidden(out), [])
    for name in ("a", "b"):
      np.testing.assert_array_equal(
        formats.open_volume(os.path.join(out, f"{name}.zarr")).read(),
        np.load(os.path.join(data, f"{name}.npy"))[10:1000, 5:120, 5:250],
      )
    self.assertEqual(helpers.tree_digest(data), before)


class WorkdirLockTest(absltest.TestCase):
  def test_second_run_on_a_busy_workdir_fails_at_once(self):
    workdir = tempfile.mkdtemp()
    holder = subprocess.Popen(
      [
        sys.executable,
        "-c",
        f"from ssl_ct import outputs; import time; outputs.lock_folder({workdir!r}, 'workdir'); print('held', flush=True); time.sleep(60)",
      ],
      cwd=REPO,
      stdout=subprocess.PIPE,
      text=True,
    )
    try:
      self.assertEqual(holder.stdout.readline().strip(), "held")
      result = _cli("ssl_ct.main", "--config=configs/rotation_xenopus.py:tiny", f"--workdir={workdir}", "--mode=prepare")
      self.assertEqual(result.returncode, 2, result.stderr)
      self.assertIn(f"in use by another ssl_ct run (pid {holder.pid})", result.stderr)
      self.assertFalse(os.path.exists(os.path.join(workdir, "config.json")))  # it wrote nothing
    finally:
      holder.kill()
      holder.wait()
    result = _cli("ssl_ct.main", "--config=configs/rotation_xenopus.py:tiny", f"--workdir={workdir}", "--mode=prepare")
    self.assertEqual(result.returncode, 0, result.stderr[-2000:])  # the lock died with its holder


if __name__ == "__main__":
  absltest.main()
