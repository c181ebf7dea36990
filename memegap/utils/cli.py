"""What the project's argparse commands share (memegap-collect, memegap-posts)."""

from __future__ import annotations

from rich_argparse import ArgumentDefaultsRichHelpFormatter, RawDescriptionRichHelpFormatter


class HelpFormatter(RawDescriptionRichHelpFormatter, ArgumentDefaultsRichHelpFormatter):
    """Rich help that keeps the description's line breaks and shows every option's default."""
