"""Structured-config schemas for the groups users edit most (data, model).

Each YAML of conf/data and conf/model starts its defaults list with one of these schemas, so a
misspelt key (`data.batchsize=8`) or a wrong type (`data.batch_size=abc`) fails at start-up with the
key's full name, before anything is loaded. `register_configs()` must run before Hydra composes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

# The config tree lives at the repository root (conf/), beside the package (editable install).
CONFIG_DIR = str(Path(__file__).resolve().parents[1] / "conf")


@dataclass
class TwemojiDataConfig:
    _target_: str = "memegap.data.twemoji.TwemojiDataModule"
    language: str = "en"
    image_size: int = 64
    batch_size: int = 90
    eval_batch_size: int = 256
    num_workers: int = 0
    split_fractions: list[float] = field(default_factory=lambda: [0.8, 0.1, 0.1])
    max_per_split: Optional[int] = None
    split_by: str = "base"
    group_variants: bool = True
    seed: int = 0


@dataclass
class EfficientNetLite0Config:
    _target_: str = "memegap.models.towers.EfficientNetLite0"
    pretrained: bool = True
    freeze_batchnorm: bool = True
    pool_stages: bool = False


@dataclass
class MiniLMTextConfig:
    _target_: str = "memegap.models.towers.MiniLMText"
    model_dir: Optional[str] = None
    max_length: int = 32
    with_pooler: bool = False


@dataclass
class InfoNCELossConfig:
    _target_: str = "memegap.losses.contrastive.InfoNCELoss"


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
    loss: InfoNCELossConfig = field(default_factory=InfoNCELossConfig)
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


SCHEMAS = {"data": {"twemoji_schema": TwemojiDataConfig}, "model": {"dual_encoder_schema": DualEncoderConfig}}
SCHEMA_OF_TARGET = {schema._target_: schema for schemas in SCHEMAS.values() for schema in schemas.values()}


class ConfigError(ValueError):
    """A config group holds a key its schema does not know, or a value of the wrong type."""


def validate_config(cfg: DictConfig) -> None:
    """Check the data and model groups against their schema (by `_target_`), keys added with `+` included."""
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


def register_configs() -> None:
    store = ConfigStore.instance()
    for group, schemas in SCHEMAS.items():
        for name, node in schemas.items():
            store.store(group=group, name=name, node=node)
