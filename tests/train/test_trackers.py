"""log.report_to: wandb and MLflow get each step's scalars; a missing package is one clear error."""

from __future__ import annotations

import json
import sys
import types

import pytest

from groupwise.errors import GroupwiseError
from groupwise.train.loop import train
from groupwise.train.trackers import flat_params, scalars


class FakeWandbRun:
    def __init__(self, calls: list) -> None:
        self.calls = calls

    def log(self, data, step):
        self.calls.append(("log", step, dict(data)))

    def finish(self):
        self.calls.append(("finish",))


def test_wandb_gets_every_step(tiny_config, tmp_path, monkeypatch, one_thread):
    calls: list = []
    fake = types.ModuleType("wandb")

    def init(**kwargs):
        calls.append(("init", kwargs))
        return FakeWandbRun(calls)

    fake.init = init
    monkeypatch.setitem(sys.modules, "wandb", fake)
    cfg = tiny_config("log.report_to=[wandb]", "log.project=demo")
    train(cfg, tmp_path / "run")
    assert [c[0] for c in calls] == ["init", "log", "log", "finish"]
    init_kwargs = calls[0][1]
    assert init_kwargs["project"] == "demo" and init_kwargs["name"] == "run"
    assert init_kwargs["config"]["train"]["steps"] == 2
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    for (_, step, data), row in zip(calls[1:3], rows, strict=True):
        assert step == row["step"] and data["loss"] == row["loss"] and data["reward/mean"] == row["reward/mean"]


def test_missing_tracker_package_names_the_extra(tiny_config, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow raises ImportError
    with pytest.raises(GroupwiseError, match=r"names mlflow but its package is not installed.*groupwise\[mlflow\]"):
        train(tiny_config("log.report_to=[mlflow]"), tmp_path / "run")


def test_mlflow_local_file_store(tiny_config, tmp_path, monkeypatch, one_thread):
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps the file store behind this switch
    store = (tmp_path / "mlruns").as_uri()
    cfg = tiny_config("log.report_to=[mlflow, tensorboard]", "log.project=groupwise-test", f"log.tracking_uri={store}")
    train(cfg, tmp_path / "run")
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
        train(cfg.override([f"log.tracking_uri={(tmp_path / 'other').as_uri()}"]), tmp_path / "refused")


def test_flat_params_and_scalars():
    assert flat_params({"a": {"b": 1, "c": {"d": None}}, "e": [1, 2], "f": {}}) == {
        "a.b": "1", "a.c.d": "None", "e": "[1, 2]", "f": "{}"}
    assert scalars({"x": 1, "y": float("nan"), "z": "text", "w": True, "v": 2.5}) == {"x": 1.0, "v": 2.5}
