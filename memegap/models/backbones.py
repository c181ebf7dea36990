"""Image backbones for the classifier (and the siamese nets): each maps images N×3×H×W to features
N×output_dim and lists its `stages()` from input to output, so that a model can train only the last n.

- TorchvisionBackbone: torchvision's ResNets, with ImageNet weights for users who are online.
- CifarCNN: the CIFAR-100 study's small CNN (slides 004: three 3×3 convolutions, two 2×2 max-pools,
  two fully connected layers, dropout 0.5).
- The offline pretrained EfficientNet-Lite0 (memegap.models.towers.EfficientNetLite0) has stages() too.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from memegap.errors import UserError

RESNETS = ("resnet18", "resnet34", "resnet50", "resnet152")
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class TorchvisionBackbone(nn.Module):
    """A torchvision ResNet without its final layer: N×3×H×W → N×output_dim (512 for resnet18/34,
    2048 for resnet50/152).

    weights: "none" (random init) or "imagenet" (torchvision's IMAGENET1K_V1, downloaded once into the
    torch hub cache; offline without that file, a UserError says where to put it).
    normalize: the input is in [0, 1] and is standardised here with ImageNet's mean and std (what the
    weights expect); set false when the data module standardises already.
    """

    def __init__(self, name: str = "resnet18", weights: str = "none", normalize: bool = True) -> None:
        super().__init__()
        import torchvision

        if name not in RESNETS:
            raise UserError(f"model.backbone.name must be one of {list(RESNETS)}, got {name!r}")
        if weights not in ("none", "imagenet"):
            raise UserError(f"model.backbone.weights must be 'none' or 'imagenet', got {weights!r}")
        self.network = torchvision.models.get_model(name, weights=None)
        if weights == "imagenet":
            self.network.load_state_dict(imagenet_state_dict(name))
        self.output_dim = self.network.fc.in_features
        self.network.fc = nn.Identity()
        self.normalize = normalize
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def stages(self) -> list[nn.Module]:
        net = self.network
        return [nn.ModuleList([net.conv1, net.bn1]), net.layer1, net.layer2, net.layer3, net.layer4]

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
