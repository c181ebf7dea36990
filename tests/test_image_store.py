"""The packed image store: bad files counted and recorded, reuse, rebuild on change, a killed build."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from memegap.data.image_store import COMPLETE, ChunkReader, ImageStore, _LitdataReader, decode_rgb
from memegap.testing.faulty_images import good_png


def image_folder(folder: Path, good: int) -> list[tuple[str, Path]]:
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for k in range(good):
        (folder / f"good{k}.png").write_bytes(good_png(k, size=40))
        files.append((f"good{k}", folder / f"good{k}.png"))
    return files


def test_bad_files_are_skipped_counted_and_recorded_with_their_reason(tmp_path):
    files = image_folder(tmp_path / "images", good=3)
    (tmp_path / "images" / "corrupt.png").write_bytes(os.urandom(300))
    (tmp_path / "images" / "truncated.png").write_bytes(good_png(7, size=40)[:60])
    (tmp_path / "images" / "notes.png").write_text("not an image at all")
    bad = [("corrupt", tmp_path / "images" / "corrupt.png"), ("truncated", tmp_path / "images" / "truncated.png"),
           ("text", tmp_path / "images" / "notes.png"), ("missing", tmp_path / "images" / "gone.png")]
    store = ImageStore(tmp_path / "store", "mixed", 16).ensure(files[:2] + bad + files[2:])
    rows = store.rows()
    assert [row["key"] for row in rows] == ["good0", "good1", "corrupt", "truncated", "text", "missing", "good2"]
    assert [row["status"] for row in rows] == ["ok", "ok", "skipped", "skipped", "skipped", "skipped", "ok"]
    assert store.skipped == 4 and all(row["reason"] for row in rows if row["status"] == "skipped")
    assert "FileNotFoundError" in rows[5]["reason"]
    images = store.view(["good0", "good2"])[:]
    assert images.shape == (2, 3, 16, 16) and images.dtype == torch.uint8
    expected = np.stack([decode_rgb(files[0][1], 16), decode_rgb(files[2][1], 16)])
    assert torch.equal(images, torch.from_numpy(expected).permute(0, 3, 1, 2))


def test_a_view_reads_the_rows_it_is_asked_for_and_pickles_without_its_reader(tmp_path):
    files = image_folder(tmp_path / "images", good=5)
    store = ImageStore(tmp_path / "store", "v", 8).ensure(files)
    expected = torch.from_numpy(np.stack([decode_rgb(path, 8) for _, path in files])).permute(0, 3, 1, 2)
    view = store.view(["good4", "good1", "good3"])
    assert len(view) == 3 and torch.equal(view[0], expected[4]) and torch.equal(view[np.int64(2)], expected[3])
    assert torch.equal(view[1:], expected[[1, 3]]) and torch.equal(view[[2, 0]], expected[[3, 4]])
    assert torch.equal(torch.stack(list(view)), expected[[4, 1, 3]])
    subset = view.subset([2, 1])
    assert torch.equal(subset[:], expected[[3, 1]])
    assert view._reader is not None and pickle.loads(pickle.dumps(view))._reader is None  # each loader worker opens its own
    assert torch.equal(pickle.loads(pickle.dumps(view))[0], expected[4])


def test_the_chunk_reader_reads_what_litdata_reads(tmp_path):
    """Our direct reader of the chunk files (os.pread, memory flat in N) against litdata's own, on a store
    of several chunks with a skipped file among them."""
    files = image_folder(tmp_path / "images", good=40) + [("missing", tmp_path / "images" / "gone.png")]
    store = ImageStore(tmp_path / "store", "c", 24, chunk_bytes="20KB").ensure(files)  # 1,728 bytes an image: several chunks
    reader, litdata_reader = ChunkReader.of(store.dir, 24), _LitdataReader(str(store.dir))
    assert reader is not None and len(reader.files) > 3
    for row in range(len(files)):
        assert np.array_equal(reader.image(row), litdata_reader.image(row)), row
    assert ChunkReader.of(tmp_path / "nowhere", 24) is None  # not a local store: litdata reads it


def test_a_complete_store_is_reused_and_a_changed_input_rebuilds_it(tmp_path):
    files = image_folder(tmp_path / "images", good=4)
    store = ImageStore(tmp_path / "store", "s", 8).ensure(files)
    marker = (store.dir / COMPLETE).stat().st_mtime_ns
    ImageStore(tmp_path / "store", "s", 8).ensure(files)
    assert (store.dir / COMPLETE).stat().st_mtime_ns == marker  # not rebuilt
    (tmp_path / "images" / "good1.png").write_bytes(good_png(99, size=40))
    rebuilt = ImageStore(tmp_path / "store", "s", 8).ensure(files)
    assert (rebuilt.dir / COMPLETE).stat().st_mtime_ns != marker
    assert torch.equal(rebuilt.view(["good1"])[0], torch.from_numpy(decode_rgb(files[1][1], 8)).permute(2, 0, 1))
    assert ImageStore(tmp_path / "store", "s", 12).dir != store.dir  # one store per image size


BUILD = """
import sys
from pathlib import Path
from memegap.data.image_store import ImageStore
if __name__ == "__main__":
    folder = Path(sys.argv[1])
    files = [(p.stem, p) for p in sorted(folder.glob("*.png"))]
    ImageStore(sys.argv[2], "big", 64, chunk_bytes="64KB").ensure(files)
"""


def test_a_killed_build_is_never_taken_for_a_finished_store(tmp_path):
    files = image_folder(tmp_path / "images", good=600)
    script = tmp_path / "build.py"
    script.write_text(BUILD)
    # its own process group, so the kill takes litdata's worker processes too (as a killed job's would)
    process = subprocess.Popen([sys.executable, str(script), str(tmp_path / "images"), str(tmp_path / "store")], start_new_session=True)
    store_dir = tmp_path / "store" / "big" / "64px"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not list(store_dir.parent.glob(".64px.building-*/chunk-*.bin")) and process.poll() is None:
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert not store_dir.exists(), "the kill must land before the build finished; a killed build leaves no store"
    (abandoned,) = store_dir.parent.glob(".64px.building-*")
    store = ImageStore(tmp_path / "store", "big", 64, chunk_bytes="64KB").ensure(sorted(files))
    assert not abandoned.exists()  # removed once its process was gone
    rows = store.rows()
    assert len(rows) == 600 and all(row["status"] == "ok" for row in rows)
    assert torch.equal(store.view(["good599"])[0], torch.from_numpy(decode_rgb(tmp_path / "images" / "good599.png", 64)).permute(2, 0, 1))


INTERRUPTED_BUILD = """
import sys
from pathlib import Path
from memegap.data.image_store import ImageStore
from memegap.errors import reported_as_one_line
if __name__ == "__main__":
    folder = Path(sys.argv[1])
    files = [(p.stem, p) for p in sorted(folder.glob("*.png"))]
    with reported_as_one_line("build"):
        ImageStore(sys.argv[2], "big", 64, chunk_bytes="64KB").ensure(files, workers=2)
    print("finished")
"""


def children_of(pid: int) -> set[int]:
    """The processes whose parent is `pid` (from /proc)."""
    found = set()
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            if f"PPid:\t{pid}\n" in status.read_text():
                found.add(int(status.parent.name))
        except OSError:
            pass
    return found


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads the process table from /proc")
def test_ctrl_c_while_packing_fails_and_stops_the_workers(tmp_path):
    """litdata's own SIGINT handler ended the process with os._exit(0): exit 0, nothing printed, and
    its workers kept packing for 20-30 s. Now: one line, exit status 130, no worker left, no store."""
    image_folder(tmp_path / "images", good=600)
    script = tmp_path / "build.py"
    script.write_text(INTERRUPTED_BUILD)
    process = subprocess.Popen([sys.executable, str(script), str(tmp_path / "images"), str(tmp_path / "store")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    store_dir = tmp_path / "store" / "big" / "64px"
    deadline, workers = time.monotonic() + 300, set()
    while time.monotonic() < deadline and process.poll() is None and not list(store_dir.parent.glob(".64px.building-*/chunk-*.bin")):
        workers |= children_of(process.pid)
        time.sleep(0.02)
    workers |= children_of(process.pid)
    process.send_signal(signal.SIGINT)  # to the main process only, as `kill -INT`: the workers must be stopped by it
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130 and "build: interrupted (Ctrl-C)" in err and "finished" not in out, (process.returncode, err[-2000:])
    assert workers, "the build must have started its worker processes"
    time.sleep(1)
    assert [pid for pid in workers if Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text()] == []
    assert not store_dir.exists()


def test_building_a_store_leaves_the_random_state_as_it_was(tmp_path):
    """The first run of an experiment builds the store; it must then train like every later run."""
    import random

    files = image_folder(tmp_path / "images", good=4)

    def draws():
        return random.random(), float(np.random.rand()), float(torch.rand(1))

    random.seed(0), np.random.seed(0), torch.manual_seed(0)
    expected = draws()
    random.seed(0), np.random.seed(0), torch.manual_seed(0)
    ImageStore(tmp_path / "store", "source", 16).ensure(files)
    assert draws() == expected


def test_a_plain_script_that_builds_a_store_at_its_top_level_finishes(tmp_path):
    """litdata's spawned workers used to re-run such a script, reach the store again and wait for ever on
    the lock their parent held (a 15-minute silent hang). Now they do not re-import it: the build ends."""
    files = image_folder(tmp_path / "images", good=12)
    script = tmp_path / "my_script.py"  # no `if __name__ == "__main__":`, as a user writes it
    script.write_text(
        "from pathlib import Path\n"
        "from memegap.data.image_store import ImageStore\n"
        f"files = [(p.stem, p) for p in sorted(Path({str(tmp_path / 'images')!r}).glob('*.png'))]\n"
        f"store = ImageStore({str(tmp_path / 'store')!r}, 'script', 16).ensure(files, workers=2)\n"
        "print('built', len(store.rows()), 'rows')\n"
    )
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=180, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.count("built") == 1 and f"built {len(files)} rows" in result.stdout  # the script ran once, not once a worker
