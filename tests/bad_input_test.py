"""Each bad input gets one clear line, exit status 2, no traceback, and an untouched input.

The hostile corpus (tests/hostile_corpus.py) runs against all four CLIs: convert, crop and
phantoms in this process (their main(argv)), ssl_ct.main in subprocesses, two at a time.
"""

import concurrent.futures
import contextlib
import glob
import io
import os
import subprocess
import sys
import tempfile
from unittest import mock

import h5py
import hdf5plugin
import numpy as np
import tifffile
from absl.testing import absltest, parameterized

from ssl_ct import convert, crop, main, outputs, phantoms, report
from ssl_ct.configs import rotation_xenopus
from ssl_ct.data import formats, intensity, pipeline, sources, zarr_writer
from ssl_ct.errors import InputError
from tests import helpers, hostile_corpus

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IN_PROCESS = {"convert": convert.main, "crop": crop.main, "phantoms": phantoms.main}


def run_cli(*args):
  return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, cwd=REPO, timeout=120)


def _run_in_process(case):
  """(exit status, stdout, stderr) of one CLI call in this process."""
  out, err = io.StringIO(), io.StringIO()
  saved = formats._remote.copy()
  if "SSL_CT_REMOTE_TIMEOUT_S" in case.env:
    formats.set_remote_options(timeout_s=float(case.env["SSL_CT_REMOTE_TIMEOUT_S"]))
  try:
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
      try:
        IN_PROCESS[case.cli](case.argv)
        code = 0
      except SystemExit as e:
        code = e.code
  finally:
    formats.set_remote_options(**saved)
  return code, out.getvalue(), err.getvalue()


def _run_subprocess(case):
  env = {**os.environ, **case.env}
  result = subprocess.run(
    [sys.executable, "-m", "ssl_ct.main", *case.argv], capture_output=True, text=True, cwd=REPO, env=env, timeout=300
  )
  return result.returncode, result.stdout, result.stderr


class HostileCorpusTest(parameterized.TestCase):
  def _check(self, name, case, result, digests):
    code, out, err = result
    context = f"{name}: {case.argv}\nstdout: {out[-1500:]}\nstderr: {err[-3000:]}"
    self.assertEqual(code, 2, context)
    self.assertNotIn("Traceback", err, context)
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    self.assertLen(errors, 1, context)
    line = errors[0]
    for expected in case.expect:
      self.assertIn(expected, line, context)
    self.assertRegex(line, r"; \S", f"no fix named: {context}")  # problem; fix
    self.assertEqual({p: helpers.tree_digest(p) for p in digests}, digests, f"an input changed: {context}")

  def _build(self, name):
    case = hostile_corpus.build(name, tempfile.mkdtemp())
    return case, {p: helpers.tree_digest(p) for p in case.inputs}

  @parameterized.named_parameters((n, n) for n in hostile_corpus.BUILDERS if not n.startswith("main_"))
  def test_in_process(self, name):
    case, digests = self._build(name)
    self._check(name, case, _run_in_process(case), digests)

  def test_main_cases(self):
    names = [n for n in hostile_corpus.BUILDERS if n.startswith("main_")]
    built = {n: self._build(n) for n in names}
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
      runs = dict(zip(names, pool.map(lambda n: _run_subprocess(built[n][0]), names)))
    for name in names:
      with self.subTest(name):
        self._check(name, built[name][0], runs[name], built[name][1])

  def test_corpus_covers_every_cli(self):
    counts = {cli: sum(n.startswith(cli + "_") for n in hostile_corpus.BUILDERS) for cli in hostile_corpus.CLIS}
    self.assertTrue(all(counts.values()), counts)
    self.assertGreaterEqual(sum(counts.values()), 60, counts)

  def test_failing_cli_processes_print_one_line(self):
    # In a real process too: a failed run exits without teardown noise from tensorstore threads.
    tmp = tempfile.mkdtemp()
    for name in ("convert_zarr2_missing_chunk", "crop_out_is_data_with_overwrite", "phantoms_negative_z_jitter"):
      case, digests = self._build(name)
      result = run_cli(f"ssl_ct.{case.cli}", *case.argv)
      self._check(name, case, (result.returncode, result.stdout, result.stderr), digests)
    del tmp


class CommandLineTest(absltest.TestCase):
  def test_every_cli_is_absl_style_and_says_what_it_does(self):
    for name, main_fn in IN_PROCESS.items():
      out = io.StringIO()
      with contextlib.redirect_stdout(out), self.assertRaises(SystemExit) as exit_:
        main_fn(["--help"])
      self.assertEqual(exit_.exception.code, 0, name)
      self.assertIn(sys.modules[main_fn.__module__].__doc__.strip().splitlines()[0], out.getvalue(), name)
      self.assertIn("--[no]overwrite: ", out.getvalue(), name)  # absl's flag listing, as ssl_ct.main's
    result = run_cli("ssl_ct.main", "--help")
    self.assertEqual(result.returncode, 0, result.stderr[-2000:])
    self.assertIn("Entry point: `python -m ssl_ct.main", result.stdout)
    self.assertIn("--[no]overwrite: ", result.stdout)


# Runs ssl_ct.main on argv in a fresh interpreter and prints its exit status and which heavy
# libraries it had loaded by then (a failed run leaves through os._exit, see errors.run_cli).
_LOADED_AT_EXIT = """
import os, runpy, sys
exit_now = os._exit
def report(code):
  print(code, *sorted(m for m in ("jax", "flax", "tensorstore", "scipy", "h5py") if m in sys.modules), flush=True)
  exit_now(code)
os._exit = report
sys.argv = ["ssl_ct.main", *sys.argv[1:]]
runpy.run_module("ssl_ct.main", run_name="__main__")
"""


class FastFailureTest(absltest.TestCase):
  def _loaded_at_exit(self, *argv):
    result = subprocess.run([sys.executable, "-c", _LOADED_AT_EXIT, *argv], capture_output=True, text=True, cwd=REPO)
    self.assertIn("error:", result.stderr)
    code, *loaded = result.stdout.split()
    self.assertEqual(code, "2", result.stderr)
    return set(loaded)

  def test_a_bad_command_line_fails_before_the_numerical_libraries_load(self):
    self.assertEqual(self._loaded_at_exit(hostile_corpus.TINY, "--config.opt.lrr=1", "--workdir=w"), set())
    self.assertEqual(self._loaded_at_exit(hostile_corpus.TINY, "--mode=everything", "--workdir=w"), set())

  def test_a_bad_workdir_fails_before_jax_loads(self):
    tmp = tempfile.mkdtemp()
    untrained = self._loaded_at_exit(hostile_corpus.TINY, f"--workdir={tmp}", "--mode=localize")
    with open(os.path.join(tmp, "config.json"), "w") as f:
      f.write("{")
    corrupt = self._loaded_at_exit(hostile_corpus.TINY, f"--workdir={tmp}")
    for loaded in (untrained, corrupt):
      self.assertNotIn("jax", loaded)
      self.assertNotIn("flax", loaded)


class BadInputTest(parameterized.TestCase):
  def setUp(self):
    super().setUp()
    self.tmp = tempfile.mkdtemp()

  def _open_error(self, spec):
    with self.assertRaises(InputError) as ctx:
      vol = formats.open_volume(spec)
      intensity.intensity_range(vol)
      vol.read()
    message = str(ctx.exception)
    self.assertNotIn("\n", message)
    return message

  def test_missing_file(self):
    self.assertIn("no volume at", self._open_error(os.path.join(self.tmp, "nope.zarr")))

  @parameterized.named_parameters(
    ("2d", np.zeros((4, 5), np.uint8), "expected a 3D volume"),
    ("4d", np.zeros((2, 3, 4, 5), np.uint8), "expected a 3D volume"),
    ("empty", np.zeros((0, 5, 5), np.uint8), "empty"),
    ("bool", np.zeros((3, 4, 5), bool), "unsupported dtype"),
    ("complex", np.zeros((3, 4, 5), np.complex64), "unsupported dtype"),
    ("nan", np.where(np.arange(60).reshape(3, 4, 5) == 7, np.nan, 1.0).astype(np.float32), "NaN"),
    ("constant", np.full((6, 7, 8), 42, np.uint16), "constant"),
  )
  def test_bad_array(self, array, expected):
    path = os.path.join(self.tmp, "bad.npy")
    np.save(path, array)
    before = helpers.tree_digest(path)
    self.assertIn(expected, self._open_error(path))
    self.assertEqual(helpers.tree_digest(path), before)

  def test_corrupt_zarr_chunk(self):
    spec = helpers.write_in_format(np.arange(17 * 23 * 29, dtype=np.uint16).reshape(17, 23, 29), self.tmp, "zarr2")
    chunk = sorted(glob.glob(os.path.join(spec, "1.*")))[0]
    with open(chunk, "wb") as f:
      f.write(b"garbage, not a blosc chunk")
    before = helpers.tree_digest(spec)
    message = self._open_error(spec)
    self.assertIn("corrupt", message)
    self.assertEqual(helpers.tree_digest(spec), before)

  def test_truncated_hdf5(self):
    spec = helpers.write_in_format(np.ones((8, 8, 8), np.uint8), self.tmp, "hdf5-dxchange")
    with open(spec, "r+b") as f:
      f.truncate(300)
    self.assertIn("cannot open", self._open_error(spec))

  def test_ambiguous_hdf5(self):
    path = os.path.join(self.tmp, "two.h5")
    with h5py.File(path, "w") as f:
      f["a"] = np.zeros((3, 3, 3))
      f["b"] = np.zeros((3, 3, 3))
    message = self._open_error(path)
    self.assertIn("/a, /b", message)
    self.assertIn(f"{path}:/path/to/dataset", message)

  def test_unknown_format_and_empty_folder(self):
    path = os.path.join(self.tmp, "scan.raw")
    open(path, "wb").close()
    self.assertIn("not a volume format", self._open_error(path))
    empty = os.path.join(self.tmp, "empty")
    os.makedirs(empty)
    with self.assertRaisesRegex(InputError, "holds no volumes"):
      sources.open_volumes(empty)
    with self.assertRaisesRegex(InputError, "matches no files"):
      sources.open_volumes(os.path.join(self.tmp, "*.zarr"))

  def test_writer_refuses_to_overwrite_and_leaves_no_partial_output(self):
    out = os.path.join(self.tmp, "out.zarr")
    zarr_writer.write_zarr3(np.ones((4, 4, 4), np.uint8), out)
    before = helpers.tree_digest(out)
    with self.assertRaisesRegex(InputError, "already exists"):
      zarr_writer.write_zarr3(np.zeros((4, 4, 4), np.uint8), out)
    self.assertEqual(helpers.tree_digest(out), before)
    with self.assertRaises(InputError):  # fails mid-write: the source is corrupt
      bad = helpers.write_in_format(np.ones((8, 8, 8), np.uint8), self.tmp, "zarr2")
      for chunk in glob.glob(os.path.join(bad, "0.*")):
        with open(chunk, "wb") as f:
          f.write(b"x")
      zarr_writer.write_zarr3(formats.open_volume(bad), os.path.join(self.tmp, "never.zarr"))
    self.assertEqual(sorted(os.listdir(self.tmp)), ["out.zarr", "vol_zarr2.zarr"])

  def test_convert_cli_errors_in_one_line(self):
    missing = run_cli("ssl_ct.convert", os.path.join(self.tmp, "missing.h5"), os.path.join(self.tmp, "o.zarr"))
    self.assertEqual(missing.returncode, 2)
    self.assertRegex(missing.stderr, r"^error: no volume at .*missing\.h5.*\n$")
    spec = helpers.write_in_format(np.arange(512, dtype=np.uint8).reshape(8, 8, 8), self.tmp, "npy")
    out = os.path.join(self.tmp, "o.zarr")
    self.assertEqual(run_cli("ssl_ct.convert", "--quiet", spec, out).returncode, 0)
    again = run_cli("ssl_ct.convert", "--quiet", spec, out)
    self.assertEqual(again.returncode, 2)
    self.assertIn("already exists", again.stderr)
    self.assertEqual(run_cli("ssl_ct.convert", "--quiet", "--overwrite", spec, out).returncode, 0)
    np.testing.assert_array_equal(formats.open_volume(out).read(), np.load(spec))


class OutputsApartTest(parameterized.TestCase):
  """No writer may write onto, into or around an input, whatever the backend holding it."""

  @parameterized.named_parameters((f.replace("-", "_"), f) for f in helpers.FORMATS)
  def test_every_backend_is_protected(self, fmt):
    tmp = tempfile.mkdtemp()
    data = os.path.join(tmp, "data")
    os.makedirs(data)
    spec = helpers.write_in_format(np.arange(6 * 7 * 8, dtype=np.uint16).reshape(6, 7, 8), data, fmt)
    (volume,) = sources.open_volumes(spec)
    inputs = sources.input_paths(spec, [volume])
    storage = formats.local_path(volume)
    before = helpers.tree_digest(data)
    with self.assertRaisesRegex(InputError, "is the input"):
      outputs.check_apart([storage], inputs)
    with self.assertRaisesRegex(InputError, "contains the input"):
      outputs.check_apart([data], inputs)
    if os.path.isdir(storage):
      with self.assertRaisesRegex(InputError, "lies inside the input"):
        outputs.check_apart([os.path.join(storage, "crop.zarr")], inputs)
    boxes = os.path.join(tmp, "boxes.json")
    report.write_boxes(boxes, {volume.name: {"start": [1, 1, 1], "stop": [5, 6, 7]}}, method="test", crop_margin=0.0)
    code, _, err = _run_in_process(
      hostile_corpus.Case("crop", [f"--boxes={boxes}", f"--data={spec}", f"--out={data}", "--overwrite"], ())
    )
    self.assertEqual(code, 2, err)
    self.assertIn("outside the data", err)
    self.assertEqual(helpers.tree_digest(data), before)

  def test_data_inside_the_best_checkpoint_folder_is_refused(self):
    workdir = tempfile.mkdtemp()
    data = os.path.join(workdir, "best", "scan.npy")  # where train.keep_best writes
    os.makedirs(os.path.dirname(data))
    np.save(data, np.zeros((8, 8, 8), np.uint8))
    before = helpers.tree_digest(os.path.dirname(data))
    config = rotation_xenopus.get_config("tiny")
    config.data.path = data
    with self.assertRaisesRegex(InputError, "outside the data"):
      main.run(config, workdir, "all")
    self.assertEqual(helpers.tree_digest(os.path.dirname(data)), before)

  def test_read_only_output_folder_is_one_line(self):
    tmp = tempfile.mkdtemp()  # root ignores permission bits, so the check is what is tested here
    with mock.patch.object(outputs.os, "access", return_value=False):
      with self.assertRaisesRegex(InputError, f"the folder {tmp} is read-only for this user; choose a writable"):
        outputs.check_writable(os.path.join(tmp, "out.zarr"), overwrite=False)

  def test_overwrite_replaces_only_what_ssl_ct_wrote(self):
    tmp = tempfile.mkdtemp()
    ours = os.path.join(tmp, "ours.zarr")
    zarr_writer.write_zarr3(np.ones((4, 4, 4), np.uint8), ours)
    self.assertTrue(outputs.is_ours(ours))
    outputs.check_writable(ours, overwrite=True)
    foreign = helpers.write_in_format(np.ones((4, 4, 4), np.uint8), tmp, "zarr2")
    self.assertFalse(outputs.is_ours(foreign))
    with self.assertRaisesRegex(InputError, "not written by ssl_ct"):
      outputs.check_writable(foreign, overwrite=True)


class SilentWrongResultTest(absltest.TestCase):
  def test_nan_slice_off_the_subsample_grid_is_named_where_it_is_read(self):
    array = np.random.default_rng(0).random((160, 160, 160)).astype(np.float32)
    array[10] = np.nan  # the intensity subsample reads odd slices only (stride 2 at 4 M voxels)
    dataset = helpers.array_dataset([array])
    volume = dataset.volumes[0]
    intensity.intensity_range(volume)  # passes: it never sees slice 10
    with self.assertRaisesRegex(InputError, "slice 10 along z of volume v0 holds NaN"):
      volume.slice(0, 10)
    with self.assertRaisesRegex(InputError, "along y of volume v0 holds NaN"):
      volume.slice(1, 3)
    with self.assertRaisesRegex(InputError, "slice 10 along z of volume v0 holds NaN"):
      volume.downsample(4)
    config = rotation_xenopus.get_config("tiny")
    loader = pipeline.make_rotation_loader(dataset, config.data, seed=0, batch_size=8)
    with self.assertRaisesRegex(InputError, "holds NaN or Inf voxels"):  # through grain, to the CLI's one line
      next(iter(loader))

  def test_missing_chunks_read_as_fill_only_when_asked(self):
    tmp = tempfile.mkdtemp()
    array = np.arange(16 * 16 * 16, dtype=np.uint16).reshape(16, 16, 16) + 1
    spec = helpers.write_in_format(array, tmp, "zarr2")
    os.remove(os.path.join(spec, "0.0.0"))
    with self.assertRaisesRegex(InputError, "missing.*--fill_missing"):
      formats.open_volume(spec).read()
    filled = formats.open_volume(spec, fill_missing=True).read()
    self.assertEqual(int(filled[:8, :8, :8].max()), 0)
    np.testing.assert_array_equal(filled[8:], array[8:])

  def test_writer_stores_every_chunk(self):
    tmp = tempfile.mkdtemp()
    mask = np.zeros((70, 40, 40), np.uint8)  # chunks of zeros (the fill value) are stored too
    out = os.path.join(tmp, "mask.zarr")
    zarr_writer.write_zarr3(mask, out)
    np.testing.assert_array_equal(formats.open_volume(out).read(), mask)  # strict reader: no chunk missing

  def test_compressed_tiff_and_hdf5_open(self):
    tmp = tempfile.mkdtemp()
    array = np.arange(6 * 20 * 24, dtype=np.uint16).reshape(6, 20, 24)
    for compression in ("lzw", "zstd", "deflate"):
      path = os.path.join(tmp, f"{compression}.tif")
      tifffile.imwrite(path, array, compression=compression)
      np.testing.assert_array_equal(formats.open_volume(path).read(), array)
    path = os.path.join(tmp, "filters.h5")
    filters = {
      "blosc": hdf5plugin.Blosc(cname="lz4", shuffle=hdf5plugin.Blosc.BITSHUFFLE),
      "lz4": hdf5plugin.LZ4(),
      "bitshuffle": hdf5plugin.Bitshuffle(),
    }
    with h5py.File(path, "w") as f:
      for name, options in filters.items():
        f.create_dataset(name, data=array, chunks=(2, 20, 24), **options)
    for name in filters:
      np.testing.assert_array_equal(formats.open_volume(f"{path}:/{name}").read(), array)


if __name__ == "__main__":
  absltest.main()
