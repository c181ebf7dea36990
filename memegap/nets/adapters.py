"""DoRA adapters (peft) on a tower's Linear/Conv layers, and the check that every adapter trains."""

from __future__ import annotations

from torch import nn

from memegap.errors import UserError


def add_dora(tower: nn.Module, target_modules: str, rank: int, alpha: float, dropout: float = 0.0) -> nn.Module:
    """Inject DoRA adapters (peft, use_dora=True) into the modules whose names fully match the regex
    `target_modules`, and freeze every base weight of the tower. Returns the same tower, modified."""
    from peft import LoraConfig, inject_adapter_in_model

    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, use_dora=True, target_modules=target_modules)
    tower = inject_adapter_in_model(config, tower)
    for name, parameter in tower.named_parameters():
        parameter.requires_grad = "lora_" in name
    if not any(parameter.requires_grad for parameter in tower.parameters()):
        raise UserError(
            f"no layer of {type(tower).__name__} matches the adapter targets {target_modules!r} "
            "(model.image_adapter_targets / model.text_adapter_targets)"
        )
    return tower


def adapters_without_gradient(module: nn.Module) -> list[str]:
    """Names of the adapter tensors (peft `lora_*`) whose .grad is missing or all zero."""
    return [
        name
        for name, parameter in module.named_parameters()
        if "lora_" in name and parameter.requires_grad and (parameter.grad is None or not parameter.grad.any())
    ]


class AdapterWithoutGradientError(UserError):
    """An adapter tensor got no gradient: it sits on a layer the forward pass never uses."""

    def __init__(self, names: list[str]) -> None:
        shown = ", ".join(names[:20]) + (", …" if len(names) > 20 else "")
        super().__init__(
            f"{len(names)} adapter tensor(s) received no gradient after the first optimiser step; their layers are "
            f"not on the forward path (e.g. BERT's pooler under mean pooling). Remove them from the adapter "
            f"targets (model.image_adapter_targets / model.text_adapter_targets): {shown}"
        )
