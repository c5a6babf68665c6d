"""log.report_to: wandb and MLflow get each step's scalars; a missing package is one clear error."""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

import pytest

from groupwise.errors import GroupwiseError
from groupwise.train.loop import training_loop
from groupwise.train.trackers import flat_params, scalars


def wandb_history(run_file: Path) -> tuple[dict, list[dict]]:
    """The run's config and its logged rows, read from W&B's offline `.wandb` file (a LevelDB-style log of
    protobuf records: a 7-byte header, then 32 KiB blocks of chunks with a 7-byte header each)."""
    from wandb.proto import wandb_internal_pb2 as pb

    raw, pos, chunks, records = run_file.read_bytes(), 7, b"", []
    while pos + 7 <= len(raw):
        left = 32768 - pos % 32768
        _, length, kind = struct.unpack("<IHB", raw[pos:pos + 7])
        if left < 7 or (kind == 0 and length == 0):  # block trailer or padding
            pos += left
            continue
        chunks, pos = chunks + raw[pos + 7:pos + 7 + length], pos + 7 + length
        if kind in (1, 4):  # a full record, or the last chunk of one
            records.append(pb.Record.FromString(chunks))
            chunks = b""
    runs = [r for r in records if r.WhichOneof("record_type") == "run"]
    config = {i.key or "/".join(i.nested_key): json.loads(i.value_json) for r in runs for i in r.run.config.update}
    rows = [{i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item} for r in records
            if r.WhichOneof("record_type") == "history"]
    return config, rows


def test_wandb_offline_run_records_every_step(tiny_config, tmp_path, monkeypatch, one_thread):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")  # W&B's own switch: no network, a local run folder
    monkeypatch.setenv("WANDB_SILENT", "true")
    training_loop(tiny_config("log.report_to=[wandb]", "log.project=demo"), tmp_path / "run")
    (run_file,) = (tmp_path / "run" / "wandb").glob("offline-run-*/run-*.wandb")
    config, logged = wandb_history(run_file)
    train_section = config["train"]
    assert train_section.get("value", train_section)["steps"] == 2  # W&B wraps values as {"value": v} in places
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["_step"] for r in logged] == [r["step"] for r in rows]
    for got, row in zip(logged, rows, strict=True):
        assert got["loss"] == pytest.approx(row["loss"]) and got["reward/mean"] == pytest.approx(row["reward/mean"])


def test_missing_tracker_package_names_the_extra(tiny_config, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow raises ImportError
    with pytest.raises(GroupwiseError, match=r"names mlflow but its package is not installed.*groupwise\[mlflow\]"):
        training_loop(tiny_config("log.report_to=[mlflow]"), tmp_path / "run")


def test_mlflow_local_file_store(tiny_config, tmp_path, monkeypatch, one_thread):
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps the file store behind this switch
    store = (tmp_path / "mlruns").as_uri()
    cfg = tiny_config("log.report_to=[mlflow, tensorboard]", "log.project=groupwise-test", f"log.tracking_uri={store}")
    training_loop(cfg, tmp_path / "run")
    client = mlflow.MlflowClient(store)
    experiment = client.get_experiment_by_name("groupwise-test")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED" and run.data.params["train.steps"] == "2"
    history = client.get_metric_history(run.info.run_id, "loss")
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [(m.step, m.value) for m in history] == [(r["step"], pytest.approx(r["loss"])) for r in rows]
    assert (tmp_path / "run" / "tensorboard").is_dir()
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE")
    with pytest.raises(GroupwiseError, match="MLflow cannot start a run at file:.*set log.tracking_uri"):
        training_loop(cfg.override([f"log.tracking_uri={(tmp_path / 'other').as_uri()}"]), tmp_path / "refused")


def test_flat_params_and_scalars():
    assert flat_params({"a": {"b": 1, "c": {"d": None}}, "e": [1, 2], "f": {}}) == {
        "a.b": "1", "a.c.d": "None", "e": "[1, 2]", "f": "{}"}
    assert scalars({"x": 1, "y": float("nan"), "z": "text", "w": True, "v": 2.5}) == {"x": 1.0, "v": 2.5}
