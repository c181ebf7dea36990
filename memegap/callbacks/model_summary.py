"""The model summary printed at the start of a fit: Lightning's RichModelSummary without what a user
cannot act on here (the FLOPs column, all zeros since no input shape is given, "Total FLOPs: 0", and the
counts of modules in train and eval mode)."""

from __future__ import annotations

from typing import Any

from lightning.pytorch.callbacks import RichModelSummary
from lightning.pytorch.utilities.model_summary import get_formatted_model_size, get_human_readable_count

SHOWN_COLUMNS = ("Name", "Type", "Params", "Params per Device")


class ModelSummary(RichModelSummary):
    """Each top-level module's name, type and parameter count, then the trainable, frozen and total
    parameters and their size."""

    @staticmethod
    def summarize(summary_data: list[tuple[str, list[str]]], total_parameters: int, trainable_parameters: int, model_size: float,
                  total_training_modes: dict[str, int], total_flops: int, **summarize_kwargs: Any) -> None:
        from rich import get_console
        from rich.table import Table

        columns = [(name, values) for name, values in summary_data if name in SHOWN_COLUMNS]
        table = Table(header_style=summarize_kwargs.get("header_style", "bold magenta"))
        for name, _ in columns:
            table.add_column(name, justify="right" if name.startswith("Params") else "left", no_wrap=name == "Name")
        for row in zip(*(values for _, values in columns)):
            table.add_row(*row)
        console = get_console()
        console.print(table)
        frozen = total_parameters - trainable_parameters
        console.print(f"[bold]Trainable params[/]: {get_human_readable_count(int(trainable_parameters))}   "
                      f"[bold]Frozen[/]: {get_human_readable_count(int(frozen))}   [bold]Total[/]: {get_human_readable_count(int(total_parameters))} "
                      f"({get_formatted_model_size(model_size)} MB)")
