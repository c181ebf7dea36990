"""Training throughput on each device this machine has: the CPU, and one CUDA GPU in fp32 and in
bf16-mixed (as `trainer=gpu` and `trainer.precision=bf16-mixed`), of
- `--model dual_encoder`: the default experiment's dual encoder on Twemoji (items = pairs);
- `--model resnet18_cifar`: model=resnet_classifier (ResNet-18, SGD) on CIFAR-100-sized input,
  random 32×32 images in 100 classes (items = images; the pixels do not change the cost).

Lightning fits `--warmup + --steps` batches; the clock runs over the last `--steps` only (after cuDNN
and allocator warm-up). Each setting runs with both deliveries: "uint8" images (what the loaders give;
the model converts on its device) and "float" (converted to float32 in [0, 1] on the CPU before the
transfer, as before). Reports items/s, the host-to-device bytes of a step's batch (its tensors' bytes
as they arrive on the device), the ratios uint8/float and device/CPU in the same run, and the peak CUDA
memory. Prints one JSON document.
    python benchmarks/training_device.py [--model dual_encoder] [--steps 20] [--warmup 5] [--batch-size 90] [--image-size 64]
    python benchmarks/training_device.py --model resnet18_cifar --batch-size 128 --image-size 32
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import lightning as L
import torch

from loop_overhead import make_model_and_data


class StepClock(L.Callback):
    """Seconds from the end of training batch `start_after` to the end of training (device synchronised)."""

    def __init__(self, start_after: int) -> None:
        self.start_after, self.started, self.seconds = start_after, 0.0, 0.0

    def _now(self, pl_module: L.LightningModule) -> float:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)
        return time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if batch_idx == self.start_after - 1:
            self.started = self._now(pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        self.seconds = self._now(pl_module) - self.started


class TransferredBytes(L.Callback):
    """The bytes of the tensors of the last training batch as they arrived on the device."""

    def __init__(self) -> None:
        self.bytes = 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.bytes = sum(value.numel() * value.element_size() for value in batch.values() if isinstance(value, torch.Tensor))


class FloatDelivery:
    """A loader's batches with `image` converted to float32 in [0, 1] on the CPU (the delivery before uint8)."""

    def __init__(self, loader) -> None:
        self.loader = loader

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self):
        return ({**batch, "image": batch["image"].float().div_(255.0)} for batch in self.loader)


def make_classifier_and_data(steps: int, batch_size: int, image_size: int):
    """ResNet-18 with a 100-class layer (SGD, as model=resnet_classifier) and `steps` batches of random images."""
    from functools import partial

    from memegap.data.labelled import LabelledImages
    from memegap.data.sampling import make_loader
    from memegap.nets.backbones import TorchvisionBackbone
    from memegap.models.classifier import ImageClassifier

    L.seed_everything(0, verbose=False)
    model = ImageClassifier(TorchvisionBackbone("resnet18"), partial(torch.optim.SGD, lr=0.1, momentum=0.9), num_classes=100)
    count = steps * batch_size
    images = torch.randint(0, 256, (count, 3, image_size, image_size), dtype=torch.uint8)
    dataset = LabelledImages([str(k) for k in range(count)], images, torch.arange(count) % 100)
    return model, make_loader(dataset, batch_size, num_workers=0, shuffle=True, seed=0)


def make_dual_encoder_and_data(steps: int, batch_size: int, image_size: int):
    model, datamodule = make_model_and_data(steps, batch_size, image_size)
    return model, datamodule.train_dataloader()


MODELS = {"dual_encoder": make_dual_encoder_and_data, "resnet18_cifar": make_classifier_and_data}


def throughput(model_name: str, accelerator: str, precision: str, delivery: str, steps: int, warmup: int, batch_size: int, image_size: int) -> dict:
    model, loader = MODELS[model_name](warmup + steps, batch_size, image_size)
    if delivery == "float":
        loader = FloatDelivery(loader)
    clock, transferred = StepClock(start_after=warmup), TransferredBytes()
    trainer = L.Trainer(
        accelerator=accelerator, devices=1, precision=precision, max_steps=warmup + steps, limit_val_batches=0,
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        num_sanity_val_steps=0, callbacks=[clock, transferred],
    )
    if accelerator == "cuda":
        torch.cuda.reset_peak_memory_stats()
    trainer.fit(model, train_dataloaders=loader)
    result = {"items_per_second": round(steps * batch_size / clock.seconds, 1), "seconds": round(clock.seconds, 3),
              "host_to_device_mb_per_step": round(transferred.bytes / 1e6, 2)}
    if accelerator == "cuda":
        result["peak_cuda_memory_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=sorted(MODELS), default="dual_encoder")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=90)
    parser.add_argument("--image-size", type=int, default=64)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    setups = {"cpu_fp32": ("cpu", "32-true")}
    if torch.cuda.is_available():
        setups |= {"cuda_fp32": ("cuda", "32-true"), "cuda_bf16_mixed": ("cuda", "bf16-mixed")}
    results = {f"{name}_{delivery}": throughput(args.model, *setup, delivery, args.steps, args.warmup, args.batch_size, args.image_size)
               for name, setup in setups.items() for delivery in ("uint8", "float")}
    for name, result in results.items():
        delivery = name.rsplit("_", 1)[1]
        result["ratio_over_cpu"] = round(result["items_per_second"] / results[f"cpu_fp32_{delivery}"]["items_per_second"], 2)
    for name in setups:
        uint8, floats = results[f"{name}_uint8"], results[f"{name}_float"]
        uint8["speed_over_float"] = round(uint8["items_per_second"] / floats["items_per_second"], 2)
        uint8["bytes_over_float"] = round(uint8["host_to_device_mb_per_step"] / floats["host_to_device_mb_per_step"], 3)
    print(json.dumps({
        "model": args.model,
        "batch_size": args.batch_size,
        "image_size": args.image_size,
        "steps_timed": args.steps,
        "cpu_threads": torch.get_num_threads(),
        "cuda_device": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "results": results,
    }, indent=2))


if __name__ == "__main__":
    main()
