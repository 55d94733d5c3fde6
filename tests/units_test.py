"""Voxel sizes from every format's metadata, margins in voxels and micrometres, OME-Zarr crops a
standard reader opens (voxel size, translation to the crop's origin, pyramid), napari shapes."""

import csv
import json
import os
import tempfile

import h5py
import numpy as np
import tifffile
import zarr
from absl.testing import absltest
from ome_zarr.io import parse_url
from ome_zarr.reader import Reader
from ome_zarr_models.v05.image import Image

import ssl_ct
from ssl_ct import crop, report
from ssl_ct.data import formats, sources, zarr_writer
from ssl_ct.errors import InputError

_ARRAY = (np.arange(24 * 20 * 18) % 997).astype(np.uint16).reshape(24, 20, 18)


def _ome_zarr(folder, attrs_version, axes, scale, unit):
  """An OME-Zarr group written by zarr-python (not ssl_ct) with one level of `_ARRAY`, reshaped to `axes`."""
  path = os.path.join(folder, "scan.ome.zarr")
  data = _ARRAY.reshape((1,) * (len(axes) - 3) + _ARRAY.shape)
  group = zarr.open_group(path, mode="w", zarr_format=3 if attrs_version == "0.5" else 2)
  group.create_array("0", data=data)
  multiscales = [
    {
      "axes": [{"name": a, "type": "space" if a in "zyx" else ("time" if a == "t" else "channel"), "unit": unit} for a in axes],
      "datasets": [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": scale}]}],
      "version": attrs_version,
    }
  ]
  group.attrs.update(
    {"ome": {"version": "0.5", "multiscales": multiscales}} if attrs_version == "0.5" else {"multiscales": multiscales}
  )
  return path


class VoxelSizeTest(absltest.TestCase):
  def setUp(self):
    super().setUp()
    self.tmp = tempfile.mkdtemp()

  def test_ome_zarr_0_5_with_length_one_time_and_channel_axes(self):
    path = _ome_zarr(self.tmp, "0.5", "tczyx", [1.0, 1.0, 500.0, 250.0, 250.0], "nanometer")
    volume = formats.open_volume(path)
    self.assertEqual(volume.shape, _ARRAY.shape)  # t and c of length 1 dropped
    np.testing.assert_array_equal(volume.read(), _ARRAY)
    np.testing.assert_allclose(volume.voxel_size_um, (0.5, 0.25, 0.25))

  def test_ome_zarr_0_4(self):
    path = _ome_zarr(self.tmp, "0.4", "zyx", [2.0, 1.5, 1.5], "micrometer")
    np.testing.assert_allclose(formats.open_volume(path).voxel_size_um, (2.0, 1.5, 1.5))

  def test_hdf5_dxchange_nexus_and_attribute(self):
    dx = os.path.join(self.tmp, "dx.h5")
    with h5py.File(dx, "w") as f:
      f["exchange/data"] = _ARRAY
      f["measurement/instrument/detection_system/objective/resolution"] = 0.65
    np.testing.assert_allclose(formats.open_volume(dx).voxel_size_um, (0.65, 0.65, 0.65))
    nx = os.path.join(self.tmp, "nx.nxs")
    with h5py.File(nx, "w") as f:
      data = f.create_group("entry/data")
      data.attrs.update({"NX_class": "NXdata", "signal": "data", "axes": ["z", "y", "x"]})
      data["data"] = _ARRAY
      for name, n, step in (("z", 24, 0.004), ("y", 20, 0.002), ("x", 18, 0.002)):
        data[name] = np.arange(n) * step
        data[name].attrs["units"] = "mm"
    np.testing.assert_allclose(formats.open_volume(nx).voxel_size_um, (4.0, 2.0, 2.0))
    plain = os.path.join(self.tmp, "plain.h5")
    with h5py.File(plain, "w") as f:
      f["recon"] = _ARRAY
      f["recon"].attrs.update({"voxel_size": [3e-3, 1e-3, 1e-3], "units": "mm"})
    np.testing.assert_allclose(formats.open_volume(plain).voxel_size_um, (3.0, 1.0, 1.0))
    bare = os.path.join(self.tmp, "bare.h5")
    with h5py.File(bare, "w") as f:
      f["recon"] = _ARRAY
    self.assertIsNone(formats.open_volume(bare).voxel_size_um)  # nothing is guessed

  def test_tiff_imagej_ome_and_plain(self):
    imagej = os.path.join(self.tmp, "ij.tif")
    tifffile.imwrite(imagej, _ARRAY, imagej=True, resolution=(1 / 0.8, 1 / 0.4), metadata={"spacing": 1.6, "unit": "um"})
    np.testing.assert_allclose(formats.open_volume(imagej).voxel_size_um, (1.6, 0.4, 0.8))  # (x, y) resolution tags
    ome = os.path.join(self.tmp, "scan.ome.tif")
    tifffile.imwrite(ome, _ARRAY, metadata={"axes": "ZYX", "PhysicalSizeZ": 2.0, "PhysicalSizeY": 1.0, "PhysicalSizeX": 1.0})
    np.testing.assert_allclose(formats.open_volume(ome).voxel_size_um, (2.0, 1.0, 1.0))
    plain = os.path.join(self.tmp, "plain.tif")
    tifffile.imwrite(plain, _ARRAY, resolution=(2.0, 2.0))  # in-plane only: z unknown, so no voxel size
    self.assertIsNone(formats.open_volume(plain).voxel_size_um)

  def test_an_override_replaces_the_files_voxel_size(self):
    path = _ome_zarr(self.tmp, "0.4", "zyx", [2.0, 1.5, 1.5], "micrometer")
    (volume,) = sources.open_volumes(path, voxel_size_um=(0.5,))
    self.assertEqual(volume.voxel_size_um, (0.5, 0.5, 0.5))
    with self.assertRaisesRegex(ValueError, "positive"):
      sources.open_volumes(path, voxel_size_um=(0.5, -1, 1))


class MarginTest(absltest.TestCase):
  def test_fraction_voxels_and_lengths(self):
    shape, box = (100, 200, 400), {"start": [40, 50, 60], "stop": [60, 150, 300]}
    self.assertEqual(crop.margin_voxels(0.05, shape), [5, 10, 20])
    self.assertEqual(crop.margin_voxels("0.05", shape), [5, 10, 20])
    self.assertEqual(crop.margin_voxels("7vox", shape), [7, 7, 7])
    self.assertEqual(crop.margin_voxels("10um", shape, (2.0, 1.0, 0.5)), [5, 10, 20])
    self.assertEqual(crop.margin_voxels("0.01mm", shape, (2.0, 1.0, 0.5)), [5, 10, 20])
    self.assertEqual(crop.margin_box(box, shape, "45vox"), {"start": [0, 5, 15], "stop": [100, 195, 345]})
    with self.assertRaisesRegex(InputError, "needs the voxel size"):
      crop.margin_voxels("10um", shape)
    # Per face: the measured faces get the smaller margin (at least one voxel of the grid measured on), never more than the uniform one.
    measured = [[True, False], [False, True], [True, True]]
    pads = crop.face_pads(measured, shape, 0.05, 0.01)
    self.assertEqual(pads, [[1, 5], [10, 2], [4, 4]])
    self.assertEqual(crop.face_pads(measured, shape, 0.05, 0.01, factor=3)[0], [3, 5])
    self.assertEqual(crop.face_pads(measured, shape, 0.05, 0.0)[2], [0, 0])
    self.assertEqual(crop.face_pads(measured, shape, 0.01, 0.05), [[1, 1], [2, 2], [4, 4]])
    # One fraction per axis (volume order): the faces along the refinement's axis may get another.
    self.assertEqual(crop.face_pads(measured, shape, 0.05, (0.03, 0.01, 0.01)), [[3, 5], [10, 2], [4, 4]])
    self.assertIsNone(crop.measured_pads(measured, shape, 0.05, (0.05, 0.05, 0.05)))
    self.assertEqual(crop.measured_pads(measured, shape, 0.05, (0.05, 0.01, 0.01))[0], [5, 5])
    self.assertEqual(crop.margin_box(box, shape, 0.05, face_pads=pads), {"start": [39, 40, 56], "stop": [65, 152, 304]})
    for bad in ("wide", "0.9", "10 parsecs", -0.1):
      with self.assertRaises(ValueError):
        crop.parse_margin(bad)


class OmeZarrCropTest(absltest.TestCase):
  def test_a_standard_reader_opens_the_crop_over_its_source(self):
    out = os.path.join(tempfile.mkdtemp(), "scan.zarr")
    box, size = {"start": [5, 6, 7], "stop": [20, 16, 15]}, (2.0, 1.0, 0.5)
    ssl_ct.write_crop(_ARRAY, box, out, margin="2um", voxel_size_um=size, levels=2)  # 1, 2, 4 voxels a face
    start, stop = [4, 4, 3], [21, 18, 18]  # clipped to the volume along x
    Image.from_zarr(zarr.open_group(out, mode="r"))  # valid OME-Zarr 0.5 metadata
    (image,) = [n for n in Reader(parse_url(out))() if n.data]
    np.testing.assert_array_equal(np.asarray(image.data[0]), _ARRAY[4:21, 4:18, 3:18])
    level0 = _ARRAY[4:21, 4:18, 3:18].astype(np.float64)
    self.assertEqual(image.data[1].shape, (9, 7, 8))
    blocks = level0[:16, :14, :14].reshape(8, 2, 7, 2, 7, 2).mean((1, 3, 5))
    np.testing.assert_allclose(np.asarray(image.data[1])[:8, :7, :7], blocks, atol=0.5)  # means rounded to uint16
    scale0, translate0 = image.metadata["coordinateTransformations"][0]
    np.testing.assert_allclose(scale0["scale"], size)
    np.testing.assert_allclose(translate0["translation"], np.multiply(start, size))  # crop voxel 0 is source voxel `start`
    scale1, translate1 = image.metadata["coordinateTransformations"][1]
    np.testing.assert_allclose(scale1["scale"], np.multiply(size, 2))
    np.testing.assert_allclose(translate1["translation"], (np.asarray(start) + 0.5) * size)  # 2x2x2 block centres
    self.assertEqual([a["unit"] for a in image.metadata["axes"]], ["micrometer"] * 3)
    reread = formats.open_volume(out)  # and ssl_ct reads its own crop back, voxel size included
    self.assertEqual((reread.shape, reread.voxel_size_um), (tuple(np.subtract(stop, start)), size))
    with open(os.path.join(out, "zarr.json")) as f:
      attrs = json.load(f)["attributes"]["ssl_ct"]
    self.assertEqual(
      (attrs["crop"], attrs["voxel_size_um"], attrs["margin"]), ({"start": start, "stop": stop}, list(size), "2um")
    )

  def test_convert_keeps_the_voxel_size(self):
    from ssl_ct import convert

    tmp = tempfile.mkdtemp()
    src = os.path.join(tmp, "ij.tif")
    tifffile.imwrite(src, _ARRAY, imagej=True, resolution=(1 / 0.5, 1 / 0.5), metadata={"spacing": 1.0, "unit": "um"})
    out = os.path.join(tmp, "scan.zarr")
    convert.convert(src, out, progress=False, levels=2)
    Image.from_zarr(zarr.open_group(out, mode="r"))
    converted = formats.open_volume(out)
    np.testing.assert_array_equal(converted.read(), _ARRAY)
    self.assertEqual(converted.voxel_size_um, (1.0, 0.5, 0.5))

  def test_auto_levels_halve_to_the_pyramid_floor(self):
    self.assertEqual(zarr_writer.pyramid_levels((6100, 2000, 2000)), 6)  # 6100 -> 3050 -> ... -> 191
    self.assertEqual(zarr_writer.pyramid_levels((112, 112, 112)), 1)
    self.assertEqual(zarr_writer.pyramid_levels((112, 112, 112), 3), 3)


class NapariShapesTest(absltest.TestCase):
  def test_six_faces_per_box_on_the_boxs_first_and_last_voxels(self):
    path = os.path.join(tempfile.mkdtemp(), "boxes_napari.csv")
    boxes = {"a": {"start": [2, 3, 4], "stop": [10, 13, 24]}, "b": None}
    report.write_napari_shapes(path, boxes)
    with open(path) as f:
      rows = list(csv.DictReader(f))
    self.assertEqual(list(rows[0]), ["index", "shape-type", "vertex-index", "axis-0", "axis-1", "axis-2"])
    self.assertEqual(len(rows), 6 * 4)  # "b" has no box
    points = np.array([[float(r[f"axis-{a}"]) for a in range(3)] for r in rows]).reshape(6, 4, 3)
    np.testing.assert_array_equal(points.min((0, 1)), [2, 3, 4])
    np.testing.assert_array_equal(points.max((0, 1)), [9, 12, 23])
    for face in points:  # each face is flat along one axis
      self.assertEqual(sum(len(set(face[:, a])) == 1 for a in range(3)), 1)


if __name__ == "__main__":
  absltest.main()
