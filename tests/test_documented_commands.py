"""Every `memegap-train` / `memegap-eval` command written in README.md, docs/, the study pages and the
experiment configs' comments composes and passes the start-up checks, so that none can drift from the
config tree again. A placeholder such as <run> becomes a path; a sweep (a,b) its first value."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from memegap.config import validate_config
from tests.conftest import compose_config

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "experiments").glob("*/README.md"))]
CONFIG_COMMENTS = sorted(path for path in (ROOT / "conf").rglob("*.yaml") if "help" not in path.parts)  # help/: --help text templates
COMMAND = re.compile(r"(?:^|`|#\s+)(memegap-(?:train|eval)\s[^`#\n]*)", re.M)


def documented_commands() -> list[tuple[str, str]]:
    """(where, command) for every memegap-train / memegap-eval line, continuation lines joined (the line
    number counts lines after the joining)."""
    found = []
    for path in [*PAGES, *CONFIG_COMMENTS]:
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".yaml":  # commands sit in comments: "#   memegap-train ..." and "#   ... \" continuations
            text = "\n".join(line.lstrip("#").strip() if line.lstrip().startswith("#") else "" for line in text.splitlines())
        text = re.sub(r"\\\n\s*", " ", text)  # a command continued on the next line (trailing backslash)
        for match in COMMAND.finditer(text):
            command = " ".join(match.group(1).split())
            line = text[: match.start(1)].count("\n") + 1
            found.append((f"{path.relative_to(ROOT)}:{line}", command))
    return found


def overrides_of(command: str) -> tuple[str, list[str]]:
    """The config name and the overrides a command composes (placeholders as paths, sweeps at their first value)."""
    command = re.sub(r"<[^>]+>", "/tmp/placeholder", command).replace("'${seed}'", "1").replace("=...", "=/tmp/placeholder")
    words = shlex.split(command)
    program, arguments = words[0], [word for word in words[1:] if word not in ("-m", "--multirun") and "=" in word]
    overrides = []
    for argument in arguments:
        key, value = argument.split("=", 1)
        if "," in value and not value.startswith(("[", "{", "'", '"')):
            value = value.split(",")[0]
        overrides.append(f"{key}={value}")
    return ("eval.yaml" if program == "memegap-eval" else "train.yaml"), overrides


def first_of_each(commands: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Each distinct command once (README.md and docs/configuration.md share several), where it is first written."""
    seen, kept = set(), []
    for where, command in commands:
        if command not in seen:
            seen.add(command)
            kept.append((where, command))
    return kept


COMMANDS = first_of_each(documented_commands())


# Combinations the pages describe in words rather than as a whole command.
DESCRIBED = [("experiments/classifiers/README.md (offline backbone swap)", "memegap-train experiment=image_sentiment model/backbone=efficientnet_lite0"),
             ("experiments/classifiers/README.md (linear probe)", "memegap-train experiment=cifar100_resnet model/backbone=efficientnet_lite0 model.freeze=backbone")]
COMMANDS += DESCRIBED


def test_the_pages_have_commands_to_check():
    assert len(COMMANDS) >= 40, COMMANDS  # distinct commands  # the README, docs/configuration.md, the five study pages and the configs


@pytest.mark.parametrize("where, command", COMMANDS, ids=[where for where, _ in COMMANDS])
def test_a_documented_command_composes_and_passes_the_start_up_checks(where, command, tmp_path):
    config_name, overrides = overrides_of(command)
    cfg = compose_config(config_name, overrides, tmp_path)
    validate_config(cfg)
