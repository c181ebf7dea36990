"""The one-way import rule of docs/architecture.md, read from the package's own import statements: each
room of memegap imports only the rooms below it, and no framework room imports a study."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "memegap"
FOUNDATION = {"errors", "batch", "targets"}
# room -> the rooms it may import (besides itself and the foundation). Kept in step with the table of
# docs/architecture.md; a new room must be added to both.
MAY_IMPORT = {
    "errors": set(),
    "batch": set(),
    "targets": set(),
    "utils": set(),
    "metrics": set(),  # pure functions on tensors
    "losses": set(),
    "index": set(),
    "nets": {"index"},
    "baselines": {"index", "nets"},
    "data": {"utils", "nets"},  # data knows no model
    "models": {"utils", "metrics", "losses", "index", "nets"},  # models read no data module
    "callbacks": {"utils", "metrics", "index", "nets", "baselines"},
    "collect": {"utils"},
    "loggers": {"utils"},
    "config": {"utils"},
    # the entry points and the test helpers may use every framework room (but no study)
    "train": {"utils", "metrics", "losses", "index", "nets", "baselines", "data", "models", "callbacks", "collect", "loggers", "config"},
    "eval": {"utils", "metrics", "losses", "index", "nets", "baselines", "data", "models", "callbacks", "collect", "loggers", "config", "train"},
    "testing": {"utils", "metrics", "losses", "index", "nets", "baselines", "data", "models", "callbacks", "collect", "loggers", "config", "train"},
    "predict": {"utils", "metrics", "losses", "index", "nets", "baselines", "data", "models", "callbacks", "collect", "loggers", "config"},
    "zeroshot": {"utils", "metrics", "losses", "index", "nets", "baselines", "data", "models", "callbacks", "collect", "loggers", "config"},
    "studies": {"*"},  # a study may import any framework room
}


def room(module: str) -> str:
    """memegap.data.memes -> "data"; memegap.train -> "train"."""
    return module.split(".")[1]


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every memegap import in a file, top-level or inside a function."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        found += [(node.lineno, name) for name in names if name.startswith("memegap.")]
    return found


def forbidden_imports() -> list[str]:
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE.parent)
        parts = relative.with_suffix("").parts
        if len(parts) == 2 and parts[1] == "__init__":
            continue
        source = parts[1]
        allowed = MAY_IMPORT[source]
        for line, module in imports_of(path):
            target = room(module)
            if target == source or target in FOUNDATION or "*" in allowed or target in allowed:
                continue
            wrong.append(f"{relative}:{line} imports {module} ({source} -> {target})")
    return wrong


def test_every_room_of_the_package_is_in_the_rule():
    rooms = {path.stem if path.is_file() else path.name for path in PACKAGE.iterdir() if path.suffix == ".py" or (path / "__init__.py").exists()}
    assert rooms - {"__init__"} == set(MAY_IMPORT), "a room of memegap/ is missing from MAY_IMPORT (and docs/architecture.md), or one is gone"


def test_imports_run_one_way():
    assert forbidden_imports() == []


def test_the_rule_catches_an_import_against_the_flow(tmp_path, monkeypatch):
    """The check itself can fail: a data module that imports a model is reported with its line."""
    fake = tmp_path / "memegap"
    (fake / "data").mkdir(parents=True)
    (fake / "data" / "bad.py").write_text("import torch\n\nfrom memegap.models.dual_encoder import ContrastiveDualEncoder\n")
    monkeypatch.setitem(globals(), "PACKAGE", fake)
    assert forbidden_imports() == ["memegap/data/bad.py:3 imports memegap.models.dual_encoder (data -> models)"]


# The files that may know the loggers: the entry points' set-up, our W&B logger, the offline W&B reader,
# and the one helper through which callbacks log pictures and histograms.
LOGGER_MODULES = ("wandb", "lightning.pytorch.loggers", "memegap.loggers")
MAY_KNOW_LOGGERS = {"memegap/loggers.py", "memegap/utils/run.py", "memegap/utils/wandb_offline.py", "memegap/callbacks/log_media.py"}


def test_nothing_but_the_entry_points_and_log_media_knows_the_loggers():
    knowing = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if any(name == m or name.startswith(m + ".") for name in names for m in LOGGER_MODULES):
                knowing.add(str(path.relative_to(PACKAGE.parent)))
    assert knowing <= MAY_KNOW_LOGGERS, sorted(knowing - MAY_KNOW_LOGGERS)
