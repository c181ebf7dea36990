"""CLIP as the dual encoder (model=clip_dora): a Hugging Face `CLIPModel` with its own projections and
temperature, fine-tuned with DoRA (peft), LoRA, the last n layers, or every weight.

Before any training the module is exactly the CLIP it loads: embed() returns what
`CLIPModel.get_image_features` / `get_text_features` return for the same inputs (DoRA and LoRA start as
the identity), so the "before" row of every table is CLIP's zero-shot score.

Inputs: images N×3×S×S in [0, 1] (the packed store's size; resized to CLIP's input size when it differs,
then normalised with the model's mean and std), texts list[str] (tokenised here, truncated to CLIP's
77 tokens).

At the end of fit the run dir gets `clip_adapters/` (peft's save_pretrained: the adapters and the trained
projections; DoRA / LoRA only) and `clip_merged/` (merge_and_unload: a plain CLIP directory with the
adapters folded in). memegap-eval loads either: model.name_or_path=<run>/clip_merged, or the base
model with model.adapter_path=<run>/clip_adapters. A trained temperature (train_logit_scale) is kept in
clip_merged and in the checkpoints only.
"""

from __future__ import annotations

import copy
import json
import logging
import re
from functools import partial
from pathlib import Path

import torch
from torch import Tensor, nn

from memegap.errors import UserError
from memegap.models.dual_encoder import ContrastiveDualEncoder
from memegap.nets.hub import local_or_hub

log = logging.getLogger(__name__)
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
FINETUNE = ("dora", "lora", "last_n", "full")
TOWERS = {"image": "vision_model", "text": "text_model"}
PROJECTION = {"image": "visual_projection", "text": "text_projection"}
MIN_VOCABULARY = 1000  # an offline from_pretrained(<hub id>) can return a 2-token placeholder tokenizer
TOKENIZER_FILES = ("tokenizer.json", "vocab.json")


class ClipTokenizer:
    """list[str] -> input ids N×L (int64) for CLIP's text tower, L = the model's context length (77).

    The model directory's own tokenizer when it has one (tokenizer.json or vocab.json + merges.txt),
    else the OpenAI CLIP vocabulary that ships with open_clip (open-clip-torch's bundled BPE, 49,408
    tokens), which needs no download. A tokenizer with fewer than 1,000 tokens is refused: that is
    the placeholder transformers returns for a hub id it could not fetch.
    """

    def __init__(self, directory: str, context_length: int) -> None:
        if any((Path(directory) / name).is_file() for name in TOKENIZER_FILES):
            from transformers import CLIPTokenizerFast

            tokenizer = CLIPTokenizerFast.from_pretrained(directory)
            self.vocabulary_size, self.source = len(tokenizer), f"the tokenizer of {directory}"
            self._encode = partial(tokenizer, padding="max_length", truncation=True, max_length=context_length, return_tensors="pt")
        else:
            from open_clip.tokenizer import SimpleTokenizer

            tokenizer = SimpleTokenizer(context_length=context_length)
            self.vocabulary_size, self.source = tokenizer.vocab_size, "open_clip's bundled CLIP vocabulary"
            self._encode = tokenizer
        if self.vocabulary_size < MIN_VOCABULARY:
            raise UserError(
                f"{self.source} has {self.vocabulary_size} tokens: a placeholder, not CLIP's vocabulary (49,408). "
                "Offline, a hub id gives such a tokenizer; pass a local model directory with its tokenizer files"
            )

    def __call__(self, texts: list[str]) -> Tensor:
        encoded = self._encode(list(texts))
        return encoded if isinstance(encoded, Tensor) else encoded["input_ids"]


def load_clip(name_or_path: str, key: str = "model.name_or_path"):
    """A CLIPModel and the directory of its small files (tokenizer, preprocessing): a local directory,
    or, for a hub id online, the hub cache's copy of the repository's .json / .txt files; the weights then
    come through from_pretrained, which fetches one format (a whole snapshot holds several)."""
    from transformers import CLIPModel
    from transformers.utils import logging as transformers_logging

    source = directory = local_or_hub(name_or_path, key)
    if not Path(directory).is_dir():
        from huggingface_hub import snapshot_download

        directory = snapshot_download(name_or_path, allow_patterns=["*.json", "*.txt"])
    transformers_logging.disable_progress_bar()  # bars for loading and saving a few hundred tensors say nothing
    verbosity = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()  # the load report lists every key; nothing to act on
    try:
        model = CLIPModel.from_pretrained(source)
    except (OSError, ValueError) as error:
        raise UserError(f"{key}={name_or_path}: not a CLIP model directory ({error})") from None
    finally:
        transformers_logging.set_verbosity(verbosity)
    return model, directory


def image_normalisation(directory: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) from the directory's preprocessor_config.json, else OpenAI CLIP's."""
    path = Path(directory) / "preprocessor_config.json"
    if path.is_file():
        config = json.loads(path.read_text())
        return tuple(config.get("image_mean", OPENAI_CLIP_MEAN)), tuple(config.get("image_std", OPENAI_CLIP_STD))
    return OPENAI_CLIP_MEAN, OPENAI_CLIP_STD


def adapter_pattern(towers: list[str], targets: list[str]) -> str:
    """peft's target_modules regex: the `targets` layers (q_proj, fc1, ...) of every encoder layer of `towers`."""
    return rf"({'|'.join(TOWERS[tower] for tower in towers)})\.encoder\.layers\.\d+\.\w+\.({'|'.join(map(re.escape, targets))})"


class ClipDualEncoder(ContrastiveDualEncoder):
    """CLIP fine-tuned on image–text pairs with a contrastive loss (memegap.losses.contrastive).

    finetune: "dora" / "lora" (adapters of `rank`, `alpha`, `dropout` on `targets` of every layer of both
    towers), "last_n" (the last `last_n` encoder layers of each tower and its final norm train fully),
    "full" (every weight). lock_image_tower / lock_text_tower keep a tower (and its projection) as
    loaded. train_projections: the two projections train too (in every mode; ours). train_logit_scale:
    the temperature trains too (ours: CLIP's own is kept). gradient_checkpointing trades compute for
    activation memory (a bigger contrastive batch fits). adapter_path: start from saved adapters
    (clip_adapters/ of an earlier run).
    """

    def __init__(
        self,
        loss: nn.Module,
        optimizer: partial,
        name_or_path: str = "openai/clip-vit-base-patch32",
        adapter_path: str | None = None,
        finetune: str = "dora",
        rank: int = 8,
        alpha: float = 16.0,
        dropout: float = 0.0,
        targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"),
        last_n: int = 2,
        lock_image_tower: bool = False,
        lock_text_tower: bool = False,
        train_projections: bool = True,
        train_logit_scale: bool = False,
        gradient_checkpointing: bool = False,
        max_logit_scale: float = 100.0,
        warmup_steps: int = 10,
        check_adapter_gradients: bool = True,
        save_weights: bool = True,
    ) -> None:
        super().__init__(loss, optimizer)
        self.save_hyperparameters(ignore=["loss", "optimizer"], logger=False)
        if finetune not in FINETUNE:
            raise UserError(f"model.finetune must be one of {list(FINETUNE)}, got {finetune!r}")
        clip, directory = load_clip(name_or_path)
        text_config = clip.config.text_config
        self.tokenizer = ClipTokenizer(directory, min(77, text_config.max_position_embeddings))
        if self.tokenizer.vocabulary_size > text_config.vocab_size:
            raise UserError(f"{self.tokenizer.source} has {self.tokenizer.vocabulary_size} tokens, more than the model's {text_config.vocab_size}")
        self.source_directory = directory
        self.image_size = clip.config.vision_config.image_size
        mean, std = image_normalisation(directory)
        self.register_buffer("pixel_mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        trained = [tower for tower, locked in (("image", lock_image_tower), ("text", lock_text_tower)) if not locked]
        clip.requires_grad_(False)
        if adapter_path:
            from peft import PeftModel

            clip = PeftModel.from_pretrained(clip, adapter_path, is_trainable=bool(trained))
        elif finetune in ("dora", "lora") and trained:
            from peft import LoraConfig, get_peft_model

            config = LoraConfig(
                r=rank, lora_alpha=alpha, lora_dropout=dropout, use_dora=finetune == "dora", target_modules=adapter_pattern(trained, list(targets)),
                modules_to_save=[PROJECTION[tower] for tower in trained] if train_projections else None,
            )
            clip = get_peft_model(clip, config)
        else:
            for tower in trained:
                self._unfreeze(clip, tower, finetune, last_n, train_projections)
        self.has_adapters = finetune in ("dora", "lora") and bool(trained)
        self.clip = clip
        self.clip_model.logit_scale.requires_grad_(train_logit_scale)
        if gradient_checkpointing:
            model = self.clip_model  # transformers 5 renamed gradient_checkpointing_enable
            enable = getattr(model, "activation_checkpointing_enable", None)
            if enable is not None:
                enable(activation_checkpointing_kwargs={"use_reentrant": False})
            else:
                model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})

    @staticmethod
    def _unfreeze(clip: nn.Module, tower: str, finetune: str, last_n: int, train_projections: bool) -> None:
        model = getattr(clip, TOWERS[tower])
        if finetune == "full":
            model.requires_grad_(True)
        else:  # last_n
            layers = model.encoder.layers
            if not 1 <= last_n <= len(layers):
                raise UserError(f"model.last_n={last_n}: the {tower} tower has {len(layers)} layers")
            for layer in layers[len(layers) - last_n :]:
                layer.requires_grad_(True)
            (model.post_layernorm if tower == "image" else model.final_layer_norm).requires_grad_(True)
        getattr(clip, PROJECTION[tower]).requires_grad_(train_projections)

    @property
    def clip_model(self) -> nn.Module:
        """The CLIPModel itself (inside peft's wrapper when there are adapters)."""
        return self.clip.get_base_model() if hasattr(self.clip, "get_base_model") else self.clip

    @property
    def logit_scale(self) -> nn.Parameter:
        return self.clip_model.logit_scale

    def pixels(self, images: Tensor) -> Tensor:
        """N×3×S×S in [0, 1] -> CLIP's normalised N×3×R×R input (R = the model's image size)."""
        if images.shape[-1] != self.image_size or images.shape[-2] != self.image_size:
            images = nn.functional.interpolate(images, size=(self.image_size, self.image_size), mode="bicubic", antialias=True, align_corners=False)
        return (images - self.pixel_mean) / self.pixel_std

    def embed_images(self, images: Tensor) -> Tensor:
        return _features(self.clip.get_image_features(pixel_values=self.pixels(images)))

    def embed_texts(self, texts: list[str]) -> Tensor:
        return _features(self.clip.get_text_features(input_ids=self.tokenizer(texts).to(self.device)))

    def on_fit_end(self) -> None:
        if self.hparams.save_weights and self.trainer.is_global_zero:
            self.save_weights(Path(self.trainer.default_root_dir))

    def save_weights(self, run_dir: Path) -> None:
        """clip_adapters/ (with adapters) and clip_merged/ under run_dir: the weights at the end of fit
        (the last epoch; the best epoch's are in checkpoints/)."""
        if hasattr(self.clip, "save_pretrained") and hasattr(self.clip, "merge_and_unload"):
            self.clip.save_pretrained(run_dir / "clip_adapters")
            merged = copy.deepcopy(self.clip).merge_and_unload()
        else:
            merged = self.clip
        merged.save_pretrained(run_dir / "clip_merged")
        for name in ("preprocessor_config.json", "tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt", "special_tokens_map.json"):
            source = Path(self.source_directory) / name
            if source.is_file():
                (run_dir / "clip_merged" / name).write_bytes(source.read_bytes())
        log.info("CLIP weights saved in %s", run_dir / ("clip_adapters and clip_merged" if hasattr(self.clip, "merge_and_unload") else "clip_merged"))


def _features(output) -> Tensor:
    """get_*_features returns the projected embedding (transformers 4) or an output holding it as pooler_output (5)."""
    return output if isinstance(output, Tensor) else output.pooler_output
