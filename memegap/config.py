"""The schemas of the data and model groups, the start-up check of a composed config, and the
resolvers the config tree uses.

The class signature is the one home of every default. Each YAML of conf/data and conf/model starts its
defaults list with `<option>_schema`, a structured config that `register_configs()` makes from the
signature of the class the YAML's `_target_` names (and of the `_target_` nodes nested in it): every
argument is a key, with the signature's default, so `model.lock_image_tower=true` can be set from the
command line although the YAML does not state it, and a misspelt key (`data.batchsize=8`) fails at
compose naming it. Every node with a `_target_` (data, model and the nodes nested in them, the trainer,
each callback and logger) is then checked against the signature of the class it builds, names and
types, before anything is loaded. `register_configs()` must run before Hydra composes.
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path
from dataclasses import field, make_dataclass
from typing import Any

import yaml
from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from memegap.errors import UserError
from memegap.utils.cli import config_error_line, usable_cores
from memegap.utils.run_dir import config_subdir, run_name

# The config tree lives at the repository root (conf/), beside the package (editable install).
CONFIG_DIR = str(Path(__file__).resolve().parents[1] / "conf")


class ConfigError(UserError):
    """A config node holds a key its class does not take, a value of the wrong type, or one out of range."""


# Top-level keys of train.yaml / eval.yaml and their types.
TOP_LEVEL_TYPES = {"seed": int, "train": bool, "test": bool, "test_before_fit": bool, "allow_config_change": bool, "verbose": bool}


# The allowed range (least, greatest; None: no bound) of the counts and sizes a run is built from, where
# the key is present. A value outside it fails at start-up (it once failed deep inside, after building
# a 0px image store or an empty loader). Lists are checked element by element.
RANGES: dict[str, tuple[float | None, float | None]] = {
    "data.image_size": (1, None),
    "data.batch_size": (1, None),
    "data.eval_batch_size": (1, None),
    "data.num_workers": (0, None),
    "data.store_workers": (1, None),
    "data.max_per_split": (1, None),
    "data.split_fractions": (0, 1),
    "data.n_bins": (2, None),
    "data.lda_topics": (1, None),
    "model.embed_dim": (1, None),
    "model.dora_rank": (1, None),
    "model.train_last_n": (1, None),
    "model.optimizer.lr": (0, None),
    "callbacks.cross_modal_retrieval.pool_size": (2, None),
    "callbacks.cross_modal_retrieval.pool_repeats": (1, None),
    "callbacks.cross_modal_retrieval.ks": (1, None),
    "callbacks.cross_modal_retrieval.train_subset": (0, None),
    "callbacks.popularity_report.k": (1, None),
    "callbacks.popularity_report.bootstrap_resamples": (0, None),
    "callbacks.embedding_geometry.bins": (1, None),
    "trainer.accumulate_grad_batches": (1, None),
    "trainer.max_epochs": (-1, None),  # -1: no limit (Lightning); 0 is refused by check_training_length
    "trainer.max_steps": (-1, None),
    "trainer.min_epochs": (0, None),
    "trainer.check_val_every_n_epoch": (1, None),
    "trainer.log_every_n_steps": (1, None),
}


# Counts that start one process each: bounded by the cores this process may use (each DataLoader
# worker holds its own copy of the dataset's state; 1,000 of them ran a 24 GB machine out of memory).
WORKERS_PER_CORE = 2
PROCESS_COUNTS = ("data.num_workers", "data.store_workers")


def check_process_counts(cfg: DictConfig) -> None:
    bound = WORKERS_PER_CORE * usable_cores()
    for key in PROCESS_COUNTS:
        value = OmegaConf.select(cfg, key, default=None)
        if isinstance(value, int) and not isinstance(value, bool) and value > bound:
            raise ConfigError(f"{key}={value}: at most {bound} on this machine ({WORKERS_PER_CORE} × the {usable_cores()} CPU cores "
                              "this process may use); each is a process with its own memory")


def check_training_length(cfg: DictConfig) -> None:
    """A fit of zero epochs or steps trains nothing; it once tested twice and ended on a missing metric."""
    if not cfg.get("train", False):
        return
    for key in ("trainer.max_epochs", "trainer.max_steps"):
        if OmegaConf.select(cfg, key, default=None) == 0:
            raise ConfigError(f"{key}=0: a fit of zero {key.split('_')[-1]} trains nothing; use a positive value (-1: no limit), "
                              "or memegap-eval to only test a checkpoint")


def check_ranges(cfg: DictConfig) -> None:
    """Every key of RANGES that the config holds is inside its range; else a ConfigError naming the key."""
    for key, (least, greatest) in RANGES.items():
        value = OmegaConf.select(cfg, key, default=None)
        values = list(value) if OmegaConf.is_list(value) or isinstance(value, (list, tuple)) else [value]
        for item in values:
            if isinstance(item, bool) or not isinstance(item, (int, float)):
                continue  # None (unset) or a type error the schema reports
            if (least is not None and item < least) or (greatest is not None and item > greatest):
                allowed = f"≥ {least}" if greatest is None else f"between {least} and {greatest}"
                raise ConfigError(f"{key}={value}: must be {allowed}")


def check_accelerator(cfg: DictConfig) -> None:
    """trainer=gpu or ddp on a machine without a CUDA GPU: one line saying so (Lightning's is a traceback)."""
    import torch

    accelerator = str(OmegaConf.select(cfg, "trainer.accelerator", default="") or "")
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError(f"trainer.accelerator={accelerator}: no CUDA GPU is visible on this machine (torch.cuda.is_available() is False); "
                          "use trainer=default (CPU), or trainer=ddp_sim for DDP on CPU processes")


def validate_config(cfg: DictConfig) -> None:
    """Check the top-level keys' types; the trainer, every callback and logger, and the data and model
    groups (with every `_target_` node nested in them, keys added with `+` included) against the
    arguments of the class they build; and the counts and sizes against their ranges (RANGES)."""
    for key, expected in TOP_LEVEL_TYPES.items():
        value = cfg.get(key)
        if value is not None and type(value) is not expected:
            raise ConfigError(f"{key}={value!r}: expected {expected.__name__}")
    validate_arguments(cfg.get("trainer"), "trainer", skip=("callbacks", "logger"))  # those have groups of their own
    for group in ("callbacks", "logger"):
        for name, entry in (cfg.get(group) or {}).items():
            if isinstance(entry, DictConfig) and "_target_" in entry:
                validate_arguments(entry, f"{group}.{name}")
    for group in ("data", "model"):
        node = cfg.get(group)
        if isinstance(node, DictConfig) and "_target_" in node:
            validate_tree(node, group)
    check_ranges(cfg)
    check_process_counts(cfg)
    check_training_length(cfg)


def validate_tree(node: DictConfig, key: str) -> None:
    """validate_arguments on `node` and on every `_target_` node below it (a model's towers, loss,
    optimizer, backbone; the loss's terms, a mapping of them), each named by its full key
    (`model.image_tower.pretrained`, `model.loss.terms.cyclip.weight`)."""
    if "_target_" in node:
        validate_arguments(node, key)
    for name, child in node.items():
        if isinstance(child, DictConfig) and builds_objects(child):
            validate_tree(child, f"{key}.{name}")


def builds_objects(node: Any) -> bool:
    """Whether a config value is a `_target_` node or a mapping of them (Hydra builds what it holds)."""
    if not isinstance(node, (dict, DictConfig)):
        return False
    return "_target_" in node or (len(node) > 0 and all(isinstance(child, (dict, DictConfig)) and "_target_" in child for child in node.values()))


def validate_arguments(node: DictConfig | None, key: str, skip: tuple[str, ...] = ()) -> None:
    """Every key of `node` must be an argument of the class its `_target_` names, of the annotated
    type (lightning.Trainer for the trainer group). Nested `_target_` nodes are built and checked by
    that class; arguments without annotations are not type-checked."""
    if node is None:
        return
    from hydra.utils import get_class
    from pydantic import ConfigDict, TypeAdapter, ValidationError

    target = node.get("_target_")
    cls = next(klass for klass in get_class(target).__mro__ if names_its_arguments(klass))  # past (*args, **kwargs) wrappers
    parameters = inspect.signature(cls.__init__).parameters
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    types = argument_types(cls)
    for name, value in OmegaConf.to_container(node, resolve=True).items():
        if name.startswith("_") or name in skip:
            continue
        if name not in parameters and not accepts_any:
            raise ConfigError(f"{key}.{name}: not an argument of {target}")
        if name not in types or builds_objects(value):
            continue
        try:
            TypeAdapter(types[name], config=ConfigDict(arbitrary_types_allowed=True)).validate_python(value)
        except ValidationError:
            raise ConfigError(f"{key}.{name}={value!r}: {target} expects {type_name(types[name])}") from None


def argument_types(cls: type) -> dict[str, Any]:
    """The annotations of cls.__init__'s arguments, each resolved on its own, so that one that cannot
    be resolved at run time (a name imported only for type checkers) leaves the others checked."""
    namespace = vars(sys.modules[cls.__module__])
    types = {}
    for name, parameter in inspect.signature(cls.__init__).parameters.items():
        annotation = parameter.annotation
        if isinstance(annotation, str):
            try:
                annotation = eval(annotation, dict(namespace))  # what typing.get_type_hints does, one at a time
            except Exception:  # NameError for TYPE_CHECKING-only names, and the like
                continue
        if annotation is not inspect.Parameter.empty:
            types[name] = annotation
    return types


def names_its_arguments(klass: type) -> bool:
    """Whether klass.__init__ names any argument besides self, *args and **kwargs (object's counts)."""
    kinds = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    parameters = list(inspect.signature(klass.__init__).parameters.values())[1:]
    return klass is object or any(p.kind not in kinds for p in parameters)


def type_name(annotation: Any) -> str:
    """`int` for a plain class, `int | None` / `tuple[float, float, float]` for the rest."""
    return annotation.__name__ if isinstance(annotation, type) and not getattr(annotation, "__args__", None) else str(annotation).replace("typing.", "")


def group_choices() -> str:
    """The options of each user-facing config group, read from conf/ (schema entries left out), for --help."""
    lines = []
    root = Path(CONFIG_DIR)
    groups = sorted({path.parent for path in root.rglob("*.yaml")} - {root}, key=lambda path: path.relative_to(root).as_posix())
    for group in groups:
        name = group.relative_to(root).as_posix()
        if name.split("/")[0] in ("hydra", "paths", "extras"):
            continue
        options = sorted(option.stem for option in group.glob("*.yaml") if (name, option.stem) != ("debug", "default"))
        lines.append(f"  {name + ':':<16}{', '.join(options)}")
    return "\n".join(lines)


SCHEMA_GROUPS = ("data", "model")  # the groups whose options start from a schema made from their class


def schema_of(node: dict, name: str) -> type:
    """A dataclass with one field per argument of the class node["_target_"] names, defaulting to the
    signature's default (MISSING for an argument without one), every field typed Any (the types are
    checked against the signature at start-up), plus the node's own `_target_`/`_partial_` keys; a
    nested `_target_` node of the YAML naming one of our classes gets a schema of its own (a third-party
    one, such as a torch optimizer, is left as the YAML gives it)."""
    from hydra.utils import get_class

    cls = next(klass for klass in get_class(node["_target_"]).__mro__ if names_its_arguments(klass))
    fields = [(key, Any, field(default=value)) for key, value in node.items() if key.startswith("_")]
    for argument, parameter in list(inspect.signature(cls.__init__).parameters.items())[1:]:
        if parameter.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD) or argument in node and argument.startswith("_"):
            continue
        child = node.get(argument)
        if isinstance(child, dict) and str(child.get("_target_", "")).startswith("memegap."):  # ours; torch's keep their own
            nested = schema_of(child, f"{name}_{argument}")
            fields.append((argument, nested, field(default_factory=nested)))
            continue
        default = MISSING if parameter.default is inspect.Parameter.empty else parameter.default
        default = list(default) if isinstance(default, tuple) else default
        fields.append((argument, Any, field(default_factory=lambda value=default: value) if isinstance(default, (list, dict)) else field(default=default)))
    return make_dataclass(name, fields)


def register_configs() -> None:
    if not OmegaConf.has_resolver("memegap_config_subdir"):
        OmegaConf.register_new_resolver("memegap_config_subdir", config_subdir, use_cache=True)
        OmegaConf.register_new_resolver("memegap_group_choices", group_choices)
        OmegaConf.register_new_resolver("memegap_run_name", run_name)
    store = ConfigStore.instance()
    for group in SCHEMA_GROUPS:
        for path in sorted((Path(CONFIG_DIR) / group).glob("*.yaml")):
            node = yaml.safe_load(path.read_text()) or {}
            if "_target_" in node:
                store.store(group=group, name=f"{path.stem}_schema", node=schema_of(node, f"{path.stem}_schema"))


def compose_train(overrides: list[str]) -> DictConfig:
    """memegap-train's composed config with `overrides`, outside a Hydra app (the commands that build a run's parts
    themselves: memegap-zeroshot, cone.py); a command line Hydra cannot compose is a UserError in one line."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    register_configs()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            return compose(config_name="train.yaml", overrides=overrides)
    except (HydraException, OmegaConfBaseException) as error:
        raise UserError(config_error_line(error)) from None
