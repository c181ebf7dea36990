"""Image backbones for the classifier (and the siamese nets): each maps images N×3×H×W to features
N×output_dim and lists its `stages()` from input to output, so that a model can train only the last n.

- TorchvisionBackbone: torchvision's ResNets, AlexNet and VGG-16, with ImageNet weights for users who
  are online; `keep_head` keeps the network's own fully connected layers as `head` (what the memes
  thesis trained on top of the frozen feature extractor).
- CifarCNN: the CIFAR-100 study's small CNN (slides 004: three 3×3 convolutions, two 2×2 max-pools,
  two fully connected layers, dropout 0.5).
- The offline pretrained EfficientNet-Lite0 (memegap.nets.towers.EfficientNetLite0) has stages() too.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from memegap.errors import UserError

RESNETS = ("resnet18", "resnet34", "resnet50", "resnet152")
NETWORKS = (*RESNETS, "alexnet", "vgg16")
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class TorchvisionBackbone(nn.Module):
    """A torchvision network without its fully connected layers: N×3×H×W → N×output_dim (512 for
    resnet18/34, 2048 for resnet50/152, 9216 for alexnet, 25088 for vgg16).

    keep_head: keep those layers as `self.head` (output_dim → 1000: ResNet's fc, AlexNet's and VGG's
    classifier), for a model that trains them; else `self.head` is None.
    weights: "none" (random init) or "imagenet" (torchvision's IMAGENET1K_V1, downloaded once into the
    torch hub cache; offline without that file, a UserError says where to put it).
    normalize: the input is in [0, 1] and is standardised here with ImageNet's mean and std (what the
    weights expect); set false when the data module standardises already.
    """

    def __init__(self, name: str = "resnet18", weights: str = "none", normalize: bool = True, keep_head: bool = False) -> None:
        super().__init__()
        import torchvision

        if name not in NETWORKS:
            raise UserError(f"model.backbone.name must be one of {list(NETWORKS)}, got {name!r}")
        if weights not in ("none", "imagenet"):
            raise UserError(f"model.backbone.weights must be 'none' or 'imagenet', got {weights!r}")
        self.network = torchvision.models.get_model(name, weights=None)
        if weights == "imagenet":
            self.network.load_state_dict(imagenet_state_dict(name))
        head_name = "fc" if name in RESNETS else "classifier"
        head = getattr(self.network, head_name)
        self.output_dim = next(layer for layer in head.modules() if isinstance(layer, nn.Linear)).in_features
        setattr(self.network, head_name, nn.Identity())
        self.head = head if keep_head else None
        self.head_dim = 1000
        self.name, self.normalize = name, normalize
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def stages(self) -> list[nn.Module]:
        """ResNet: stem and layer1–4. AlexNet, VGG: the convolution blocks, each ending in a max-pool."""
        net = self.network
        if self.name in RESNETS:
            return [nn.ModuleList([net.conv1, net.bn1]), net.layer1, net.layer2, net.layer3, net.layer4]
        blocks, current = [], []
        for layer in net.features:
            current.append(layer)
            if isinstance(layer, nn.MaxPool2d):
                blocks.append(nn.ModuleList(current))
                current = []
        return blocks

    def forward(self, images: Tensor) -> Tensor:
        return self.network((images - self.mean) / self.std if self.normalize else images)


def imagenet_state_dict(name: str) -> dict[str, Tensor]:
    """torchvision's ImageNet weights of `name` from the torch hub cache, downloaded there when missing."""
    from torchvision.models import get_model_weights

    weights = get_model_weights(name).IMAGENET1K_V1
    cached = f"{torch.hub.get_dir()}/checkpoints/{weights.url.rsplit('/', 1)[1]}"
    try:
        return weights.get_state_dict(progress=False, check_hash=True)
    except (OSError, RuntimeError) as error:  # URLError is an OSError; a bad hash a RuntimeError
        raise UserError(
            f"could not get the ImageNet weights of {name} ({type(error).__name__}: {error}). Offline, download "
            f"{weights.url} elsewhere and put it at {cached}; or set model.backbone.weights=none"
        ) from None


class CifarCNN(nn.Module):
    """The CIFAR-100 study's CNN up to its last hidden layer: N×3×H×W → N×512.

    The slides give the layer kinds only (3×3 convolutions, stride 1, padded, ReLU; 2×2 max-pooling;
    two fully connected layers; dropout 0.5). The widths are our choice, those of TFLearn's own CIFAR
    example that such code starts from: conv 32 → pool → conv 64 → conv 64 → pool → fc 512. The
    classifier adds the dropout and the second fully connected layer. image_size: the input's side in
    pixels (a multiple of 4), which sets the first fully connected layer's size.
    """

    def __init__(self, widths: tuple[int, int, int] = (32, 64, 64), hidden: int = 512, image_size: int = 32) -> None:
        super().__init__()
        first, second, third = widths

        def conv(inputs: int, outputs: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(inputs, outputs, 3, stride=1, padding=1), nn.ReLU(inplace=True))

        self.block1 = nn.Sequential(conv(3, first), nn.MaxPool2d(2))
        self.block2 = nn.Sequential(conv(first, second), conv(second, third), nn.MaxPool2d(2))
        self.hidden = nn.Sequential(nn.Flatten(), nn.Linear(third * (image_size // 4) ** 2, hidden), nn.ReLU(inplace=True))
        self.output_dim = hidden

    def stages(self) -> list[nn.Module]:
        return [self.block1, self.block2, self.hidden]

    def forward(self, images: Tensor) -> Tensor:
        return self.hidden(self.block2(self.block1(images)))


def freeze_stages(backbone: nn.Module, train_last_n: int | None) -> list[nn.Module]:
    """Freeze the backbone except its last `train_last_n` stages (None trains all of it, 0 none of it).
    Returns the frozen stages, whose BatchNorm layers a model keeps in eval mode (eval_frozen_batchnorm)."""
    stages = backbone.stages()
    if train_last_n is None:
        return []
    if not 0 <= train_last_n <= len(stages):
        raise UserError(f"model.train_last_n must be between 1 and {len(stages)} (the backbone's stages), got {train_last_n}")
    backbone.requires_grad_(False)
    for stage in stages[len(stages) - train_last_n :]:
        stage.requires_grad_(True)
    return stages[: len(stages) - train_last_n]


def eval_frozen_batchnorm(frozen_stages: list[nn.Module]) -> None:
    """Put the BatchNorm layers of frozen stages in eval mode: they keep their running statistics."""
    for stage in frozen_stages:
        for module in stage.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()
