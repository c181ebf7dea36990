"""Plain torch networks, no Lightning and no files of their own: the pretrained towers that pip installs
(EfficientNet-Lite0, MiniLM), the classifier backbones (torchvision, timm, the CIFAR study's CNN), the
hub check for a text tower, the DoRA/LoRA adapters, and features of frozen towers."""
