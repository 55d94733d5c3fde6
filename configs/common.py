"""Helpers shared by the configs: the `:arg` suffix of `--config=configs/x.py:arg`, the data
fields every task opens its input with, and the synthetic medaka set."""

import ml_collections


def _parse_value(text, default):
  if isinstance(default, bool):
    if text.lower() not in ("true", "false", "1", "0", ""):
      raise ValueError(f"config arg expects a boolean, got {text!r}")
    return text.lower() in ("true", "1", "")
  if isinstance(default, int):
    return int(text)
  if isinstance(default, float):
    return float(text)
  return text


def parse_arg(arg, **spec):
  """Parses 'key=value,flag' into a locked ConfigDict with the defaults in `spec`.

  A bare `flag` sets a boolean to True. Unknown keys raise ValueError naming the valid ones,
  e.g. `parse_arg("variant=r18,demo", variant="r50", demo=False)`.
  """
  parsed = ml_collections.ConfigDict(spec)
  for item in filter(None, (arg or "").split(",")):
    key, _, value = item.partition("=")
    key = key.strip()
    if key not in spec:
      raise ValueError(f"unknown config arg {key!r}; valid args: {', '.join(sorted(spec))}")
    if "=" not in item and not isinstance(spec[key], bool):
      raise ValueError(f"config arg {key!r} needs a value: {key}=...")
    parsed[key] = _parse_value(value.strip(), spec[key]) if "=" in item else True
  parsed.lock()
  return parsed


def input_fields(data):
  """The fields of `config.data` that say where the volumes are and how to open them (every task)."""
  data.path = ""  # folder, glob, volume, or list of them; "" = embedded synthetic set
  data.cache_dir = ""  # where the synthetic set is cached; "" = <workdir>/data
  data.fill_missing = False  # True: a missing zarr/N5 chunk reads as the fill value (default: an error)
  data.remote_timeout_s = 30.0  # s, bound on each open and read of a gs://, s3://, http(s):// store
  data.remote_retries = 3  # retries per remote request before giving up
  # auto: analyse a chunked zarr copy (workdir/cache) of TIFF, TIFF-folder, HDF5 and large .npy
  # inputs, whose y and x slices read far more than the slice; always | never.
  data.analysis_copy = "auto"
  # Micrometres per voxel, one number or (z, y, x), for volumes whose files do not record it (it
  # replaces what they record); () = as the files say (OME-Zarr, NeXus/DXchange, TIFF metadata).
  data.voxel_size_um = ()
  # MiB of volumes (at the analysis resolution) held in memory, read once, while their total
  # stays under it; the rest are read slice by slice. Per process: each grain worker holds its own.
  data.in_memory_mb = 1024


def medaka_synthetic(data):
  """`config.data.synthetic`: the embedded medaka set at the paper's scale (the :demo configs shrink it)."""
  data.synthetic = ml_collections.ConfigDict()
  data.synthetic.kind = "medaka"
  data.synthetic.seed = 0  # phantoms are deterministic in it
  data.synthetic.num_volumes = 50  # paper: 50 of the 250 Medaka volumes
  data.synthetic.shape = (768, 256, 256)  # voxels (z, y, x); real scans are ~6100x2000x2000
  data.synthetic.z_jitter = 0.05  # +- fraction of z size between volumes
  data.synthetic.dtype = "uint16"  # float32 | uint16 | uint8 (windowed)
