"""An image store copied to object storage is read by URL (data.store_dir=s3://bucket/prefix): against
moto's S3 server on 127.0.0.1 (the real S3 protocol over HTTP, no mock of our code), a store built
locally and uploaded feeds a training fast_dev_run, with the same images as the local store."""

from __future__ import annotations

import socket
from pathlib import Path

import boto3
import pytest
import torch
from moto.server import ThreadedMotoServer

from memegap.data.image_store import ImageStore
from memegap.data.twemoji import TwemojiDataModule
from memegap.errors import UserError
from memegap.train import train
from tests.conftest import compose_config


@pytest.fixture
def s3_server(monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    for name, value in {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "testing",
                        "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    client = boto3.client("s3")
    client.create_bucket(Bucket="stores")
    yield client
    server.stop()


def upload(client, folder: Path, bucket: str, prefix: str) -> int:
    files = [path for path in folder.rglob("*") if path.is_file()]
    for path in files:
        client.upload_file(str(path), bucket, f"{prefix}/{path.relative_to(folder).as_posix()}")
    return len(files)


@pytest.mark.slow  # a training run: make test stays under 5 minutes (tests/README.md)
def test_a_store_on_s3_streams_through_a_training_run(s3_server, tmp_path, monkeypatch):
    local = tmp_path / "store"
    overrides = ["experiment=twemoji_gap", "data.image_size=32", "data.max_per_split=16", "data.batch_size=8", "+trainer.fast_dev_run=true",
                 "logger=none", "test_before_fit=false", "callbacks.cross_modal_retrieval.pool_size=8", "extras.print_config=false"]
    built = TwemojiDataModule(image_size=32, max_per_split=16, store_dir=str(local))
    built.setup()
    assert upload(s3_server, local, "stores", "memegap") >= 4  # chunks, index.json, rows.parquet, COMPLETE
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # litdata's chunk cache for the remote store, away from the user's
    streamed = TwemojiDataModule(image_size=32, max_per_split=16, store_dir="s3://stores/memegap")
    streamed.setup()
    for split in ("train", "test"):
        assert torch.equal(streamed.datasets[split].images[:], built.datasets[split].images[:])
    cfg = compose_config("train.yaml", [*overrides, "data.store_dir=s3://stores/memegap", f"paths.data_dir={tmp_path / 'data'}"], tmp_path / "run")
    metrics = train(cfg)
    assert torch.isfinite(torch.tensor(metrics["test"]["test/loss"]))
    assert not (tmp_path / "data" / "store").exists()  # nothing was built locally: the run read the bucket


def test_an_incomplete_store_on_s3_is_refused_in_one_line(s3_server):
    s3_server.put_object(Bucket="stores", Key="half/twemoji/32px/index.json", Body=b"{}")  # no COMPLETE marker
    with pytest.raises(UserError, match=r"^s3://stores/half/twemoji/32px: no complete image store there"):
        ImageStore("s3://stores/half", "twemoji", 32).ensure([])
