"""Lightning's training loop vs a plain PyTorch loop: same model (the dual encoder of the default
experiment on 32 px Twemoji), same batches, same optimiser and schedule, same number of steps.

Runs are alternated and repeated; the ratio uses the fastest of each. Goal: ratio ≤ 1.05.
Prints one JSON document.    python benchmarks/loop_overhead.py [--steps 30] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import math
import time
import warnings
from functools import partial

import lightning as L
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from memegap.config import CONFIG_DIR, register_configs
from memegap.data.twemoji import TwemojiDataModule
from memegap.models.dual_encoder import warmup_cosine


def make_model_and_data(steps: int, batch_size: int, image_size: int = 32):
    """The default dual encoder and a Twemoji datamodule with exactly `steps` training batches."""
    L.seed_everything(0, verbose=False)
    register_configs()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        model_config = compose("train.yaml", overrides=["model=dual_encoder"]).model  # conf/model/dual_encoder.yaml
    model = instantiate(model_config, _convert_="all")
    datamodule = TwemojiDataModule(image_size=image_size, batch_size=batch_size, max_per_split=steps * batch_size)
    datamodule.setup()
    return model, datamodule


def lightning_loop(steps: int, batch_size: int) -> float:
    model, datamodule = make_model_and_data(steps, batch_size)
    trainer = L.Trainer(
        accelerator="cpu", devices=1, max_steps=steps, limit_val_batches=0, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
    )
    start = time.perf_counter()
    trainer.fit(model, train_dataloaders=datamodule.train_dataloader())
    return time.perf_counter() - start


def plain_loop(steps: int, batch_size: int) -> float:
    model, datamodule = make_model_and_data(steps, batch_size)
    start = time.perf_counter()
    model.train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = model.optimizer_factory(params=trainable)
    schedule = partial(warmup_cosine, warmup_steps=model.hparams.warmup_steps, total_steps=steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    max_logit_scale = math.log(model.hparams.max_logit_scale)
    for step, batch in enumerate(datamodule.train_dataloader()):
        if step == steps:
            break
        embeddings = model.embed(batch)
        loss = model.loss(embeddings["image"], embeddings["text"], model.logit_scale)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0.0, max_logit_scale)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    times = {"lightning": [], "plain": []}
    for _ in range(args.repeats):
        times["plain"].append(plain_loop(args.steps, args.batch_size))
        times["lightning"].append(lightning_loop(args.steps, args.batch_size))
    best = {name: min(values) for name, values in times.items()}
    print(json.dumps({
        "steps": args.steps,
        "batch_size": args.batch_size,
        "seconds": {name: [round(v, 3) for v in values] for name, values in times.items()},
        "ratio_lightning_over_plain": round(best["lightning"] / best["plain"], 3),
        "goal": "<= 1.05",
    }, indent=2))


if __name__ == "__main__":
    main()
