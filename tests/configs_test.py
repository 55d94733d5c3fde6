"""Config parsing, validation, and the main entry point's data preparation."""

import json
import os
import subprocess
import sys
import tempfile

from absl.testing import absltest, parameterized

from ssl_ct import config_checks, crop, main
from ssl_ct.configs import common, rotation_xenopus, sorting_medaka
from ssl_ct.errors import InputError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_main(*args):
  return subprocess.run([sys.executable, "-m", "ssl_ct.main", *args], capture_output=True, text=True, cwd=REPO, timeout=300)


class ParseArgTest(absltest.TestCase):
  def test_values_flags_and_defaults(self):
    arg = common.parse_arg("variant=r18,demo,steps=5,lr=0.5", variant="r50", demo=False, tiny=False, steps=1, lr=1.0)
    self.assertEqual((arg.variant, arg.demo, arg.tiny, arg.steps, arg.lr), ("r18", True, False, 5, 0.5))
    self.assertEqual(common.parse_arg(None, variant="r50").variant, "r50")

  def test_unknown_and_malformed_args(self):
    with self.assertRaisesRegex(ValueError, "unknown config arg 'foo'; valid args: demo"):
      common.parse_arg("foo", demo=False)
    with self.assertRaisesRegex(ValueError, "needs a value"):
      common.parse_arg("variant", variant="r50")
    with self.assertRaises(ValueError):
      common.parse_arg("steps=many", steps=1)

  def test_parsed_arg_is_locked(self):
    arg = common.parse_arg("", demo=False)
    with self.assertRaises(AttributeError):
      arg.dmeo = True


class ConfigTest(parameterized.TestCase):
  @parameterized.product(module=(rotation_xenopus, sorting_medaka), arg=("", "demo", "tiny", "variant=r101"))
  def test_configs_validate(self, module, arg):
    config = module.get_config(arg)
    config_checks.validate(config)
    config_checks.validate_components(config)
    self.assertEqual(config.data.path, "")

  def test_paper_defaults(self):
    rot, srt = rotation_xenopus.get_config(), sorting_medaka.get_config()
    self.assertEqual((rot.model.name, len(rot.data.angles_deg), rot.data.downscale_to), ("resnet50", 7, 504))
    self.assertAlmostEqual(rot.data.twin_range * 504, 100)
    self.assertEqual((srt.model.name, srt.data.slices_per_batch, srt.loss.kw.margin), ("resnet18", 12, 0.2))

  @parameterized.parameters(
    ("opt.lr", -1.0),
    ("model.name", "resnet19"),
    ("opt.name", "lamb"),
    ("loss.name", "triplet"),
    ("data.angles_deg", (30, 60)),
    ("data.synthetic.shape", (64, 32, 48)),
    ("model.dropout", 1.0),
    ("model.dtype", "float16"),
    ("train.steps", 0),
    ("data.synthetic.kind", "zebrafish"),
    ("localize.twin_offsets", (0.05, 0.1)),  # fractions of the axis, as before: now slices
    ("localize.refine_axis", -1),
    ("localize.refine_false_positive", 0.0),
    ("localize.refine_cut_slices", 1),
    ("localize.refine_cut_rank", 101.0),
  )
  def test_bad_values_are_named(self, key, value):
    config = rotation_xenopus.get_config("tiny")
    section, _, leaf = key.rpartition(".")
    node = config
    for part in section.split("."):
      node = node[part]
    node[leaf] = value
    with self.assertRaisesRegex(InputError, f"config value {key}="):
      config_checks.validate(config)
      config_checks.validate_components(config)

  def test_one_measured_margin_over_the_three_default_is_every_face(self):
    config = rotation_xenopus.get_config("tiny")
    self.assertLen(config.crop.measured_margin, 3)
    config.crop.measured_margin = (0.01,)  # what --config.crop.measured_margin=0.01 gives over a tuple
    config_checks.validate(config)
    self.assertEqual(
      crop.face_pads([[True, True]] * 3, (100, 200, 300), 0.05, config.crop.measured_margin), [[1, 1], [2, 2], [3, 3]]
    )
    config.crop.measured_margin = (0.01, 0.02)
    with self.assertRaisesRegex(InputError, "config value crop.measured_margin="):
      config_checks.validate(config)


class MainTest(absltest.TestCase):
  def test_packaged_configs_are_reachable_outside_the_checkout(self):
    elsewhere = tempfile.mkdtemp()  # no configs/ folder here
    workdir = os.path.join(elsewhere, "w")
    for given in ("configs/rotation_xenopus.py:tiny", "rotation_xenopus:tiny"):
      result = subprocess.run(
        [sys.executable, "-m", "ssl_ct.main", f"--config={given}", f"--workdir={workdir}", "--mode=prepare"],
        capture_output=True,
        text=True,
        cwd=elsewhere,
        timeout=300,
      )
      self.assertEqual(result.returncode, 0, result.stderr[-2000:])
      self.assertIn("prepared 3 volumes", result.stdout)
    probe = "import importlib.util; print(importlib.util.find_spec('configs'))"  # no top-level package installed
    found = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=elsewhere, timeout=60)
    self.assertEqual(found.stdout.strip(), "None")
    self.assertEqual(main.packaged_config("no/such/file.py:demo"), "no/such/file.py:demo")  # errors name what was given

  def test_prepare_writes_config_and_caches_the_synthetic_set(self):
    workdir = tempfile.mkdtemp()
    first = run_main("--config=configs/rotation_xenopus.py:tiny", f"--workdir={workdir}", "--mode=prepare")
    self.assertEqual(first.returncode, 0, first.stderr[-2000:])
    self.assertIn("prepared 3 volumes (3 with ground truth)", first.stdout)
    with open(os.path.join(workdir, "config.json")) as f:
      self.assertEqual(json.load(f)["model"]["name"], "resnet_tiny")
    (set_dir,) = os.listdir(os.path.join(workdir, "data"))
    truth_file = os.path.join(workdir, "data", set_dir, "truth.json")
    stamp = os.path.getmtime(truth_file)
    second = run_main("--config=configs/rotation_xenopus.py:tiny", f"--workdir={workdir}", "--mode=prepare")
    self.assertEqual(second.returncode, 0, second.stderr[-2000:])
    self.assertEqual(os.path.getmtime(truth_file), stamp)
    changed = run_main(
      "--config=configs/rotation_xenopus.py:tiny", f"--workdir={workdir}", "--mode=prepare", "--config.opt.lr=0.5"
    )
    self.assertEqual(changed.returncode, 2)
    self.assertIn("holds a different config", changed.stderr)

  def test_bad_command_lines_fail_in_one_line(self):
    workdir = tempfile.mkdtemp()
    cases = {
      "--config.opt.lrr=1": 'did you mean "lr"',
      "--config.opt.lr=-3": "config value opt.lr=-3.0 is invalid",
      "--config.data.path=/no/such/folder": "no volume at /no/such/folder",
    }
    for override, expected in cases.items():
      result = run_main("--config=configs/rotation_xenopus.py:tiny", f"--workdir={workdir}/{len(override)}", override)
      self.assertEqual(result.returncode, 2, override)
      self.assertIn(expected, result.stderr)
      self.assertEqual(result.stderr.count("\n"), 1, result.stderr)
    result = run_main("--config=configs/rotation_xenopus.py:tiny,tpyo", f"--workdir={workdir}")
    self.assertEqual(result.returncode, 2)
    self.assertIn("unknown config arg 'tpyo'", result.stderr)


if __name__ == "__main__":
  absltest.main()
