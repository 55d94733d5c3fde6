"""The Python API: load a trained localizer from a workdir or an export, localize any format, crop."""

import json
import os
import tempfile

import numpy as np
from absl.testing import absltest, parameterized

import ssl_ct
from ssl_ct import main, report, results, run_localization, train
from ssl_ct.configs import rotation_xenopus
from ssl_ct.data import formats, synthetic
from ssl_ct.errors import InputError
from tests import helpers


class ApiTest(parameterized.TestCase):
  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.workdir = tempfile.mkdtemp()
    cls.config = rotation_xenopus.get_config("tiny")
    cls.config.train.steps = 3
    cls.config.data.cache_dir = tempfile.mkdtemp()
    state = train.train_and_evaluate(cls.config, cls.workdir)
    with open(os.path.join(cls.workdir, "config.json"), "w") as f:  # as ssl_ct.main writes it
      f.write(cls.config.to_json_best_effort(indent=1, sort_keys=True))
    run_localization.localize_workdir(cls.config, cls.workdir, params=train.host_params(state.params))
    syn = cls.config.data.synthetic
    cls.data = synthetic.cached_set(
      cls.config.data.cache_dir, kind=syn.kind, num_volumes=syn.num_volumes, shape=tuple(syn.shape), seed=syn.seed, progress=False
    )
    cls.localizer = ssl_ct.load_localizer(cls.workdir)

  def _saved(self):
    with open(os.path.join(results.latest(self.workdir), "boxes.json")) as f:
      meta = json.load(f)["ssl_ct"]
    boxes, _ = report.read_boxes(os.path.join(results.latest(self.workdir), "boxes.json"))
    return boxes, meta

  def test_workdir_localizer_reproduces_the_localize_run(self):
    boxes, meta = self._saved()
    for name in boxes:
      result = self.localizer.localize(os.path.join(self.data, f"{name}.zarr"))
      self.assertEqual(result.name, name)
      self.assertEqual(result.box, boxes[name])
      self.assertEqual(result.outcome, meta["outcomes"][name])
      self.assertEqual(result.face_margins, meta.get("face_margins", {}).get(name))  # none for a distrusted (null) box
      if meta["distrust"]:  # a 3-step model is not trusted: its own boxes are recorded beside the null ones
        self.assertEqual(result.model_box, meta["model_boxes"][name])

  def test_export_and_reload_give_bit_identical_results(self):
    out = os.path.join(tempfile.mkdtemp(), "exported")
    ssl_ct.api.export(self.localizer, out)
    here = os.getcwd()
    os.chdir(tempfile.mkdtemp())  # loaded from another directory, with nothing of the workdir around
    try:
      exported = ssl_ct.load_localizer(out)
    finally:
      os.chdir(here)
    self.assertEqual(
      (exported.method, exported.crop_margin, exported.distrust),
      (self.localizer.method, self.localizer.crop_margin, self.localizer.distrust),
    )
    path = os.path.join(self.data, "xenopus_001.zarr")
    a, b = self.localizer.localize(path), exported.localize(path)
    self.assertEqual((a.box, a.model_box, a.outcome), (b.box, b.model_box, b.outcome))
    for axis in range(3):
      np.testing.assert_array_equal(a.diagnostics["curves"][axis], b.diagnostics["curves"][axis])
    with self.assertRaisesRegex(InputError, "already exists"):
      ssl_ct.api.export(self.localizer, out)

  def test_main_localizes_with_an_exported_model_in_a_new_workdir(self):
    exported = ssl_ct.api.export(self.localizer, os.path.join(tempfile.mkdtemp(), "exported"))
    config = rotation_xenopus.get_config("tiny")
    config.data.cache_dir = self.config.data.cache_dir
    config.localize.model = exported
    config.data.voxel_size_um = (2.5,)  # the synthetic zarr stores record none
    fresh = tempfile.mkdtemp()  # nothing was trained here
    main.run(config, fresh, "localize")
    boxes, meta = self._saved()
    with open(os.path.join(results.latest(fresh), "boxes.json")) as f:
      here = json.load(f)
    self.assertEqual(here["boxes"], boxes)
    self.assertEqual(here["ssl_ct"]["outcomes"], meta["outcomes"])
    self.assertEqual(here["ssl_ct"]["voxel_size_um"], {name: [2.5, 2.5, 2.5] for name in boxes})
    self.assertTrue(os.path.exists(os.path.join(results.latest(fresh), "boxes_napari.csv")))
    self.assertFalse(os.path.exists(os.path.join(fresh, "checkpoints")))
    config.localize.model = ""
    with self.assertRaisesRegex(InputError, "nothing was trained there.*localize.model"):
      main.run(config, tempfile.mkdtemp(), "localize")
    config.localize.model, config.model.width = exported, 8
    with self.assertRaisesRegex(InputError, r"config model=.*\"width\": 8.* differs from"):
      main.run(config, tempfile.mkdtemp(), "localize")
    config.model.width = self.config.model.width
    with self.assertRaisesRegex(InputError, "use it with --mode=localize"):
      main.run(config, tempfile.mkdtemp(), "train")

  @parameterized.named_parameters((f.replace("-", "_"), f) for f in helpers.FORMATS)
  def test_every_format_localizes(self, fmt):
    array = formats.open_volume(os.path.join(self.data, "xenopus_000.zarr")).read()
    spec = helpers.write_in_format(array, tempfile.mkdtemp(), fmt)
    result = self.localizer.localize(spec)
    reference = self.localizer.localize(array, name="xenopus_000")
    self.assertEqual(result.shape, array.shape)
    self.assertEqual((result.box, result.model_box, result.outcome), (reference.box, reference.model_box, reference.outcome))

  def test_crop_writes_the_box_with_its_margin(self):
    array = np.arange(20 * 22 * 24, dtype=np.uint16).reshape(20, 22, 24)
    spec = helpers.write_in_format(array, tempfile.mkdtemp(), "npy")
    out = os.path.join(tempfile.mkdtemp(), "crop.zarr")
    ssl_ct.write_crop(spec, {"start": [5, 5, 5], "stop": [10, 12, 14]}, out, margin=0.1)
    np.testing.assert_array_equal(formats.open_volume(out).read(), array[3:12, 2:15, 2:17])  # ceil(0.1 * side) = 2, 3, 3
    per_face = os.path.join(tempfile.mkdtemp(), "crop.zarr")
    ssl_ct.write_crop(
      spec, {"start": [5, 5, 5], "stop": [10, 12, 14]}, per_face, margin=0.1, face_margins=[[0, 1], [2, 0], [1, 1]]
    )
    np.testing.assert_array_equal(formats.open_volume(per_face).read(), array[5:11, 3:12, 4:15])
    with self.assertRaisesRegex(InputError, "outside the volume|past the end"):
      ssl_ct.write_crop(spec, {"start": [0, 0, 0], "stop": [30, 22, 24]}, os.path.join(tempfile.mkdtemp(), "o.zarr"), margin=0.0)
    with self.assertRaisesRegex(InputError, "is the input"):
      ssl_ct.write_crop(spec, None, spec, margin=0.0, overwrite=True)

  def test_load_localizer_names_what_it_needs(self):
    with self.assertRaisesRegex(InputError, "neither an ssl_ct workdir"):
      ssl_ct.load_localizer(tempfile.mkdtemp())


if __name__ == "__main__":
  absltest.main()
