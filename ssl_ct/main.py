r"""Entry point: `python -m ssl_ct.main --config=configs/rotation_xenopus.py:demo --workdir=DIR`.

Parses and validates the config, takes the workdir (one run at a time), writes `config.json`
and prepares the data (synthesizing and caching the embedded default set when
`config.data.path` is ""), then trains, localizes (a new results folder per run, see
ssl_ct/results.py) and crops as `--mode` asks.
"""

import json
import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from ssl_ct import config_checks, distributed, log_setup, outputs
from ssl_ct.errors import InputError, exit_on_input_error, print_help, required_flag, run_cli, wants_help

MODES = ("all", "train", "localize", "crop", "prepare", "export")
# What a checkpoint's parameters depend on: localize and crop runs must agree with training here.
_MODEL_KEYS = ("task", "model", "data.slice_size", "data.angles_deg")

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file, e.g. configs/rotation_xenopus.py:demo.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Folder for data cache, checkpoints, metrics and results.")
_MODE = flags.DEFINE_enum(
  "mode",
  "all",
  MODES,
  "all = train, localize, evaluate (and crop, for configs with a crop section); train; localize (the selected checkpoint, any"
  " volumes, a new results folder); crop (the volumes by the latest boxes.json); prepare = data only; export = the"
  " trained localizer as a self-contained folder W/localizer (ssl_ct.load_localizer).",
)
_OVERWRITE = flags.DEFINE_bool(
  "overwrite", False, "Replace a config.json from a different config in the workdir, and earlier crops made differently."
)
flags.mark_flags_as_required(["config", "workdir"])


def _read_workdir_config(path):
  try:
    with open(path) as f:
      saved = json.load(f)
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise InputError(f"{path} is corrupt (not valid JSON); delete it to start over, or use a new --workdir") from e
  if not isinstance(saved, dict) or "task" not in saved:
    raise InputError(f"{path} is not an ssl_ct config (no 'task'); use a new --workdir")
  return saved


def check_config_unchanged(config, workdir, overwrite):
  """InputError when the workdir's config.json is not this config and may not be replaced."""
  path = os.path.join(workdir, "config.json")
  text = config.to_json_best_effort(indent=1, sort_keys=True)
  if os.path.exists(path) and _read_workdir_config(path) != json.loads(text) and not overwrite:
    raise InputError(f"{path} holds a different config; use a new --workdir or pass --overwrite")
  return path, text


def write_config(config, workdir, overwrite):
  """Writes config.json atomically; refuses to replace a different one unless asked."""
  outputs.write_text(*check_config_unchanged(config, workdir, overwrite))


def _get(tree, dotted):
  for part in dotted.split("."):
    tree = tree.get(part) if isinstance(tree, dict) else None
  return tree


def check_trained_config(config, workdir):
  """Localize and crop runs read a trained model (the workdir's, or `localize.model`): the model config must be its own."""
  path = os.path.join(workdir, "config.json")
  if not os.path.exists(path):
    raise InputError(
      f"no config.json in {workdir}: nothing was trained there; train first (--mode=train or --mode=all), "
      "or pass --config.localize.model=DIR (a trained workdir or an exported localizer)"
    )
  saved, current = _read_workdir_config(path), json.loads(config.to_json_best_effort())
  for key in _MODEL_KEYS:
    if _get(saved, key) != _get(current, key):
      raise InputError(
        f"config {key}={json.dumps(_get(current, key))} differs from {json.dumps(_get(saved, key))} in {path}, "
        "the model trained there; localize with the training config (change only data.path, localize.* and crop.*)"
      )


def _workdir_outputs(config, workdir):
  folders = (
    "config.json",
    "checkpoints",
    "best",  # checkpoint.BEST: train.keep_best's parameters
    "metrics.jsonl",
    "tensorboard",
    "localization",
    "segmentation",
    "cache",
    "data",
    "localizer",
  )
  cropped = [config.crop.out_dir or os.path.join(workdir, "cropped")] if "crop" in config else []
  return [os.path.join(workdir, f) for f in folders] + cropped


def check_workdir(config, workdir, mode, overwrite):
  """The checks a run's workdir and trained model must pass, reading only: they run before JAX loads."""
  outputs.check_lockable(workdir, "workdir")
  model_dir = config.localize.get("model", "") if "localize" in config else ""
  if model_dir and mode not in ("localize", "crop"):
    raise InputError(
      f"--config.localize.model={model_dir} localizes with a model trained elsewhere: use it with --mode=localize "
      "(or --mode=crop), or leave it empty to train here"
    )
  if model_dir and not os.path.exists(os.path.join(model_dir, "config.json")):
    raise InputError(
      f"--config.localize.model={model_dir}: no config.json there, so it is neither a trained workdir nor an "
      "exported localizer (--mode=export writes one); pass one of those"
    )
  if mode in ("crop", "localize", "export"):
    check_trained_config(config, model_dir or workdir)
  else:
    check_config_unchanged(config, workdir, overwrite)


def run(config, workdir, mode, overwrite=False):
  config_checks.validate(config)
  from ssl_ct.data import formats, sources  # tensorstore and h5py: once the command line has parsed

  formats.set_remote_options(timeout_s=config.data.remote_timeout_s, retries=config.data.remote_retries)
  given = sources.input_paths(config.data.path) if config.data.path else []
  outputs.check_apart(_workdir_outputs(config, workdir), given, fix="choose a --workdir (and crop.out_dir) outside the data")
  check_workdir(config, workdir, mode, overwrite)
  # jax, flax, orbax and grain load only once the command line and the workdir are known to be good.
  import jax

  from ssl_ct import compilation_cache, crop, results, run_localization, tasks, train
  from ssl_ct.data import prepare

  config_checks.validate_components(config)
  compilation_cache.enable()
  is_first = distributed.process_id_from_env() == 0  # one lock per job: every process shares the workdir
  lock = outputs.lock_folder(workdir, "workdir") if is_first else None
  try:
    if mode not in ("crop", "localize", "export"):
      write_config(config, workdir, overwrite)  # checks again, now that this run holds the workdir
    if mode == "export":
      from ssl_ct import api

      out = api.export(api.load_localizer(workdir), os.path.join(workdir, "localizer"), overwrite=overwrite)
      print(f"exported the localizer to {out}; use it with ssl_ct.load_localizer({out!r})")
      return None
    distributed.initialize_from_env()
    dataset = prepare.load_dataset(config.data, workdir)
    outputs.check_apart(
      _workdir_outputs(config, workdir),
      sources.input_paths(config.data.path, dataset.inputs) if config.data.path else [],
      fix="choose a --workdir (and crop.out_dir) outside the data",
    )
    logging.info("%d volumes ready from %s", len(dataset.volumes), dataset.root or config.data.path)
    print(f"prepared {len(dataset.volumes)} volumes ({len(dataset.truth)} with ground truth); config in {workdir}/config.json")
    if mode == "prepare":
      return None
    if mode == "crop":  # one writer: every process of a multi-host job would write the same files
      return crop.crop_from_workdir(config, workdir, dataset, overwrite=overwrite) if jax.process_index() == 0 else None
    state = train.train_and_evaluate(config, workdir, dataset=dataset) if mode in ("train", "all") else None
    if mode == "train":
      return None
    params = train.host_params(state.params) if state is not None else None
    if config.task in tasks.LOCALIZING:
      summary = run_localization.localize_workdir(config, workdir, dataset=dataset, params=params)  # each process its share
      if jax.process_index() != 0:  # reports and cropping: process 0 alone
        return None
      for method, metrics in (summary or {}).items():
        print(f"{method:32s} " + "  ".join(f"{k}={v:.3f}" for k, v in metrics.items()))
      print(f"boxes, figures and report.md in {results.latest(workdir)}")
      if mode == "all" and "crop" in config:
        crop.crop_from_workdir(config, workdir, dataset, overwrite=overwrite)
      return summary
    if jax.process_index() != 0:  # segmentation and pre-training reports: process 0 alone
      return None
    if config.task == "segmentation":  # the downstream task: predicted label volumes scored by IoU, no boxes
      from ssl_ct import segment

      result = segment.evaluate_workdir(config, workdir, dataset=dataset, params=params)
      print("segmentation IoU on the test volumes: " + "  ".join(f"{k}={v:.4f}" for k, v in result["summary"].items()))
      print(f"label volumes, overlays and report.md in {results.latest(workdir, segment.FOLDER)}")
      return result
    # A pre-training run: its encoder initialises segmentation models.
    if mode == "localize":
      raise InputError(f"task {config.task!r} does not localize; pass this workdir as --config.init of configs/segment_medaka.py")
    print(f"pre-trained encoder in {workdir}/checkpoints; use it with configs/segment_medaka.py --config.init={workdir}")
    return None
  finally:
    if lock is not None:
      os.close(lock)


def _fail(message):
  print(f"error: {' '.join(message.split())}", file=sys.stderr)
  sys.exit(2)


def _last_line(text):
  lines = [line.strip() for line in str(text).splitlines() if line.strip()]
  return lines[-1] if lines else ""


def _override_of(argv, key):
  """The --config.* argument whose dotted path holds `key`, or a generic name."""
  for arg in argv:
    if arg.startswith("--config.") and key in arg.split("=", 1)[0].split("."):
      return arg
  return f"--config...{key}"


def _config_error(error, argv):
  """One line for an exception raised while parsing the flags or loading the config file."""
  if isinstance(error, SyntaxError):
    return f"config file {error.filename}, line {error.lineno}: syntax error ({error.msg}); fix the file"
  if isinstance(error, (KeyError, AttributeError)) and error.args:
    text = str(error.args[0]).replace("\\n", "\n").replace("\\'", "'")  # ml_collections nests reprs
    first, *rest = text.strip("'").splitlines()
    key = first.strip("'\" \\")
    if "has no attribute 'get_config'" in first:
      return f"the config file defines no get_config(); give a file like configs/rotation_xenopus.py ({first})"
    hint = " ".join(r.strip() for r in rest if r.strip())
    arg = _override_of(argv, key)
    hint = hint[0].lower() + hint[1:] if hint else "check the key against the config file"
    return f"{arg}: the config has no key '{key}' there; {hint}"
  if isinstance(error, flags.IllegalFlagValueError):
    text = str(error)
    flag = text.split(":", 1)[0].removeprefix("flag ").strip() if text.startswith("flag ") else "a flag"
    if "Error whilst parsing config file" in text:
      return f"{flag}: {_last_line(text).split(': ', 1)[-1]}"
    if missing := required_flag(error):
      return f"{missing} is required; see --help"
    reason = _last_line(error.__cause__ or text.split(": ", 1)[-1])
    fix = "give a value of the key's type, as in the config file" if flag.startswith("--config.") else "see --help"
    return f"{flag}: cannot parse the value ({reason}); {fix}"
  if isinstance(error, flags.Error):
    return f"{_last_line(error)}; see --help"
  return f"the config file failed to load ({type(error).__name__}: {_last_line(error)}); fix the file or its :args"


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  log_setup.quiet_libraries()
  try:
    config = _CONFIG.value
    config.lock()
  except OSError as e:  # config_flags defers a config file that failed to load until first use
    _fail(f"cannot load the config file ({_last_line(e).strip()}); check the --config path")
  exit_on_input_error(run, config, _WORKDIR.value, _MODE.value, _OVERWRITE.value)


def packaged_config(value):
  """`--config`'s value, with a file that does not exist here taken from the installed configs
  (ssl_ct.configs, the repository's configs/): `configs/rotation_xenopus.py:demo`,
  `rotation_xenopus.py` and `rotation_xenopus` all work outside the checkout."""
  path, colon, arg = value.partition(":")
  if os.path.exists(path) or not path:
    return value
  from importlib import resources

  name = os.path.basename(path)
  name = name if name.endswith(".py") else f"{name}.py"
  installed = resources.files("ssl_ct.configs") / name
  return f"{installed}{colon}{arg}" if installed.is_file() else value


def parse_flags(argv):
  """absl flag parsing with bad config files, bad config args and override typos as one-line errors."""
  argv = [f"--config={packaged_config(a[len('--config=') :])}" if a.startswith("--config=") else a for a in argv]
  if wants_help(argv[1:]):  # absl's own --help exits 1 and, under the console script, shows no module doc
    print_help("python -m ssl_ct.main", __doc__, flags.FLAGS.module_help(flags.FLAGS.find_module_defining_flag("workdir")))
  try:
    return flags.FLAGS(argv)
  except Exception as e:  # config files are user code: anything can come out of loading one
    _fail(_config_error(e, argv))


def cli():
  run_cli(lambda: app.run(main, flags_parser=parse_flags))


if __name__ == "__main__":
  cli()
