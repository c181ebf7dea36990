"""A finished run, read back: its config, its best checkpoint, the model with those weights, and the
embeddings of one split. The study scripts (error analysis, embedding shift, pictogram search) share these."""

from __future__ import annotations

from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from memegap.errors import UserError
from memegap.utils.run_dir import load_checkpoint

# The model options whose runs embed images and texts (what the study scripts read).
DUAL_ENCODERS = ("dual_encoder", "clip_dora")


def run_config(run_dir: Path) -> DictConfig:
    """The run's composed config (.hydra/config.yaml)."""
    path = Path(run_dir) / ".hydra" / "config.yaml"
    if not path.is_file():
        raise UserError(f"{run_dir} is not a run dir: no {path.relative_to(run_dir)}")
    return OmegaConf.load(path)


def require_run_of(run_dir: Path, command: str, models: tuple[str, ...] = (), data: tuple[str, ...] = ()) -> None:
    """A UserError in one line when the run's model or data option (Hydra's record, .hydra/hydra.yaml) is
    not one that `command` can read, naming what it needs and what the run is; nothing when unrecorded."""
    path = Path(run_dir) / ".hydra" / "hydra.yaml"
    choices = dict(OmegaConf.load(path).hydra.runtime.choices) if path.is_file() else {}
    for group, allowed in (("model", models), ("data", data)):
        if allowed and choices.get(group) and choices[group] not in allowed:
            needs = " or ".join(f"{group}={option}" for option in allowed)
            raise UserError(f"{command} needs a run of {needs}; {run_dir} is a run of model={choices.get('model')} data={choices.get('data')}")


def best_checkpoint(run_dir: Path) -> Path:
    """The run's one epoch_*.ckpt (ModelCheckpoint keeps the best, save_top_k=1), else last.ckpt."""
    checkpoints = Path(run_dir) / "checkpoints"
    candidates = sorted(checkpoints.glob("epoch_*.ckpt"))
    if len(candidates) > 1:
        raise UserError(
            f"{checkpoints} holds {len(candidates)} epoch checkpoints (training keeps one, the best): "
            "move the others away, or pass one with --checkpoint where the command has it"
        )
    if not candidates and not (checkpoints / "last.ckpt").is_file():
        raise UserError(f"{checkpoints} holds no checkpoint: train the run first")
    return candidates[0] if candidates else checkpoints / "last.ckpt"


def trained_model(cfg: DictConfig, run_dir: Path, checkpoint_path: Path | None = None) -> torch.nn.Module:
    """The run's model with a checkpoint's weights (default: its best), in eval mode, on the CPU."""
    path = checkpoint_path or best_checkpoint(run_dir)
    checkpoint = load_checkpoint(path, "--checkpoint" if checkpoint_path else "checkpoint")  # a missing, unreadable or foreign file: one line naming it
    sizes = {}
    if "num_classes" in cfg.model and cfg.model.num_classes is None:  # a classifier sized by its data module when it trained
        sizes["num_classes"] = checkpoint.get("hyper_parameters", {}).get("num_classes")
    model = hydra.utils.instantiate(cfg.model, **sizes, _convert_="all")
    model.on_load_checkpoint(checkpoint)  # adds the frozen pretrained weights, which checkpoints leave out
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except RuntimeError as error:
        raise UserError(f"{path}: its weights do not fit the model of {run_dir} ({str(error).splitlines()[0][:160]}): "
                        "pass a checkpoint of this run (or the run dir the checkpoint belongs to)") from None
    return model.eval()


def set_up_data(cfg: DictConfig):
    """The run's data module, set up (its splits as the run had them)."""
    from memegap.utils.run import build

    datamodule = build(cfg.data, _convert_="all")  # a value the class refuses: its one line
    datamodule.setup()
    return datamodule


@torch.no_grad()
def embed_split(datamodule, model: torch.nn.Module, split: str) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Image and text embeddings (N×d each) of a set-up data module's `split` under `model`
    (trained_model), plus "image_id" (N: the pair's image, shared by the captions of one image), and the row ids."""
    loader = getattr(datamodule, f"{split}_dataloader")()
    parts = [(model.embed(batch), batch["image_id"], batch["id"]) for batch in loader]
    embeddings = {key: torch.cat([part[key] for part, _, _ in parts]) for key in ("image", "text")}
    embeddings["image_id"] = torch.cat([image_ids for _, image_ids, _ in parts])
    return embeddings, [row_id for _, _, ids in parts for row_id in ids]
