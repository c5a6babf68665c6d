"""Experiment trackers named in `log.report_to`, each through its own client (optional extras).

TensorBoard is written by MetricsLog itself. Weights & Biases follows its own environment (WANDB_MODE=offline
works without network); MLflow writes to `log.tracking_uri`, by default wherever MLflow's own settings point
(MLFLOW_TRACKING_URI).
"""

from __future__ import annotations

import importlib
import math
import re
import time
from pathlib import Path
from typing import Any, Protocol

from groupwise.errors import GroupwiseError

EXTRAS = {"wandb": "wandb", "mlflow": "mlflow"}  # tracker -> pip extra of groupwise


class Tracker(Protocol):
    def log(self, step: int, scalars: dict[str, float]) -> None: ...

    def close(self) -> None: ...


def _client(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError as err:
        raise GroupwiseError(f"log.report_to names {name} but its package is not installed",
                             f"pip install 'groupwise[{EXTRAS[name]}]', or drop {name} from log.report_to") from err


def flat_params(data: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested config sections as flat `section.key` -> text, as trackers record parameters."""
    out: dict[str, str] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out |= flat_params(value, f"{name}.")
        else:
            out[name] = str(value)
    return out


class WandbTracker:
    def __init__(self, project: str, run_dir: Path, config: dict[str, Any]) -> None:
        wandb = _client("wandb")
        self.run = wandb.init(project=project, name=run_dir.name, dir=str(run_dir), config=config)

    def log(self, step: int, scalars: dict[str, float]) -> None:
        self.run.log(scalars, step=step)

    def close(self) -> None:
        self.run.finish()


_MLFLOW_KEY = re.compile(r"[^\w\-./ ]")


class MlflowTracker:
    def __init__(self, experiment: str, run_dir: Path, config: dict[str, Any], uri: str | None) -> None:
        mlflow = _client("mlflow")
        from mlflow.entities import Metric, Param

        self._metric = Metric
        try:
            self.client = mlflow.MlflowClient(uri)
            found = self.client.get_experiment_by_name(experiment)
            experiment_id = found.experiment_id if found else self.client.create_experiment(experiment)
            self.run_id = self.client.create_run(experiment_id, run_name=run_dir.name).info.run_id
        except mlflow.exceptions.MlflowException as err:
            raise GroupwiseError(f"MLflow cannot start a run at {uri or 'its default tracking URI'}: "
                                 f"{str(err).splitlines()[0][:300]}",
                                 "set log.tracking_uri (an MLflow server, or a database URI such as "
                                 "sqlite:///mlflow.db) or MLFLOW_TRACKING_URI") from err
        params = [Param(k, v[:6000]) for k, v in flat_params(config).items()]
        for start in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
            self.client.log_batch(self.run_id, params=params[start:start + 100])

    def log(self, step: int, scalars: dict[str, float]) -> None:
        now = int(time.time() * 1000)
        metrics = [self._metric(_MLFLOW_KEY.sub("_", k), float(v), now, step) for k, v in scalars.items()]
        for start in range(0, len(metrics), 1000):
            self.client.log_batch(self.run_id, metrics=metrics[start:start + 1000])

    def close(self) -> None:
        self.client.set_terminated(self.run_id)


def open_trackers(cfg: Any, run_dir: Path) -> list[Tracker]:
    """One tracker per name in log.report_to besides tensorboard (which MetricsLog writes)."""
    config = cfg.model_dump(mode="json")
    trackers: list[Tracker] = []
    for name in dict.fromkeys(cfg.log.report_to):
        if name == "wandb":
            trackers.append(WandbTracker(cfg.log.project, run_dir, config))
        elif name == "mlflow":
            trackers.append(MlflowTracker(cfg.log.project, run_dir, config, cfg.log.tracking_uri))
    return trackers


def scalars(metrics: dict[str, Any]) -> dict[str, float]:
    """The finite numbers of a step's metrics."""
    return {k: float(v) for k, v in metrics.items()
            if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)}
