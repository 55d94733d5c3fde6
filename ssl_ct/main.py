r"""Entry point: `python -m ssl_ct.main --config=configs/rotation_xenopus.py:demo --workdir=DIR`.

Parses and validates the config, writes `config.json` to the workdir and prepares the
data (synthesizing and caching the embedded default set when `config.data.path` is "").
"""

import json
import os
import sys

import jax
import ml_collections
from absl import app, flags, logging
from ml_collections import config_flags

from ssl_ct import config_checks, crop, distributed, train
from ssl_ct.data import prepare
from ssl_ct.errors import InputError, exit_on_input_error

MODES = ("all", "train", "localize", "crop", "prepare")

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file, e.g. configs/rotation_xenopus.py:demo.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Folder for data cache, checkpoints, metrics and results.")
_MODE = flags.DEFINE_enum(
  "mode",
  "all",
  MODES,
  "all = train, localize, evaluate (and crop, for configs with a crop section); train; localize (latest checkpoint, any"
  " volumes); crop (the volumes by localization/boxes.json); prepare = data only.",
)
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace a config.json from a different config in the workdir.")
flags.mark_flags_as_required(["config", "workdir"])


def write_config(config, workdir, overwrite):
  """Writes config.json atomically; refuses to replace a different one unless asked."""
  path = os.path.join(workdir, "config.json")
  text = config.to_json_best_effort(indent=1, sort_keys=True)
  if os.path.exists(path) and not overwrite:
    with open(path) as f:
      if json.load(f) != json.loads(text):
        raise InputError(f"{path} holds a different config; use a new --workdir or pass --overwrite")
  os.makedirs(workdir, exist_ok=True)
  with open(path + ".partial", "w") as f:
    f.write(text)
  os.replace(path + ".partial", path)


def read_config(workdir):
  """The config a workdir was run with (its config.json), for scripts that analyse the run."""
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    raise InputError(f"{path} not found; pass the --workdir of a run")
  with open(path) as f:
    return ml_collections.ConfigDict(json.load(f))


def run(config, workdir, mode, overwrite=False):
  config_checks.validate(config)
  write_config(config, workdir, overwrite)
  distributed.initialize_from_env()
  dataset = prepare.load_dataset(config.data, workdir)
  logging.info("%d volumes ready from %s", len(dataset.volumes), dataset.root or config.data.path)
  print(f"prepared {len(dataset.volumes)} volumes ({len(dataset.truth)} with ground truth); config in {workdir}/config.json")
  if mode == "prepare":
    return None
  if mode == "crop":  # one writer: every process of a multi-host job would write the same files
    return crop.crop_from_workdir(config, workdir, dataset, overwrite=overwrite) if jax.process_index() == 0 else None
  summary = train.train_and_evaluate(config, workdir, mode=mode, dataset=dataset)
  if summary:
    for method, metrics in summary.items():
      print(f"{method:32s} " + "  ".join(f"{k}={v:.3f}" for k, v in metrics.items()))
  if mode != "train":
    print(f"boxes, figures and report.md in {os.path.join(workdir, 'localization')}")
  if mode == "all" and "crop" in config and jax.process_index() == 0:
    crop.crop_from_workdir(config, workdir, dataset, overwrite=overwrite)
  return summary


def _fail(error):
  """One line from an exception message (config_flags embeds whole tracebacks) and exit 2."""
  lines = [line.strip(" '\"") for line in str(error).replace("\\n", "\n").splitlines() if line.strip()]
  message = lines[-1] if "Traceback" in str(error) else " ".join(lines)
  print(f"error: {message or type(error).__name__} (config overrides: --config.section.key=value)", file=sys.stderr)
  sys.exit(2)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  try:
    config = _CONFIG.value
    config.lock()
  except OSError as e:  # config_flags defers a config file that failed to load until first use
    _fail(e)
  exit_on_input_error(run, config, _WORKDIR.value, _MODE.value, _OVERWRITE.value)


def parse_flags(argv):
  """absl flag parsing with bad config args and override typos as one-line errors."""
  try:
    return flags.FLAGS(argv)
  except (flags.Error, AttributeError, KeyError, ValueError, TypeError) as e:
    _fail(e.__cause__ or e.__context__ or e)


def cli():
  app.run(main, flags_parser=parse_flags)


if __name__ == "__main__":
  cli()
