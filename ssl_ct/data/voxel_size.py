"""Voxel size, in micrometres (z, y, x), from the metadata each format keeps it in.

Read where files carry it:
- OME-Zarr: the first level's `scale` (times the multiscale's own), in the spatial axes' units;
- HDF5: DXchange `/measurement/instrument/detection_system/objective/resolution` (the effective
  pixel size, isotropic voxels); NeXus NXdata axis coordinates with `units`; a `voxel_size` or
  `pixel_size` attribute of the dataset (scalar or z, y, x; `units` attribute, else micrometres);
- TIFF: OME-TIFF PhysicalSize{X,Y,Z}; ImageJ's `spacing` and `unit` with the XResolution and
  YResolution tags.
Nothing is guessed: a file that lacks one of the three sizes gives None (then
`config.data.voxel_size_um` or `--voxel_size_um` can say it).
"""

import re

import numpy as np

# Length units as OME-NGFF, OME-TIFF, ImageJ and NeXus write them, in micrometres.
_UM_PER_UNIT = {
  "angstrom": 1e-4,
  "nanometer": 1e-3,
  "nm": 1e-3,
  "micrometer": 1.0,
  "micrometre": 1.0,
  "micron": 1.0,
  "microns": 1.0,
  "um": 1.0,
  "µm": 1.0,
  "\u03bcm": 1.0,
  "millimeter": 1e3,
  "millimetre": 1e3,
  "mm": 1e3,
  "centimeter": 1e4,
  "cm": 1e4,
  "meter": 1e6,
  "metre": 1e6,
  "m": 1e6,
}


def um_per_unit(unit):
  """Micrometres in one `unit` (a name or symbol), or None for units that are not lengths."""
  if isinstance(unit, bytes):
    unit = unit.decode(errors="replace")
  text = str(unit).strip().replace("\\u00B5", "µ").replace("\\u00b5", "µ")
  return _UM_PER_UNIT.get(text) or _UM_PER_UNIT.get(text.lower())


def checked(size, what):
  """(z, y, x) floats > 0 from a scalar or three numbers, or None; ValueError names `what`."""
  if size is None:
    return None
  values = np.atleast_1d(np.asarray(size, dtype=np.float64)).ravel()
  if values.size == 1:
    values = np.repeat(values, 3)
  if values.size != 3 or not np.all(np.isfinite(values)) or not np.all(values > 0):
    raise ValueError(f"{what}: voxel size {size!r} is not one or three positive numbers (z, y, x)")
  return tuple(float(v) for v in values)


def from_flag(text, flag="--voxel_size_um"):
  """The (z, y, x) micrometres a command-line flag gives ("0.65" or "1.3,0.65,0.65"), or None for
  an empty flag; ValueError naming the flag and the forms it takes."""
  if not text:
    return None
  try:
    return checked([float(v) for v in text.split(",")], flag)
  except ValueError:
    raise ValueError(f"{flag}={text}: not one or three positive micrometres; give e.g. 0.65 or 1.3,0.65,0.65") from None


def _scale_of(transforms):
  for t in transforms or ():
    if t.get("type") == "scale":
      return np.asarray(t["scale"], dtype=np.float64)
  return None


def from_ome_zarr(attrs):
  """Voxel size of the first level of an OME-Zarr multiscale (0.4 or 0.5 attributes), or None."""
  multiscales = attrs.get("multiscales") or attrs.get("ome", {}).get("multiscales")
  if not multiscales:
    return None
  ms = multiscales[0]
  axes = ms.get("axes") or []
  scale = _scale_of(ms["datasets"][0].get("coordinateTransformations"))
  if scale is None or len(axes) != len(scale):
    return None
  overall = _scale_of(ms.get("coordinateTransformations"))
  if overall is not None and len(overall) == len(scale):
    scale = scale * overall
  spatial = [(i, a) for i, a in enumerate(axes) if isinstance(a, dict) and a.get("type") == "space"]
  if len(spatial) != 3:
    return None
  factors = [um_per_unit(a.get("unit", "")) for _, a in spatial]
  if any(f is None for f in factors):
    return None
  return tuple(float(scale[i] * f) for (i, _), f in zip(spatial, factors))


def _hdf5_attr_size(obj):
  for key in ("voxel_size_um", "voxel_size", "pixel_size_um", "pixel_size"):
    if key in obj.attrs:
      factor = 1.0 if key.endswith("_um") else um_per_unit(obj.attrs.get("units", "micrometer"))
      return None if factor is None else np.asarray(obj.attrs[key], dtype=np.float64) * factor
  return None


def _nexus_axes_size(dataset):
  parent = dataset.parent
  names = parent.attrs.get("axes")
  if names is None:
    return None
  names = [n.decode() if isinstance(n, bytes) else str(n) for n in np.atleast_1d(names)]
  if len(names) != 3 or not all(n in parent for n in names):
    return None
  sizes = []
  for name in names:
    coords = np.asarray(parent[name][()], dtype=np.float64).ravel()
    factor = um_per_unit(parent[name].attrs.get("units", ""))
    if coords.size < 2 or factor is None:
      return None
    sizes.append(abs(coords[-1] - coords[0]) / (coords.size - 1) * factor)
  return sizes


def from_hdf5(f, dataset_path):
  """Voxel size of `dataset_path` in the open HDF5 file `f` (module docstring), or None."""
  dataset = f[dataset_path]
  size = _hdf5_attr_size(dataset)
  if size is None and "measurement/instrument/detection_system/objective/resolution" in f:
    node = f["measurement/instrument/detection_system/objective/resolution"]
    factor = um_per_unit(node.attrs.get("units", "micrometer"))  # DXchange gives microns
    size = None if factor is None else np.asarray(node[()], dtype=np.float64) * factor
  if size is None:
    size = _nexus_axes_size(dataset)
  return checked(size, dataset_path) if size is not None else None


def from_tiff(tif):
  """Voxel size of an open tifffile.TiffFile (OME-TIFF, or ImageJ metadata with resolution tags), or None."""
  if tif.ome_metadata:
    pixels = re.search(r"<Pixels\b[^>]*>", tif.ome_metadata)
    if pixels:
      tag = pixels.group(0)
      sizes = []
      for axis in "ZYX":
        value = re.search(rf'PhysicalSize{axis}="([^"]+)"', tag)
        unit = re.search(rf'PhysicalSize{axis}Unit="([^"]+)"', tag)
        factor = um_per_unit(unit.group(1) if unit else "µm")  # OME's default unit
        if not value or factor is None:
          sizes = None
          break
        sizes.append(float(value.group(1)) * factor)
      if sizes:
        return checked(sizes, tif.filehandle.name)
  imagej = tif.imagej_metadata or {}
  factor = um_per_unit(imagej.get("unit", ""))
  page = tif.pages[0]
  if factor is None or "spacing" not in imagej:
    return None
  xy = []
  for tag in ("YResolution", "XResolution"):
    if tag not in page.tags:
      return None
    numerator, denominator = page.tags[tag].value
    if not numerator:
      return None
    xy.append(denominator / numerator * factor)  # the tag holds pixels per unit
  return checked([float(imagej["spacing"]) * factor, *xy], tif.filehandle.name)
