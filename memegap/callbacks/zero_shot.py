"""ZeroShotClassification: a dual encoder's zero-shot accuracy on the classes of its own pairs, every epoch.

Where the data module's pairs have classes (`zero_shot_classes()`: Twemoji's nine Unicode emoji groups), the
class words fill each prompt template (metrics.zero_shot.TEMPLATES in data.language, or `templates`), the
prompts' embeddings average into one prototype per class, and each validation/test image's answer is its nearest
prototype. Logs `<stage>/zero_shot/acc1`, `acc5` and `mean_per_class_recall` (balanced accuracy; chance is
1 / classes). Data without classes, or a model without `embed_texts`, logs nothing. memegap-zeroshot gives the
same figures with their baselines, a linear probe and other labelled sources.
"""

from __future__ import annotations

from collections.abc import Sequence

import lightning as L
import torch
from torch import Tensor

from memegap.callbacks.collect import EmbeddingCollector
from memegap.metrics.retrieval import first_rows
from memegap.metrics.zero_shot import TEMPLATES, prompt_prototypes, zero_shot

LOGGED = ("acc1", "acc5", "mean_per_class_recall")


class ZeroShotClassification(EmbeddingCollector):
    def __init__(self, templates: Sequence[str] | None = None) -> None:
        super().__init__()
        if templates is not None and any(template.count("{}") != 1 for template in templates):
            raise ValueError(f"callbacks.zero_shot.templates: each needs one {{}} where the class words go, got {list(templates)}")
        self.templates = list(templates) if templates is not None else None
        self._classes: tuple[list[str], dict[str, int]] | None = None

    def on_embeddings(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str, embeddings: dict[str, Tensor], targets: dict[str, Tensor]) -> None:
        datamodule = getattr(trainer, "datamodule", None)
        if "image" not in embeddings or self.row_ids is None or not hasattr(pl_module, "embed_texts"):
            return
        if self._classes is None:  # the data module's classes do not change during a run
            self._classes = getattr(datamodule, "zero_shot_classes", lambda: None)()
        if self._classes is None:
            return
        words, class_of_id = self._classes
        rows = first_rows(targets.get("image_id"), len(self.row_ids)).tolist()  # each image once
        images = embeddings["image"][rows]
        labels = torch.tensor([class_of_id.get(self.row_ids[row], -1) for row in rows], device=images.device)
        known = labels >= 0
        if not known.any():
            return
        language = str(getattr(datamodule, "hparams", {}).get("language", "en"))
        templates = self.templates or TEMPLATES.get(language, TEMPLATES["en"])
        with torch.no_grad():
            prototypes = prompt_prototypes(pl_module.embed_texts, words, templates)
        metrics = zero_shot(images[known], prototypes.to(images.device), labels[known], permutations=0)
        self.log_scalars(pl_module, f"{stage}/zero_shot", {name: metrics[name] for name in LOGGED})
