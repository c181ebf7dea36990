"""The classifiers study (CIFAR-100, image sentiment): the offline real-image check on Twemoji pictures."""
