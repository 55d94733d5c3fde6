r"""Converts any volume ssl_ct reads into a chunked, compressed zarr v3 store (an OME-Zarr 0.5 image).

  python -m ssl_ct.convert IN OUT.zarr [--levels=N] [--voxel-size-um=S] [--overwrite] [--fill-missing]

IN is a zarr/N5 folder, 'scan.h5:/exchange/data', a TIFF file or folder, a .npy file, or a
tensorstore JSON spec. The input is only read, and OUT may not be, contain or lie inside it;
OUT appears only once it is complete, and --overwrite replaces only a store ssl_ct wrote. The
voxel size the input records (or --voxel-size-um) becomes the image's scale; --levels adds a
pyramid of 2x2x2 block means for viewers.
"""

from ssl_ct import outputs
from ssl_ct.data import formats, sources, voxel_size, zarr_writer
from ssl_ct.errors import CliParser, InputError, exit_on_input_error, run_cli


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


def main(argv=None):
  parser = CliParser(prog="python -m ssl_ct.convert", description=__doc__.split("\n")[1])
  parser.add_argument("input", help="volume path, 'file.h5:/dataset', URL or tensorstore JSON spec")
  parser.add_argument("output", help="new zarr v3 folder (OUT.zarr)")
  parser.add_argument("--overwrite", action="store_true", help="replace OUT if ssl_ct wrote it")
  parser.add_argument("--fill-missing", action="store_true", help="read missing zarr/N5 chunks as the fill value")
  parser.add_argument("--quiet", action="store_true", help="no progress bar")
  parser.add_argument(
    "--levels", type=int, default=1, help="OME-Zarr levels: 1 = the volume only, 0 = a pyramid to <= 256 a side"
  )
  parser.add_argument("--voxel-size-um", default=None, help="micrometres per voxel, one number or z,y,x (replaces the input's)")
  args = parser.parse_args(argv)
  if args.levels < 0:
    parser.error(f"--levels={args.levels} is negative; give 1 (the volume only), 0 (automatic) or more")
  try:
    size = voxel_size.from_flag(args.voxel_size_um)
  except ValueError as e:
    parser.error(str(e))
  volume, in_bytes, out_bytes = exit_on_input_error(
    convert,
    args.input,
    args.output,
    overwrite=args.overwrite,
    progress=not args.quiet,
    fill_missing=args.fill_missing,
    levels=args.levels,
    voxel_size_um=size,
  )
  print(
    f"{volume.name}: {volume.shape} {volume.dtype} -> {args.output} ({in_bytes / 2**20:.1f} MiB -> {out_bytes / 2**20:.1f} MiB)"
  )


def cli():
  """The console script (setup.cfg)."""
  run_cli(main)


if __name__ == "__main__":
  cli()
