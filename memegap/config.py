"""Structured-config schemas for the groups users edit most (data, model), the trainer check, and
the resolvers the config tree uses.

Each YAML of conf/data and conf/model starts its defaults list with one of these schemas, so a
misspelt key (`data.batchsize=8`) or a wrong type (`data.batch_size=abc`) fails at start-up with the
key's full name, before anything is loaded. The `trainer` group is checked against the signature of
`lightning.Trainer` (names and types). `register_configs()` must run before Hydra composes.
"""

from __future__ import annotations

import inspect
import sys
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from memegap.errors import UserError

# The config tree lives at the repository root (conf/), beside the package (editable install).
CONFIG_DIR = str(Path(__file__).resolve().parents[1] / "conf")


@dataclass
class PairedDataConfig:
    """The keys every image–text pairs source has (memegap.data.pairs.PairedDataModule)."""

    language: str = "en"
    image_size: int = 64
    batch_size: int = 90
    eval_batch_size: int = 256
    num_workers: int = 0
    split_fractions: list[float] = field(default_factory=lambda: [0.8, 0.1, 0.1])
    max_per_split: Optional[int] = None
    seed: int = 0
    store_dir: str = "data/store"


@dataclass
class TwemojiDataConfig(PairedDataConfig):
    _target_: str = "memegap.data.twemoji.TwemojiDataModule"
    split_by: str = "base"
    group_variants: bool = True


@dataclass
class ArasaacDataConfig(PairedDataConfig):
    _target_: str = "memegap.data.arasaac.ArasaacDataModule"
    root: str = "data/arasaac"
    image_size: int = 224
    exclude_sex: bool = False
    exclude_violence: bool = False


@dataclass
class CocoCaptionsDataConfig(PairedDataConfig):
    _target_: str = "memegap.data.coco_captions.CocoCaptionsDataModule"
    root: str = "data/coco"
    captions_file: str = "captions.json"
    image_dir: str = ""
    prompt: str = ""
    image_size: int = 224


@dataclass
class Cifar100DataConfig:
    _target_: str = "memegap.data.cifar100.Cifar100DataModule"
    root: str = "data/cifar100"
    label: str = "fine"
    download: bool = True
    val_fraction: float = 0.1
    standardize: bool = True
    augment: bool = True
    random_crop: bool = False
    batch_size: int = 128
    eval_batch_size: int = 512
    num_workers: int = 0
    max_per_split: Optional[int] = None
    balance: str = "none"
    seed: int = 0


@dataclass
class StoredImagesDataConfig:
    """The keys every source read from a user's table of images has (image sentiment, memes, posts)."""

    image_size: int = 128
    batch_size: int = 32
    eval_batch_size: int = 128
    num_workers: int = 0
    max_per_split: Optional[int] = None
    seed: int = 0
    store_dir: str = "data/store"


@dataclass
class TableDataConfig(StoredImagesDataConfig):
    """A table source with a seeded split and a choice for bad rows (image sentiment, memes)."""

    split_seed: int = 0
    bad_rows: str = "error"


@dataclass
class ImageSentimentDataConfig(TableDataConfig):
    _target_: str = "memegap.data.image_sentiment.ImageSentimentDataModule"
    table: str = "data/image_sentiment/image-sentiment-polarity.csv"
    image_size: int = 224
    min_confidence: float = 0.0
    confidence_weight: bool = False
    split_fractions: list[float] = field(default_factory=lambda: [0.8, 0.15, 0.05])
    balance: str = "weights"
    augment: bool = True


@dataclass
class MemesDataConfig(TableDataConfig):
    _target_: str = "memegap.data.memes.MemesDataModule"
    table: str = "data/memes/memes.parquet"
    min_likes: int = 0
    split: str = "random"
    split_fractions: list[float] = field(default_factory=lambda: [0.7, 0.1, 0.2])
    phash_distance: int = 6
    bins: str = "quantile"
    n_bins: int = 4
    target: str = "log1p"
    sampling: str = "triplet"
    text_features: list[str] = field(default_factory=list)
    lda_topics: int = 10
    afinn_lexicon: Optional[str] = None


@dataclass
class PostsDataConfig(StoredImagesDataConfig):
    _target_: str = "memegap.data.posts.PostsDataModule"
    table: str = "data/posts/coco_posts.csv"
    categories: list[str] = field(default_factory=lambda: ["outdoor", "animals", "food", "sport", "fashion"])
    other: bool = True
    tag_map: Optional[dict[str, Optional[str]]] = None
    unknown_tags: str = "error"
    image_size: int = 224
    split_fractions: list[float] = field(default_factory=lambda: [0.5, 0.25, 0.25])
    balance: str = "weights"
    augment: bool = True


@dataclass
class EfficientNetLite0Config:
    _target_: str = "memegap.nets.towers.EfficientNetLite0"
    pretrained: bool = True
    freeze_batchnorm: bool = True
    pool_stages: bool = False
    keep_head: bool = False


@dataclass
class MiniLMTextConfig:
    _target_: str = "memegap.nets.towers.MiniLMText"
    model_dir: Optional[str] = None
    max_length: int = 32
    with_pooler: bool = False


@dataclass
class ContrastiveLossConfig:
    _target_: str = "memegap.losses.contrastive.ContrastiveLoss"
    weights: dict[str, float] = field(default_factory=dict)  # set by conf/model/loss/<setting>.yaml
    alpha: float = 1.0
    beta: float = 1.0
    lambda_inter: float = 0.25
    lambda_intra: float = 0.25
    reduction: str = "mean"
    variance_off_diagonal: str = "pooled"


@dataclass
class AdamWConfig:
    _target_: str = "torch.optim.AdamW"
    _partial_: bool = True
    lr: float = 1e-3
    weight_decay: float = 0.0
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])


@dataclass
class DualEncoderConfig:
    _target_: str = "memegap.models.dual_encoder.DualEncoder"
    image_tower: EfficientNetLite0Config = field(default_factory=EfficientNetLite0Config)
    text_tower: MiniLMTextConfig = field(default_factory=MiniLMTextConfig)
    loss: ContrastiveLossConfig = field(default_factory=ContrastiveLossConfig)
    optimizer: AdamWConfig = field(default_factory=AdamWConfig)
    embed_dim: int = 256
    dora_rank: int = 8
    dora_alpha: float = 16.0
    dora_dropout: float = 0.0
    image_adapter_targets: Optional[str] = None
    text_adapter_targets: Optional[str] = None
    lock_image_tower: bool = False
    lock_text_tower: bool = False
    init_temperature: float = 0.07
    max_logit_scale: float = 100.0
    warmup_steps: int = 10
    check_adapter_gradients: bool = True


@dataclass
class ClipDoraConfig:
    _target_: str = "memegap.models.clip.ClipDualEncoder"
    loss: ContrastiveLossConfig = field(default_factory=ContrastiveLossConfig)
    optimizer: AdamWConfig = field(default_factory=AdamWConfig)
    name_or_path: str = "openai/clip-vit-base-patch32"
    adapter_path: Optional[str] = None
    finetune: str = "dora"
    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    targets: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"])
    last_n: int = 2
    lock_image_tower: bool = False
    lock_text_tower: bool = False
    train_projections: bool = True
    train_logit_scale: bool = False
    gradient_checkpointing: bool = False
    max_logit_scale: float = 100.0
    warmup_steps: int = 10
    check_adapter_gradients: bool = True
    save_weights: bool = True


@dataclass
class ImageClassifierConfig:
    _target_: str = "memegap.models.classifier.ImageClassifier"
    backbone: Any = None  # a node with _target_ (memegap.nets.backbones), checked against that class
    optimizer: Any = None  # a partial optimizer (_partial_: true), e.g. torch.optim.Adam
    scheduler: Any = None  # a partial LR scheduler, or null
    num_classes: Optional[int] = None
    freeze: str = "none"
    train_last_n: int = 1
    dropout: float = 0.0
    label_smoothing: float = 0.0


@dataclass
class SiameseTripletConfig:
    _target_: str = "memegap.models.siamese_triplet.SiameseTriplet"
    backbone: Any = None  # a node with _target_ and keep_head: true, checked against that class
    optimizer: Any = None
    trains: str = "fc"
    train_last_n: int = 1
    embedding: str = "head"
    distance: str = "euclidean"
    margin: Optional[float] = None
    mining: str = "offline"
    cache_features: bool = True
    collapse_tolerance: float = 0.02
    fusion: bool = False


@dataclass
class SiameseRegressionConfig:
    _target_: str = "memegap.models.siamese_regression.SiameseRegression"
    backbone: Any = None  # a node with _target_, checked against that class
    optimizer: Any = None
    trains: str = "fc"
    train_last_n: int = 1
    prediction: str = "neighbours"
    cache_features: bool = True
    fusion: bool = False


SCHEMAS = {
    "data": {
        "twemoji_schema": TwemojiDataConfig,
        "arasaac_schema": ArasaacDataConfig,
        "coco_captions_schema": CocoCaptionsDataConfig,
        "cifar100_schema": Cifar100DataConfig,
        "image_sentiment_schema": ImageSentimentDataConfig,
        "memes_schema": MemesDataConfig,
        "posts_schema": PostsDataConfig,
    },
    "model": {
        "dual_encoder_schema": DualEncoderConfig,
        "clip_dora_schema": ClipDoraConfig,
        "image_classifier_schema": ImageClassifierConfig,
        "siamese_triplet_schema": SiameseTripletConfig,
        "siamese_regression_schema": SiameseRegressionConfig,
    },
}
SCHEMA_OF_TARGET = {schema._target_: schema for schemas in SCHEMAS.values() for schema in schemas.values()}


class ConfigError(UserError):
    """A config group holds a key its schema does not know, or a value of the wrong type."""


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
}


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
    """Check the data and model groups against their schema (by `_target_`), keys added with `+`
    included; the trainer, and every callback and logger, against the arguments of the class they
    build; the top-level keys' types; and the counts and sizes against their ranges (RANGES)."""
    for key, expected in TOP_LEVEL_TYPES.items():
        value = cfg.get(key)
        if value is not None and type(value) is not expected:
            raise ConfigError(f"{key}={value!r}: expected {expected.__name__}")
    validate_arguments(cfg.get("trainer"), "trainer", skip=("callbacks", "logger"))  # those have groups of their own
    for group in ("callbacks", "logger"):
        for name, entry in (cfg.get(group) or {}).items():
            if isinstance(entry, DictConfig) and "_target_" in entry:
                validate_arguments(entry, f"{group}.{name}")
    for group in SCHEMAS:
        node = cfg.get(group)
        schema = SCHEMA_OF_TARGET.get(node.get("_target_")) if node is not None else None
        if schema is None:
            continue
        try:
            # a plain container: merging the typed node itself would skip the key check
            OmegaConf.merge(OmegaConf.structured(schema), OmegaConf.to_container(node, resolve=True))
        except OmegaConfBaseException as error:
            raise ConfigError(f"config group '{group}' ({schema.__name__}): {error}") from None
        for name, child in node.items():  # nodes the schema leaves open (Any): checked against their class
            if schema.__dataclass_fields__[name].type in (Any, "Any") and isinstance(child, DictConfig) and "_target_" in child:
                validate_arguments(child, f"{group}.{name}")
    check_ranges(cfg)


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
        if name not in types or (isinstance(value, dict) and "_target_" in value):
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
    return str(annotation).replace("typing.", "")


def config_subdir(run_dir: str) -> str:
    """Where Hydra saves this invocation's config in the run dir: `.hydra` for the first run, and
    `.hydra/attempt-<time>` for every later one (a resume), so the first config is never overwritten."""
    if (Path(run_dir) / ".hydra" / "config.yaml").exists():
        return f".hydra/attempt-{datetime.now():%Y-%m-%d_%H-%M-%S}"
    return ".hydra"


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


def register_configs() -> None:
    if not OmegaConf.has_resolver("memegap_config_subdir"):
        OmegaConf.register_new_resolver("memegap_config_subdir", config_subdir, use_cache=True)
        OmegaConf.register_new_resolver("memegap_group_choices", group_choices)
    store = ConfigStore.instance()
    for group, schemas in SCHEMAS.items():
        for name, node in schemas.items():
            store.store(group=group, name=name, node=node)
