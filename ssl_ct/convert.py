r"""Converts any volume ssl_ct reads into a chunked, compressed zarr v3 store.

  python -m ssl_ct.convert IN OUT.zarr [--overwrite]

IN is a zarr/N5 folder, 'scan.h5:/exchange/data', a TIFF file or folder, a .npy file, or a
tensorstore JSON spec. The input is only read; OUT appears only once it is complete.
"""

import argparse
import os
import sys

from ssl_ct.data import formats, zarr_writer
from ssl_ct.errors import InputError, exit_on_input_error


def convert(source, out_path, *, overwrite=False, progress=True):
  """Writes `source` to `out_path` as zarr v3; returns (input bytes, output bytes)."""
  if not str(out_path).rstrip("/").endswith(".zarr"):
    raise InputError(f"output {out_path} must end in .zarr (a zarr v3 folder)")
  zarr_writer.check_writable(out_path, overwrite)
  volume = formats.open_volume(source)
  source_path = formats.split_hdf5(source)[0] if isinstance(source, str) else ""
  if source_path and os.path.abspath(source_path) == os.path.abspath(out_path):
    raise InputError("output path is the input path; write the zarr somewhere else")
  attrs = {"ssl_ct": {"source": str(source), "source_format": volume.format_name, "source_dtype": volume.dtype.name}}
  out_bytes = zarr_writer.write_zarr3(volume, out_path, overwrite=overwrite, attributes=attrs, progress=progress)
  in_bytes = formats.stored_bytes(volume)
  return volume, in_bytes, out_bytes


def main(argv=None):
  parser = argparse.ArgumentParser(prog="python -m ssl_ct.convert", description=__doc__.split("\n")[1])
  parser.add_argument("input", help="volume path, 'file.h5:/dataset', URL or tensorstore JSON spec")
  parser.add_argument("output", help="new zarr v3 folder (OUT.zarr)")
  parser.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
  parser.add_argument("--quiet", action="store_true", help="no progress bar")
  args = parser.parse_args(argv)
  volume, in_bytes, out_bytes = exit_on_input_error(
    convert, args.input, args.output, overwrite=args.overwrite, progress=not args.quiet
  )
  print(
    f"{volume.name}: {volume.shape} {volume.dtype} -> {args.output} ({in_bytes / 2**20:.1f} MiB -> {out_bytes / 2**20:.1f} MiB)"
  )


if __name__ == "__main__":
  sys.exit(main())
