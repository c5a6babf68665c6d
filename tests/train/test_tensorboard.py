"""log.tensorboard: true writes event files beside metrics.jsonl that hold the same scalars."""

import io
import json

import pytest
from rich.console import Console
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from groupwise.train.loop import training_loop


def test_tensorboard_event_files_hold_the_step_scalars(tiny_config, tmp_path):
    run = tmp_path / "run"
    training_loop(tiny_config("log.tensorboard=true", "train.steps=2"), run, console=Console(file=io.StringIO()))
    events = list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert events and (run / "metrics.jsonl").is_file()
    acc = EventAccumulator(str(run / "tensorboard"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"reward/mean", "learnable_fraction", "kl", "entropy", "completion_len/mean", "loss"} <= tags
    logged = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    scalars = acc.Scalars("learnable_fraction")
    assert [s.step for s in scalars] == [1, 2]
    assert [s.value for s in scalars] == pytest.approx([m["learnable_fraction"] for m in logged])
    assert acc.Scalars("entropy")[-1].value == pytest.approx(logged[-1]["entropy"], rel=1e-6)  # float32
