r"""Converts any volume ssl_ct reads into a chunked, compressed zarr v3 store (an OME-Zarr 0.5 image).

  python -m ssl_ct.convert IN OUT.zarr [--levels=N] [--voxel_size_um=S] [--overwrite] [--fill_missing]

IN is a zarr/N5 folder, 'scan.h5:/exchange/data', a TIFF file or folder, a .npy file, or a
tensorstore JSON spec. The input is only read, and OUT may not be, contain or lie inside it;
OUT appears only once it is complete, and --overwrite replaces only a store ssl_ct wrote. The
voxel size the input records (or --voxel_size_um) becomes the image's scale; --levels adds a
pyramid of 2x2x2 block means for viewers.
"""

from absl import flags

from ssl_ct import outputs
from ssl_ct.data import formats, sources, voxel_size, zarr_writer
from ssl_ct.errors import InputError, exit_on_input_error, parse_flags, run_cli, usage_error

_PROG = "python -m ssl_ct.convert"


def convert(source, out_path, *, overwrite=False, progress=True, fill_missing=False, levels=1, voxel_size_um=None):
  """Writes `source` to `out_path` as an OME-Zarr 0.5 image; returns (volume, input bytes, output bytes)."""
  if not str(out_path).rstrip("/").endswith(".zarr"):
    raise InputError(f"output {out_path} must end in .zarr (a zarr v3 folder); name it e.g. {out_path}.zarr")
  outputs.check_apart([out_path], sources.input_paths(source), fix="write the zarr somewhere outside the input")
  outputs.check_writable(out_path, overwrite)
  volume = formats.open_volume(source, fill_missing=fill_missing)
  outputs.check_apart([out_path], sources.input_paths(source, [volume]), fix="write the zarr somewhere outside the input")
  if voxel_size_um is not None:
    volume.voxel_size_um = voxel_size_um
  attrs = {
    "ssl_ct": {
      "source": str(source),
      "source_format": volume.format_name,
      "source_dtype": volume.dtype.name,
      "voxel_size_um": list(volume.voxel_size_um) if volume.voxel_size_um else None,
    }
  }
  out_bytes = zarr_writer.write_ome_zarr(
    volume, out_path, overwrite=overwrite, attributes=attrs, progress=progress, voxel_size_um=volume.voxel_size_um, levels=levels
  )
  in_bytes = formats.stored_bytes(volume)
  return volume, in_bytes, out_bytes


def _flags():
  fv = flags.FlagValues()
  flags.DEFINE_bool("overwrite", False, "replace OUT if ssl_ct wrote it", flag_values=fv)
  flags.DEFINE_bool("fill_missing", False, "read missing zarr/N5 chunks as the fill value", flag_values=fv)
  flags.DEFINE_bool("quiet", False, "no progress bar", flag_values=fv)
  flags.DEFINE_integer("levels", 1, "OME-Zarr levels: 1 = the volume only, 0 = a pyramid to <= 256 a side", flag_values=fv)
  flags.DEFINE_string("voxel_size_um", None, "micrometres per voxel, one number or z,y,x (replaces the input's)", flag_values=fv)
  return fv


def main(argv=None):
  """`python -m ssl_ct.convert IN OUT.zarr`; `argv` without the program name (tests call it in-process)."""
  args = _flags()
  source, out = parse_flags(args, argv, prog=_PROG, doc=__doc__, positional=("IN", "OUT.ZARR"))
  if args.levels < 0:
    usage_error(f"--levels={args.levels} is negative; give 1 (the volume only), 0 (automatic) or more", _PROG)
  try:
    size = voxel_size.from_flag(args.voxel_size_um)
  except ValueError as e:
    usage_error(e, _PROG)
  volume, in_bytes, out_bytes = exit_on_input_error(
    convert,
    source,
    out,
    overwrite=args.overwrite,
    progress=not args.quiet,
    fill_missing=args.fill_missing,
    levels=args.levels,
    voxel_size_um=size,
  )
  print(f"{volume.name}: {volume.shape} {volume.dtype} -> {out} ({in_bytes / 2**20:.1f} MiB -> {out_bytes / 2**20:.1f} MiB)")


def cli():
  """The console script (setup.cfg)."""
  run_cli(main)


if __name__ == "__main__":
  cli()
