"""The study scripts on a mini trained run: the embedding shift (λ = 0 is the run's own test R@1), the
cone effect of random weights, and memegap-search over the real pictograms."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf, open_dict

from memegap.studies.modality_gap import cone, shift, tables
from memegap.studies.modality_gap.search import main as search_main
from memegap.train import train
from memegap.utils.trained_run import embed_split, run_config, set_up_data, trained_model
from tests.conftest import MINI_OVERRIDES, compose_config

@pytest.fixture(scope="module")
def mini_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("run")
    cfg = compose_config("train.yaml", ["experiment=twemoji_gap", *MINI_OVERRIDES, "logger=none", "test_before_fit=false"], run_dir)
    train(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    (run_dir / ".hydra").mkdir(exist_ok=True)
    OmegaConf.save(cfg, run_dir / ".hydra" / "config.yaml")  # as memegap-train's Hydra app writes it
    return run_dir


def test_the_unshifted_row_of_the_shift_sweep_is_the_runs_test_recall(mini_run, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["shift.py", str(mini_run), "--lambdas", "0", "1"])
    shift.main()
    result = json.loads((mini_run / "shift" / "shift.json").read_text())
    rows, zero_shot = result["rows"], result["zero_shot"]
    logged = json.loads((mini_run / "metrics.json").read_text())["test"]
    assert rows[0]["text_to_image_R@1"] == pytest.approx(logged["test/retrieval/text_to_image_R@1_pool8"])
    assert rows[0]["gap"] == pytest.approx(logged["test/geometry/gap"], abs=1e-5) and rows[1]["gap"] < rows[0]["gap"]
    assert (mini_run / "shift" / "shift.png").stat().st_size > 0 and '"rows"' in capsys.readouterr().out
    # Twemoji's classes are Unicode's nine emoji groups; the mini test split holds 24 pairs
    assert len(zero_shot["prompts"]) == 9 and zero_shot["labelled_rows"] + zero_shot["rows_without_class"] == 24
    # unshifted zero-shot accuracy: the share of labelled test images whose most similar class prompt is their group
    cfg = run_config(mini_run)
    model, datamodule = trained_model(cfg, mini_run, None), set_up_data(cfg)
    words, class_of_id = datamodule.zero_shot_classes()
    with torch.no_grad():
        embeddings, row_ids = embed_split(datamodule, model, "test")
        class_text = model.embed_texts([datamodule.prompt(name) for name in words])
    labelled = [row for row, row_id in enumerate(row_ids) if row_id in class_of_id]
    truth = torch.tensor([class_of_id[row_ids[row]] for row in labelled])
    similarity = torch.nn.functional.normalize(embeddings["image"][labelled], dim=1) @ torch.nn.functional.normalize(class_text, dim=1).T
    assert rows[0]["zero_shot_accuracy"] == pytest.approx(float((similarity.argmax(1) == truth).float().mean()))


def test_the_shift_sweep_leaves_zero_shot_out_when_no_row_has_a_class(mini_run, capsys):
    cfg = run_config(mini_run)
    model, datamodule = trained_model(cfg, mini_run, None), set_up_data(cfg)
    assert shift.zero_shot_inputs(datamodule, model, ["no such emoji"]) == (None, None, None)
    assert "no row of the split has a zero-shot class" in capsys.readouterr().err


def test_the_shift_sweep_names_a_folder_that_is_not_a_run(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["shift.py", str(tmp_path)])
    with pytest.raises(SystemExit) as stopped:
        shift.main()
    assert stopped.value.code == 2 and "is not a run dir: no .hydra/config.yaml" in capsys.readouterr().err
    assert not (tmp_path / "shift").exists()


def test_random_weights_put_the_texts_in_a_narrow_cone(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["cone.py", "experiment=twemoji_gap", *MINI_OVERRIDES, "--random-inits", "2", "--out", str(tmp_path)])
    cone.main()
    measured = json.loads((tmp_path / "cone.json").read_text())
    assert len(measured["random"]) == 2 and (tmp_path / "cone_histograms.png").exists()
    # a randomly initialised MiniLM maps every prompt near one direction; the pretrained one spreads them
    assert all(row["text_mean_cosine"] > measured["pretrained"]["text_mean_cosine"] + 0.3 for row in measured["random"])
    assert "| random weights (2 initialisations) |" in (tmp_path / "cone.md").read_text()


def test_two_experiments_never_share_a_cone_folder(tmp_path):
    """The README's two cone commands (the default experiment, then ARASAAC) once both wrote logs/cone/."""
    names = {cone.default_out(compose_config("train.yaml", overrides, tmp_path), "test") for overrides in
             (["experiment=twemoji_gap"], ["experiment=arasaac_gap"], ["experiment=arasaac_gap", "data.language=es"])}
    assert names == {Path("logs/cone/twemoji_gap_en_test"), Path("logs/cone/arasaac_gap_en_test"), Path("logs/cone/arasaac_gap_es_test")}


def test_the_cone_script_reports_a_misspelt_key_as_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["cone.py", "experiment=twemoji_gap", "data.batchsize=8", "--out", str(tmp_path / "cone")])
    with pytest.raises(SystemExit) as stopped:
        cone.main()
    error = capsys.readouterr().err
    assert stopped.value.code == 2 and error.startswith("cone.py: error: ") and "data.batchsize" in error
    assert "Traceback" not in error and not (tmp_path / "cone").exists()


def test_memegap_search_finds_pictograms_by_words_and_keeps_its_index(mini_run, shared_data, tmp_path, capsys, caplog):
    pictograms = shared_data / "pictograms_jocomunico"
    page = tmp_path / "dog.html"
    search_main(["--run", str(mini_run), "--images", str(pictograms), "--k", "4", "--html", str(page), "a dog"])
    lines = capsys.readouterr().out.splitlines()
    hits = [line.split() for line in lines if line.strip()[:1].isdigit()]
    assert len(hits) == 4 and all(Path(hit[2]).is_file() for hit in hits)
    scores = [float(hit[1]) for hit in hits]
    assert scores == sorted(scores, reverse=True)
    assert page.read_text().count("<img src=\"data:image/png;base64,") == 4
    (index_dir,) = (mini_run / "search").glob("*/index.faiss")
    built = index_dir.stat().st_mtime_ns
    with caplog.at_level("INFO", logger="memegap.studies.modality_gap.search"):
        search_main(["--run", str(mini_run), "--images", str(pictograms), "--k", "4", "Un perro, ¿grande?"])
    assert index_dir.stat().st_mtime_ns == built and "reusing the image index" in caplog.text
    assert (mini_run / "search" / "un_perro_grande.html").is_file()  # the default page is named by the query's words, as --help says
    capsys.readouterr()
    words = tmp_path / "words.txt"
    words.write_text("A picture of dog\nA picture of cat\nA picture of house\n")
    search_main(["--run", str(mini_run), "--image", hits[0][2], "--texts", str(words), "--k", "3"])
    nearest = [line.split(None, 2) for line in capsys.readouterr().out.splitlines() if line.strip()[:1].isdigit()]
    assert sorted(text for _, _, text in nearest) == ["A picture of cat", "A picture of dog", "A picture of house"]


def write_job(grid: Path, number: int, source: str, setting: str, seed: int, r1: float, gap: float, newer: dict | None = None) -> None:
    job = grid / str(number)
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(f"- gap_data={source}\n- model/loss={setting}\n- seed={seed}\n")
    stage = {"test/geometry/gap": gap, "test/geometry/alignment": 1.5, "test/geometry/uniformity": -3.0,
             "test/retrieval/text_to_image_R@1_pool90": r1, "test/retrieval/text_to_image_R@5_pool90": 0.9,
             "test/retrieval/text_to_image_R@10_pool90": 1.0, "test/retrieval/text_to_image_R@1_batch90": 0.0}
    stage |= {f"test/{key}": value for key, value in (newer or {}).items()}
    before = {**stage, "test/retrieval/text_to_image_R@1_pool90": 0.01, "test/geometry/gap": 1.0}
    (job / "metrics.json").write_text(json.dumps({"before_fit": before, "test": stage}))
    (job / "geometry").mkdir()
    (job / "geometry" / "val_evolution.png").write_bytes(b"png")


def test_the_study_table_has_mean_and_spread_over_seeds_and_the_thesis_beside(tmp_path):
    grid = tmp_path / "grid"
    write_job(grid, 0, "arasaac_en", "ce", 1, 0.40, 0.30)
    write_job(grid, 1, "arasaac_en", "ce", 2, 0.50, 0.50)
    write_job(grid, 2, "arasaac_en", "ce_antipodal", 1, 0.45, 0.20)
    write_job(grid, 3, "arasaac_en", "ce_antipodal", 2, 0.52, 0.20)
    write_job(grid, 4, "arasaac_en", "ce_variance", 3, 0.60, 0.20)  # no CE run of seed 3 to pair it with
    write_job(grid, 5, "coco", "ce", 1, 0.10, 0.60, newer={"geometry/rmg": 0.25, "geometry/l2i": 1.0, "geometry/effective_rank_joint": 90.0, "zero_shot/acc1": 0.2})
    write_job(grid, 6, "coco", "ce", 2, 0.20, 0.60, newer={"geometry/rmg": 0.35, "geometry/l2i": 1.2, "geometry/effective_rank_joint": 100.0, "zero_shot/acc1": 0.3})
    (grid / "5" / "zeroshot").mkdir()  # memegap-zeroshot's records on one of the two jobs: its linear probe
    (grid / "5" / "zeroshot" / "coco.json").write_text(json.dumps([
        {"task": "zeroshot_classification", "split": "test", "metrics": {"acc1": 0.9}},
        {"task": "linear_probe", "split": "test", "metrics": {"acc1": 0.5, "mean_per_class_recall": 0.4}}]))
    text = tables.markdown(tables.collect([grid]), tmp_path / "tables.md")
    rows = {line.split(" | ")[0].strip("| "): line for line in text.split("### coco")[0].splitlines() if line.startswith("| ")}
    assert "| 2 | 0.40 ± 0.10 | 1.50 ± 0.00 | -3.00 ± 0.00 | 45.00 ± 5.00 |" in rows["ce"]  # R@k in %, over 2 seeds
    assert "0.68 / 1.42 / -2.75 / 82.2 / 95.4 / 97.4" in rows["ce"]  # the thesis's Table 5.6 row
    assert "| 48.50 ± 3.50 | 90.00 ± 0.00 | 100.00 ± 0.00 | +3.50 ± 1.50 |" in rows["ce_antipodal"]  # 45 − 40 and 52 − 50, paired by seed
    assert "| 100.00 | – |" in rows["ce_variance"] and "| 100.00 ± 0.00 | – | 0.68 /" in rows["ce"]
    assert rows["initial"].startswith("| initial | 3 | 1.00 ± 0.00") and "55.8" in rows["initial"]  # once per seed
    assert "[seed 1](grid/0/geometry/val_evolution.png)" in rows["ce"]
    copied = tables.markdown(tables.collect([grid]), tmp_path / "tables.md", tmp_path / "pictures")
    assert "[seed 1](pictures/arasaac_en_ce_seed1.png)" in copied and (tmp_path / "pictures" / "arasaac_en_ce_seed1.png").exists()
    assert "| ce_ortho_intra | 0 | – |" in rows["ce_ortho_intra"]  # the thesis ran it; we did not here
    # the newer measures: a second table where runs logged them (coco), none for runs from before them (arasaac_en)
    assert "arasaac_en, the newer measures" not in text
    assert "| ce | 2 | 0.30 ± 0.05 | 1.10 ± 0.10 | – | – | – | 95.00 ± 5.00 | 25.00 ± 5.00 | – | 50.00 | 40.00 |" in text.split("coco, the newer measures")[1]


def test_the_table_writer_names_a_wrong_grid_and_keeps_the_previous_table(tmp_path, monkeypatch, capsys):
    out = tmp_path / "tables.md"
    out.write_text("previous table")
    write_job(tmp_path / "grid", 0, "arasaac_en", "ce", 1, 0.40, 0.30)
    (tmp_path / "grid" / "1").mkdir()
    (tmp_path / "grid" / "1" / "metrics.json").write_text('{"test": {')  # a job cut off while writing
    (tmp_path / "empty").mkdir()
    other = tmp_path / "twemoji_multirun"  # an en/es multirun of twemoji_gap: it was labelled twemoji_en twice, "seed ?"
    write_job(other, 0, "arasaac_en", "ce", 1, 0.40, 0.30)
    (other / "0" / ".hydra" / "overrides.yaml").write_text("- experiment=twemoji_gap\n- data.language=en\n")
    for grid, message in [(tmp_path / "no_such_grid", "is not a directory"), (tmp_path / "empty", "no finished job"),
                          (tmp_path / "grid", "1/metrics.json is not valid JSON"),
                          (other, "is not a job of experiment=modality_gap_study: its overrides name no gap_data / model/loss / seed")]:
        monkeypatch.setattr(sys, "argv", ["tables.py", str(grid), "--out", str(out)])
        with pytest.raises(SystemExit) as stopped:
            tables.main()
        assert stopped.value.code == 2 and message in capsys.readouterr().err
        assert out.read_text() == "previous table"


@pytest.mark.slow
def test_the_study_multirun_and_its_tables(tmp_path):
    import subprocess

    mini = ["data.max_per_split=16", "data.image_size=32", "data.batch_size=8", "trainer.max_epochs=1", "extras.print_config=false",
            "callbacks.cross_modal_retrieval.pool_size=8", "logger=csv"]
    result = subprocess.run([sys.executable, "-m", "memegap.train", "-m", "experiment=modality_gap_study", "gap_data=twemoji_en",
                             "model/loss=ce,ce_antipodal", "seed=1", *mini], capture_output=True, text=True, timeout=600,
                            env={**__import__("os").environ, "WANDB_MODE": "offline", "MEMEGAP_ROOT": str(tmp_path)}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    (grid,) = (tmp_path / "logs" / "modality_gap_study" / "multiruns").iterdir()
    text = tables.markdown(tables.collect([grid]), tmp_path / "tables.md")
    assert "### twemoji_en" in text and "| ce | 1 |" in text and "| ce_antipodal | 1 |" in text and "| initial | 1 |" in text  # one seed: the initial row counts each seed once


# The row names of the thesis's Tables 5.6 and 5.7 (LaTeX as converted from its PDF) and our settings.
THESIS_ROWS = {
    "Inicial": "initial", r"$\mathcal{L}_{CE}$": "ce", r"$\mathcal{L}_{CE} + \mathcal{L}_{o_{intra}}$": "ce_ortho_intra",
    r"$\mathcal{L}_{CE} + \mathcal{L}_{o_{intra}} + \mathcal{L}_{o_{inter}}$": "ce_ortho_intra_inter",
    r"$\mathcal{L}_{CE} + \mathcal{L}_\sigma$": "ce_variance", r"$\mathcal{L}_{CE} + \mathcal{L}_{\sigma}$": "ce_variance",
    r"$\mathcal{L}_{CE} + \mathcal{L}_{o_{intra}}^*$": "ce_antipodal",
    r"$\mathcal{L}_{CE} + \mathcal{L}_{o_{intra}}^* + \mathcal{L}_\sigma$": "ce_antipodal_variance",
    r"$\mathcal{L}_{CE} + \mathcal{L}_{o_{intra}}^* + \mathcal{L}_{\sigma}$": "ce_antipodal_variance",
}


def thesis_table(text: str, caption: str) -> dict[str, tuple[float, ...]]:
    """The rows of the tab-separated table printed just before `caption` in the thesis's text."""
    lines = text[: text.index(caption)].rstrip().splitlines()
    rows = {}
    for line in reversed(lines):
        cells = line.split("\t")
        if cells[0] not in THESIS_ROWS:
            break
        rows[THESIS_ROWS[cells[0]]] = tuple(float(cell.replace("<b>", "").replace("</b>", "")) for cell in cells[1:])
    return rows


def test_the_thesis_values_beside_our_tables_are_the_documents_own(shared_seeds):
    text = (shared_seeds / "002_bb2f5016c51b7638.txt").read_text(encoding="utf-8")
    thesis = tables.THESIS
    for source, caption in (("arasaac_en", "Tabla 5.6: Resultados"), ("arasaac_es", "Tabla 5.7: Resultados")):
        printed = thesis_table(text, caption)
        assert len(printed) == 7 and printed == thesis[source], source
