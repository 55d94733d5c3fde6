"""A corpus of hostile inputs for the four CLIs, generated on the fly (no binary fixtures).

Each builder makes its inputs in a fresh folder and returns a Case: the command line, the
paths that must come out byte-identical, and substrings the one `error:` line must hold (the
input it names and the problem). bad_input_test.py runs every case.
"""

import dataclasses
import json
import os

import h5py
import numpy as np
import tifffile

from ssl_ct.data import zarr_writer
from tests import helpers

CLIS = ("convert", "crop", "phantoms", "main")
TINY = "--config=configs/rotation_xenopus.py:tiny"


@dataclasses.dataclass
class Case:
  cli: str  # one of CLIS
  argv: list
  expect: tuple  # substrings of the error line
  inputs: tuple = ()  # paths whose bytes must not change
  env: dict = dataclasses.field(default_factory=dict)


def _volume(seed=0, shape=(12, 16, 16), dtype=np.uint16):
  rng = np.random.default_rng(seed)
  return (rng.random(shape) * 1000).astype(dtype)


def _write(tmp, fmt, array=None, name=None):
  folder = os.path.join(tmp, name) if name else tmp
  os.makedirs(folder, exist_ok=True)
  return helpers.write_in_format(_volume() if array is None else array, folder, fmt)


def _npy(tmp, array, name="scan.npy"):
  path = os.path.join(tmp, name)
  np.save(path, array)
  return path


def _text(path, text):
  with open(path, "w") as f:
    f.write(text)
  return path


def _boxes(tmp, boxes, name="boxes.json", margin=0.05):
  return _text(
    os.path.join(tmp, name), json.dumps({"ssl_ct": {"kind": "boxes", "version": 2, "crop_margin": margin}, "boxes": boxes})
  )


def _data_dir(tmp, fmt="zarr3", names=("a",)):
  """A data folder holding one small volume per name, in `fmt`."""
  data = os.path.join(tmp, "data")
  os.makedirs(data)
  for i, name in enumerate(names):
    path = helpers.write_in_format(_volume(i), data, fmt)
    os.rename(path, os.path.join(data, name + os.path.splitext(path)[1]))
  return data


BOX = {"start": [2, 3, 4], "stop": [10, 12, 14]}


# --- convert ------------------------------------------------------------------------------------
def convert_missing_input(tmp):
  return Case("convert", [os.path.join(tmp, "missing.h5"), os.path.join(tmp, "o.zarr")], ("missing.h5", "no volume at"))


def convert_output_without_suffix(tmp):
  src = _write(tmp, "npy")
  return Case("convert", [src, os.path.join(tmp, "out")], ("out", "must end in .zarr"), (src,))


def convert_output_is_input(tmp):
  src = _write(tmp, "zarr3")
  return Case("convert", ["--overwrite", src, src], ("vol_zarr3.zarr", "is the input"), (src,))


def convert_output_inside_input(tmp):
  src = _write(tmp, "zarr2")
  return Case("convert", [src, os.path.join(src, "copy.zarr")], ("copy.zarr", "lies inside the input"), (src,))


def convert_output_through_symlink(tmp):
  src = _write(tmp, "zarr3", name="real")
  os.symlink(os.path.join(tmp, "real"), os.path.join(tmp, "link"))
  return Case("convert", ["--overwrite", src, os.path.join(tmp, "link", "vol_zarr3.zarr")], ("link", "is the input"), (src,))


def convert_output_contains_input(tmp):
  folder = os.path.join(tmp, "box.zarr")
  src = _write(folder, "npy")
  return Case("convert", [src, folder], ("box.zarr", "contains the input"), (src,))


def convert_output_exists(tmp):
  src = _write(tmp, "npy")
  out = os.path.join(tmp, "o.zarr")
  zarr_writer.write_zarr3(_volume(), out)
  return Case("convert", [src, out], ("o.zarr", "already exists", "--overwrite"), (src, out))


def convert_overwrite_foreign_folder(tmp):
  src = _write(tmp, "npy")
  out = os.path.join(tmp, "mine.zarr")
  os.makedirs(out)
  _text(os.path.join(out, "notes.txt"), "the user's own files")
  return Case("convert", ["--overwrite", src, out], ("mine.zarr", "not written by ssl_ct"), (src, out))


def convert_overwrite_foreign_zarr(tmp):
  src = _write(tmp, "npy")
  other = _write(tmp, "zarr2", name="other")  # a zarr some other tool wrote
  out = os.path.join(tmp, "other.zarr")
  os.rename(other, out)
  return Case("convert", ["--overwrite", src, out], ("other.zarr", "not written by ssl_ct"), (src, out))


def convert_parent_is_file(tmp):
  src = _write(tmp, "npy")
  blocker = _text(os.path.join(tmp, "afile"), "x")
  return Case("convert", [src, os.path.join(blocker, "o.zarr")], ("afile", "is a file"), (src, blocker))


def convert_2d_array(tmp):
  src = _npy(tmp, np.zeros((4, 5), np.uint8))
  return Case("convert", [src, os.path.join(tmp, "o.zarr")], ("scan.npy", "expected a 3D volume"), (src,))


def convert_4d_array(tmp):
  src = _npy(tmp, np.zeros((2, 3, 4, 5), np.uint8))
  return Case("convert", [src, os.path.join(tmp, "o.zarr")], ("scan.npy", "expected a 3D volume"), (src,))


def convert_empty_array(tmp):
  src = _npy(tmp, np.zeros((0, 5, 5), np.uint8))
  return Case("convert", [src, os.path.join(tmp, "o.zarr")], ("scan.npy", "empty"), (src,))


def convert_bool_array(tmp):
  src = _npy(tmp, np.zeros((3, 4, 5), bool))
  return Case("convert", [src, os.path.join(tmp, "o.zarr")], ("scan.npy", "unsupported dtype bool"), (src,))


def convert_complex_array(tmp):
  src = _npy(tmp, np.zeros((3, 4, 5), np.complex64))
  return Case("convert", [src, os.path.join(tmp, "o.zarr")], ("scan.npy", "unsupported dtype complex64"), (src,))


def convert_truncated_npy(tmp):
  src = _npy(tmp, _volume())
  with open(src, "r+b") as f:
    f.truncate(200)
  return Case("convert", [src, os.path.join(tmp, "o.zarr")], ("scan.npy", "cannot open"), (src,))


def convert_zarr3_metadata_not_json(tmp):
  src = _write(tmp, "zarr3")
  _text(os.path.join(src, "zarr.json"), '{"zarr_format": 3, "node_type": "array",')
  return Case("convert", [src, os.path.join(tmp, "o.zarr")], ("zarr.json", "invalid JSON"), (src,))


def convert_zarr3_metadata_not_object(tmp):
  src = _write(tmp, "zarr3")
  _text(os.path.join(src, "zarr.json"), "[3, 2, 1]")
  return Case("convert", [src, os.path.join(tmp, "o.zarr")], ("zarr.json", "expected a JSON object"), (src,))


def convert_zarr2_metadata_not_json(tmp):
  src = _write(tmp, "zarr2")
  _text(os.path.join(src, ".zarray"), "{not json")
  return Case("convert", [src, os.path.join(tmp, "o.zarr")], ("vol_zarr2.zarr", "cannot open"), (src,))


def convert_zarr_group_attributes_not_json(tmp):
  group = os.path.join(tmp, "group.zarr")
  os.makedirs(group)
  _text(os.path.join(group, ".zgroup"), '{"zarr_format": 2}')
  _text(os.path.join(group, ".zattrs"), '{"multiscales": [')
  return Case("convert", [group, os.path.join(tmp, "o.zarr")], (".zattrs", "invalid JSON"), (group,))


def convert_zarr_group_of_two_arrays(tmp):
  group = os.path.join(tmp, "group.zarr")
  os.makedirs(group)
  _text(os.path.join(group, ".zgroup"), '{"zarr_format": 2}')
  for name in ("a", "b"):
    os.rename(_write(tmp, "zarr2", name=name), os.path.join(group, name))
  return Case("convert", [group, os.path.join(tmp, "o.zarr")], ("group.zarr", "point to one array"), (group,))


def convert_n5_attributes_not_json(tmp):
  src = _write(tmp, "n5")
  _text(os.path.join(src, "attributes.json"), "{")
  return Case("convert", [src, os.path.join(tmp, "o.zarr")], ("attributes.json", "invalid JSON"), (src,))


def convert_spec_file_not_json(tmp):
  spec = _text(os.path.join(tmp, "scan.json"), '{"driver": "zarr3", ')
  return Case("convert", [spec, os.path.join(tmp, "o.zarr")], ("scan.json", "invalid JSON"), (spec,))


def convert_spec_file_not_object(tmp):
  spec = _text(os.path.join(tmp, "scan.json"), '["zarr3"]')
  return Case("convert", [spec, os.path.join(tmp, "o.zarr")], ("scan.json", "JSON object"), (spec,))


def convert_inline_spec_not_json(tmp):
  return Case("convert", ['{"driver": zarr3}', os.path.join(tmp, "o.zarr")], ("tensorstore spec", "invalid JSON"))


def convert_spec_unknown_driver(tmp):
  spec = _text(os.path.join(tmp, "scan.json"), json.dumps({"driver": "zarr9", "kvstore": {"driver": "file", "path": tmp}}))
  return Case("convert", [spec, os.path.join(tmp, "o.zarr")], ("cannot open", "zarr9"), (spec,))


def convert_zarr2_missing_chunk(tmp):
  src = _write(tmp, "zarr2")
  os.remove(os.path.join(src, "1.1.1"))
  return Case("convert", [src, os.path.join(tmp, "o.zarr")], ("vol_zarr2.zarr", "missing", "--fill_missing"), (src,))


def convert_zarr3_missing_shard(tmp):
  src = _write(tmp, "zarr3", array=_volume(shape=(140, 20, 20)))  # two shards along z
  os.remove(os.path.join(src, "c", "1", "0", "0"))
  return Case("convert", [src, os.path.join(tmp, "o.zarr")], ("vol_zarr3.zarr", "missing", "--fill_missing"), (src,))


def convert_n5_missing_block(tmp):
  src = _write(tmp, "n5")
  os.remove(os.path.join(src, "1", "1", "1"))
  return Case("convert", [src, os.path.join(tmp, "o.zarr")], ("vol_n5.n5", "missing", "--fill_missing"), (src,))


def convert_zarr2_corrupt_chunk(tmp):
  src = _write(tmp, "zarr2")
  _text(os.path.join(src, "0.1.0"), "garbage, not a blosc chunk")
  return Case("convert", [src, os.path.join(tmp, "o.zarr")], ("vol_zarr2.zarr", "corrupt"), (src,))


def convert_truncated_hdf5(tmp):
  src = _write(tmp, "hdf5-dxchange")
  with open(src, "r+b") as f:
    f.truncate(300)
  return Case("convert", [src, os.path.join(tmp, "o.zarr")], ("vol_hdf5-dxchange.h5", "cannot open as HDF5"), (src,))


def convert_hdf5_dataset_missing(tmp):
  src = _write(tmp, "hdf5-dxchange")
  return Case("convert", [f"{src}:/exchange/nope", os.path.join(tmp, "o.zarr")], ("/exchange/nope", "/exchange/data"), (src,))


def convert_hdf5_ambiguous(tmp):
  path = os.path.join(tmp, "two.h5")
  with h5py.File(path, "w") as f:
    f["a"] = np.zeros((3, 3, 3))
    f["b"] = np.zeros((3, 3, 3))
  return Case("convert", [path, os.path.join(tmp, "o.zarr")], ("two.h5", "/a, /b", "two.h5:/path/to/dataset"), (path,))


def convert_hdf5_without_volume(tmp):
  path = os.path.join(tmp, "flat.h5")
  with h5py.File(path, "w") as f:
    f["image"] = np.zeros((3, 3))
  return Case("convert", [path, os.path.join(tmp, "o.zarr")], ("flat.h5", "3D datasets: none"), (path,))


def convert_tiff_stack_mixed_dtypes(tmp):
  folder = os.path.join(tmp, "stack")
  os.makedirs(folder)
  for z in range(4):
    tifffile.imwrite(
      os.path.join(folder, f"s{z}.tif"), np.full((6, 6), 337.42 if z == 2 else 337, np.float32 if z == 2 else np.uint16)
    )
  return Case("convert", [folder, os.path.join(tmp, "o.zarr")], ("s2.tif", "dtype float32"), (folder,))


def convert_tiff_stack_mixed_shapes(tmp):
  folder = os.path.join(tmp, "stack")
  os.makedirs(folder)
  for z in range(4):
    tifffile.imwrite(os.path.join(folder, f"s{z}.tif"), np.zeros((6, 7 if z == 3 else 6), np.uint8))
  return Case("convert", [folder, os.path.join(tmp, "o.zarr")], ("s3.tif", "same 2D shape"), (folder,))


def convert_corrupt_tiff(tmp):
  path = _text(os.path.join(tmp, "scan.tif"), "II*\x00 this is not really a TIFF")
  return Case("convert", [path, os.path.join(tmp, "o.zarr")], ("scan.tif", "cannot open as tiff"), (path,))


def convert_unknown_format(tmp):
  path = _text(os.path.join(tmp, "scan.raw"), "raw bytes")
  return Case("convert", [path, os.path.join(tmp, "o.zarr")], ("scan.raw", "not a volume format"), (path,))


def convert_folder_without_volume(tmp):
  folder = os.path.join(tmp, "notes")
  os.makedirs(folder)
  _text(os.path.join(folder, "a.txt"), "x")
  return Case("convert", [folder, os.path.join(tmp, "o.zarr")], ("notes", "not a volume format"), (folder,))


def convert_unknown_flag(tmp):
  src = _write(tmp, "npy")
  return Case("convert", ["--fill-missing", src, os.path.join(tmp, "o.zarr")], ("fill-missing", "--help"), (src,))


def convert_one_positional_argument(tmp):
  src = _write(tmp, "npy")
  return Case("convert", [src], ("IN OUT.ZARR", src), (src,))


def convert_unreachable_gcs(tmp):
  return Case(
    "convert",
    ["gs://ssl-ct-no-such-bucket/scan.zarr", os.path.join(tmp, "o.zarr")],
    ("gs://ssl-ct-no-such-bucket", "no answer within"),
    env={"SSL_CT_REMOTE_TIMEOUT_S": "1"},
  )


def convert_unreachable_http(tmp):
  return Case(
    "convert",
    ["http://127.0.0.1:9/scan.zarr", os.path.join(tmp, "o.zarr")],
    ("127.0.0.1:9", "no answer within"),
    env={"SSL_CT_REMOTE_TIMEOUT_S": "1"},
  )


# --- crop ---------------------------------------------------------------------------------------
def _crop_case(tmp, boxes_text=None, boxes=None, expect=(), out=None, extra=(), fmt="zarr3"):
  data = _data_dir(tmp, fmt)
  if boxes_text is not None:
    path = _text(os.path.join(tmp, "boxes.json"), boxes_text)
  else:
    path = _boxes(tmp, {"a": BOX} if boxes is None else boxes)
  out = out or os.path.join(tmp, "out")
  return Case("crop", [f"--boxes={path}", f"--data={data}", f"--out={out}", "--quiet", *extra], expect, (data, path))


def crop_boxes_missing(tmp):
  data = _data_dir(tmp)
  return Case(
    "crop", [f"--boxes={tmp}/none.json", f"--data={data}", f"--out={tmp}/out"], ("none.json", "does not exist"), (data,)
  )


def crop_boxes_not_json(tmp):
  return _crop_case(tmp, boxes_text='{"a": {"start": [1, 2,', expect=("boxes.json", "not valid JSON"))


def crop_boxes_a_list(tmp):
  return _crop_case(tmp, boxes_text="[1, 2, 3]", expect=("boxes.json", "must map volume names"))


def crop_box_past_the_end(tmp):
  return _crop_case(tmp, boxes={"a": {"start": [0, 0, 0], "stop": [12, 16, 17]}}, expect=("'a'", "past the end", "along x"))


def crop_box_start_after_stop(tmp):
  return _crop_case(tmp, boxes={"a": {"start": [5, 0, 0], "stop": [3, 16, 16]}}, expect=("'a'", "not before stop", "along z"))


def crop_box_negative(tmp):
  return _crop_case(tmp, boxes={"a": {"start": [0, -2, 0], "stop": [3, 16, 16]}}, expect=("'a'", "negative", "along y"))


def crop_box_floats(tmp):
  return _crop_case(tmp, boxes={"a": {"start": [0.5, 0, 0], "stop": [3, 16, 16]}}, expect=("'a'", "whole voxel indices"))


def crop_box_wrong_length(tmp):
  return _crop_case(tmp, boxes={"a": {"start": [0, 0], "stop": [3, 16, 16]}}, expect=("'a'", "list of 3"))


def crop_box_without_stop(tmp):
  return _crop_case(tmp, boxes={"a": {"start": [0, 0, 0]}}, expect=("'a'", "a box must be"))


def crop_box_of_booleans(tmp):
  return _crop_case(tmp, boxes={"a": {"start": [False, 0, 0], "stop": [True, 16, 16]}}, expect=("'a'", "whole voxel indices"))


def crop_box_not_an_object(tmp):
  return _crop_case(tmp, boxes={"a": [0, 0, 0, 3, 16, 16]}, expect=("'a'", "a box must be"))


def crop_box_names_unknown_volume(tmp):
  return _crop_case(tmp, boxes={"a": BOX, "ghost": BOX}, expect=("ghost", "not found in the data"))


def crop_boxes_bad_recorded_margin(tmp):
  data = _data_dir(tmp)
  path = _boxes(tmp, {"a": BOX}, margin=3)
  return Case("crop", [f"--boxes={path}", f"--data={data}", f"--out={tmp}/out"], ("boxes.json", "crop_margin"), (data, path))


def crop_out_is_data_with_overwrite(tmp):
  case = _crop_case(tmp, expect=("is the input", "outside the data"), extra=("--overwrite",))
  case.argv[2] = f"--out={os.path.join(tmp, 'data')}"
  return case


def crop_out_is_data_npy(tmp):
  case = _crop_case(tmp, fmt="npy", expect=("is the input", "outside the data"))
  case.argv[2] = f"--out={os.path.join(tmp, 'data')}"
  return case


def crop_out_inside_data(tmp):
  case = _crop_case(tmp, expect=("lies inside the input", "outside the data"))
  case.argv[2] = f"--out={os.path.join(tmp, 'data', 'cropped')}"
  return case


def crop_out_is_data_through_symlink(tmp):
  case = _crop_case(tmp, expect=("outside the data",), extra=("--overwrite",))
  os.symlink(os.path.join(tmp, "data"), os.path.join(tmp, "alias"))
  case.argv[2] = f"--out={os.path.join(tmp, 'alias')}"
  return case


def crop_out_is_a_file(tmp):
  blocker = _text(os.path.join(tmp, "out"), "a file")
  case = _crop_case(tmp, expect=("out", "is a file"), out=blocker)
  case.inputs += (blocker,)
  return case


def crop_margin_out_of_range(tmp):
  return _crop_case(tmp, expect=("--margin=0.9", "outside [0, 0.5]"), extra=("--margin=0.9",))


def crop_margin_not_a_number(tmp):
  return _crop_case(tmp, expect=("--margin=wide", "not a fraction of each side", "50um"), extra=("--margin=wide",))


def crop_margin_um_without_voxel_size(tmp):
  return _crop_case(tmp, expect=("50um", "needs the voxel size", "--voxel_size_um"), extra=("--margin=50um",))


def crop_voxel_size_not_positive(tmp):
  return _crop_case(tmp, expect=("--voxel_size_um=0,1,1", "positive"), extra=("--voxel_size_um=0,1,1",))


def crop_missing_required_flag(tmp):
  data = _data_dir(tmp)
  return Case("crop", [f"--data={data}", f"--out={tmp}/out"], ("--boxes", "required"), (data,))


def crop_levels_not_an_integer(tmp):
  return _crop_case(tmp, expect=("--levels=two", "invalid literal"), extra=("--levels=two",))


def crop_unexpected_positional_argument(tmp):
  return _crop_case(tmp, expect=("expected positional arguments none", "extra"), extra=("extra",))


def crop_truth_not_json(tmp):
  case = _crop_case(tmp, expect=("truth.json", "not valid JSON"))
  _text(os.path.join(tmp, "data", "truth.json"), "{oops")
  return case


def crop_truth_box_outside(tmp):
  case = _crop_case(tmp, expect=("truth.json", "'a'", "past the end"))
  _text(os.path.join(tmp, "data", "truth.json"), json.dumps({"a": {"box": {"start": [0, 0, 0], "stop": [99, 16, 16]}}}))
  return case


def crop_existing_crop_differs(tmp):
  case = _crop_case(tmp, expect=("a.zarr", "cropped differently", "--overwrite"))
  from ssl_ct import crop

  crop.main([*case.argv[:3], "--quiet", "--margin=0.2"])
  case.inputs += (os.path.join(tmp, "out", "a.zarr"),)
  return case


def crop_foreign_report_in_out(tmp):
  case = _crop_case(tmp, expect=("crop_report.json", "not written by ssl_ct"))
  os.makedirs(os.path.join(tmp, "out"))
  report = _text(os.path.join(tmp, "out", "crop_report.json"), '{"mine": true}')
  case.inputs += (report,)
  return case


def crop_overwrite_foreign_store(tmp):
  case = _crop_case(tmp, expect=("a.zarr", "not written by ssl_ct"), extra=("--overwrite",))
  foreign = _write(tmp, "zarr2", name="elsewhere")
  os.makedirs(os.path.join(tmp, "out"))
  os.rename(foreign, os.path.join(tmp, "out", "a.zarr"))
  case.inputs += (os.path.join(tmp, "out", "a.zarr"),)
  return case


def crop_data_missing(tmp):
  path = _boxes(tmp, {"a": BOX})
  return Case("crop", [f"--boxes={path}", f"--data={tmp}/nowhere", f"--out={tmp}/out"], ("nowhere", "no volume at"), (path,))


def crop_data_empty_folder(tmp):
  path = _boxes(tmp, {"a": BOX})
  os.makedirs(os.path.join(tmp, "empty"))
  return Case("crop", [f"--boxes={path}", f"--data={tmp}/empty", f"--out={tmp}/out"], ("empty", "holds no volumes"), (path,))


def crop_missing_chunk_in_source(tmp):
  case = _crop_case(tmp, fmt="zarr2", expect=("a.zarr", "missing", "--fill_missing"))
  os.remove(os.path.join(tmp, "data", "a.zarr", "0.0.0"))
  return case


# --- phantoms -----------------------------------------------------------------------------------
def phantoms_negative_z_jitter(tmp):
  return Case("phantoms", ["--z_jitter=-0.1", os.path.join(tmp, "set")], ("z jitter -0.1", "[0, 0.5]"))


def phantoms_large_z_jitter(tmp):
  return Case("phantoms", ["--z_jitter=0.9", os.path.join(tmp, "set")], ("z jitter 0.9", "[0, 0.5]"))


def phantoms_shape_of_two(tmp):
  return Case("phantoms", ["--shape=32,32", os.path.join(tmp, "set")], ("--shape", "three integers"))


def phantoms_shape_not_square(tmp):
  return Case("phantoms", ["--shape=32,32,40", os.path.join(tmp, "set")], ("(32, 32, 40)", "square axial slices"))


def phantoms_shape_too_small(tmp):
  return Case("phantoms", ["--shape=8,8,8", os.path.join(tmp, "set")], ("(8, 8, 8)", "n >= 16"))


def phantoms_no_volumes(tmp):
  return Case("phantoms", ["--num=0", os.path.join(tmp, "set")], ("number of volumes", ">= 1"))


def phantoms_num_not_an_integer(tmp):
  return Case("phantoms", ["--num=many", os.path.join(tmp, "set")], ("--num=many", "--help"))


def phantoms_unknown_kind(tmp):
  return Case("phantoms", ["--kind=zebrafish", os.path.join(tmp, "set")], ("--kind", "zebrafish"))


def phantoms_output_exists(tmp):
  os.makedirs(os.path.join(tmp, "set"))
  mine = _text(os.path.join(tmp, "set", "mine.txt"), "x")
  return Case("phantoms", ["--num=1", "--shape=16,16,16", os.path.join(tmp, "set")], ("set", "already exists"), (mine,))


def phantoms_overwrite_foreign(tmp):
  os.makedirs(os.path.join(tmp, "set"))
  mine = _text(os.path.join(tmp, "set", "mine.txt"), "x")
  argv = ["--num=1", "--shape=16,16,16", "--overwrite", os.path.join(tmp, "set")]
  return Case("phantoms", argv, ("set", "not written by ssl_ct"), (mine,))


def phantoms_parent_is_file(tmp):
  blocker = _text(os.path.join(tmp, "afile"), "x")
  return Case("phantoms", ["--num=1", "--shape=16,16,16", os.path.join(blocker, "set")], ("afile", "is a file"), (blocker,))


# --- main ---------------------------------------------------------------------------------------
def _workdir(tmp):
  return f"--workdir={os.path.join(tmp, 'w')}"


def main_override_typo(tmp):
  return Case("main", [TINY, _workdir(tmp), "--config.opt.lrr=1"], ("--config.opt.lrr", 'did you mean "lr"'))


def main_section_typo(tmp):
  return Case("main", [TINY, _workdir(tmp), "--config.optim.lr=1"], ("--config.optim.lr", 'did you mean "opt"'))


def main_override_wrong_type(tmp):
  return Case("main", [TINY, _workdir(tmp), "--config.train.steps=abc"], ("--config.train.steps=abc", "cannot parse"))


def main_infinite_learning_rate(tmp):
  return Case("main", [TINY, _workdir(tmp), "--config.opt.lr=inf"], ("opt.lr=inf", "positive number"))


def main_nan_learning_rate(tmp):
  return Case("main", [TINY, _workdir(tmp), "--config.opt.lr=nan"], ("opt.lr=nan", "positive number"))


def main_unknown_optimizer(tmp):
  return Case("main", [TINY, _workdir(tmp), "--config.opt.name=lamb"], ("opt.name='lamb'", "adamw"))


def main_unknown_model(tmp):
  return Case("main", [TINY, _workdir(tmp), "--config.model.name=resnet19"], ("model.name='resnet19'", "resnet18"))


def main_bad_remote_timeout(tmp):
  return Case("main", [TINY, _workdir(tmp), "--config.data.remote_timeout_s=0"], ("data.remote_timeout_s", "positive"))


def main_bad_voxel_size(tmp):
  return Case("main", [TINY, _workdir(tmp), "--config.data.voxel_size_um=(0.5, -1.0, 1.0)"], ("data.voxel_size_um", "> 0"))


def main_localize_model_missing(tmp):
  return Case(
    "main",
    [TINY, _workdir(tmp), "--mode=localize", f"--config.localize.model={os.path.join(tmp, 'nowhere')}"],
    ("localize.model=", "nowhere", "neither a trained workdir nor an exported localizer"),
  )


def main_config_syntax_error(tmp):
  path = _text(os.path.join(tmp, "cfg.py"), "def get_config(:\n  pass\n")
  return Case("main", [f"--config={path}", _workdir(tmp)], ("cfg.py", "syntax error"), (path,))


def main_config_raises(tmp):
  path = _text(os.path.join(tmp, "cfg.py"), "def get_config():\n  return 1 / 0\n")
  return Case("main", [f"--config={path}", _workdir(tmp)], ("ZeroDivisionError", "fix the file"), (path,))


def main_config_missing(tmp):
  return Case("main", [f"--config={tmp}/none.py", _workdir(tmp)], ("none.py", "check the --config path"))


def main_config_without_get_config(tmp):
  path = _text(os.path.join(tmp, "cfg.py"), "x = 1\n")
  return Case("main", [f"--config={path}", _workdir(tmp)], ("get_config",), (path,))


def main_bad_config_arg(tmp):
  return Case("main", ["--config=configs/rotation_xenopus.py:tpyo", _workdir(tmp)], ("tpyo", "valid args"))


def main_workdir_is_a_file(tmp):
  blocker = _text(os.path.join(tmp, "w"), "x")
  return Case("main", [TINY, _workdir(tmp)], ("workdir", "is a file"), (blocker,))


def main_workdir_parent_is_a_file(tmp):
  blocker = _text(os.path.join(tmp, "f"), "x")
  return Case("main", [TINY, f"--workdir={blocker}/w"], ("/f", "is a file"), (blocker,))


def main_corrupt_workdir_config(tmp):
  os.makedirs(os.path.join(tmp, "w"))
  config = _text(os.path.join(tmp, "w", "config.json"), '{"task": ')
  return Case("main", [TINY, _workdir(tmp)], ("config.json", "corrupt"), (config,))


def main_foreign_workdir_config(tmp):
  os.makedirs(os.path.join(tmp, "w"))
  config = _text(os.path.join(tmp, "w", "config.json"), '{"mine": 1}')
  return Case("main", [TINY, _workdir(tmp)], ("config.json", "not an ssl_ct config"), (config,))


def main_localize_untrained(tmp):
  return Case("main", [TINY, _workdir(tmp), "--mode=localize"], ("w", "train first"))


def main_data_missing(tmp):
  return Case("main", [TINY, _workdir(tmp), f"--config.data.path={tmp}/none"], ("none", "no volume at"))


def main_data_constant(tmp):
  src = _npy(tmp, np.full((20, 20, 20), 7, np.uint16))
  return Case("main", [TINY, _workdir(tmp), "--mode=prepare", f"--config.data.path={src}"], ("scan.npy", "constant"), (src,))


def main_data_nan(tmp):
  array = _volume(shape=(20, 20, 20)).astype(np.float32)
  array[10] = np.nan
  src = _npy(tmp, array)
  return Case("main", [TINY, _workdir(tmp), "--mode=prepare", f"--config.data.path={src}"], ("scan.npy", "NaN"), (src,))


def main_workdir_inside_data(tmp):
  data = _data_dir(tmp)
  return Case(
    "main", [TINY, f"--workdir={data}/w", f"--config.data.path={data}"], ("lies inside the input", "--workdir"), (data,)
  )


def main_crop_into_its_input(tmp):
  data = _data_dir(tmp)
  os.makedirs(os.path.join(tmp, "w"))
  argv = [TINY, _workdir(tmp), "--mode=crop", "--overwrite", f"--config.data.path={data}", f"--config.crop.out_dir={data}"]
  return Case("main", argv, ("is the input", "outside the data"), (data,))


def main_localize_other_model(tmp):
  os.makedirs(os.path.join(tmp, "w"))
  from ssl_ct.configs import rotation_xenopus

  config = _text(os.path.join(tmp, "w", "config.json"), rotation_xenopus.get_config("tiny").to_json_best_effort())
  argv = [TINY, _workdir(tmp), "--mode=localize", "--config.model.width=8"]
  return Case("main", argv, ("model", "differs from", "config.json"), (config,))


def main_different_config(tmp):
  os.makedirs(os.path.join(tmp, "w"))
  from ssl_ct.configs import rotation_xenopus

  config = _text(os.path.join(tmp, "w", "config.json"), rotation_xenopus.get_config("tiny").to_json_best_effort())
  return Case("main", [TINY, _workdir(tmp), "--config.opt.lr=0.5"], ("config.json", "different config", "--overwrite"), (config,))


def main_bad_mode(tmp):
  return Case("main", [TINY, _workdir(tmp), "--mode=everything"], ("--mode=everything", "one of"))


def main_unknown_flag(tmp):
  return Case("main", [TINY, _workdir(tmp), "--epochs=3"], ("epochs", "--help"))


def main_workdir_missing(tmp):
  del tmp
  return Case("main", [TINY], ("--workdir", "required"))


def main_unreachable_remote_data(tmp):
  argv = [
    TINY,
    _workdir(tmp),
    "--mode=prepare",
    "--config.data.path=s3://ssl-ct-no-bucket/x.zarr",
    "--config.data.remote_timeout_s=1",
  ]
  return Case("main", argv, ("s3://ssl-ct-no-bucket", "no answer within"))


BUILDERS = {name: fn for name, fn in sorted(globals().items()) if name.split("_")[0] in CLIS and callable(fn)}


def build(name, tmp):
  """The case `name` with its inputs made under the (empty) folder `tmp`."""
  case = BUILDERS[name](tmp)
  assert case.cli in CLIS, name
  return case
