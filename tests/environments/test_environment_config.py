"""The `environment` section: a built-in name or your class's path (relative to the config file), one of them;
an environment may be the only reward; groupwise.train(environment=...) takes a class, a name or a path."""

from __future__ import annotations

import pytest

from groupwise.api.inputs import environment_overrides
from groupwise.config.load import build_config
from groupwise.environments.registry import configured_environment, environment_class
from groupwise.errors import GroupwiseError

ENVIRONMENT = '''
class Echo:
    def reset(self, **row):
        return None

    def step(self, completion):
        return None, 1.0, True
'''


def test_a_relative_environment_path_starts_at_the_config_file_s_folder(tmp_path, monkeypatch):
    (tmp_path / "envs").mkdir()
    (tmp_path / "envs" / "echo.py").write_text(ENVIRONMENT)
    (tmp_path / "job.yaml").write_text("environment: {path: envs/echo.py:Echo, max_turns: 2}\n"
                                       "rewards: {functions: []}\n")
    monkeypatch.chdir("/")
    cfg = build_config(tmp_path / "job.yaml")
    assert cfg.environment.path == f"{tmp_path}/envs/echo.py:Echo"
    assert environment_class(cfg.environment).__name__ == "Echo"
    spec = configured_environment(cfg)
    assert spec.step_style and spec.max_turns == 2 and spec.factory().step("x") == (None, 1.0, True)


def test_one_source_a_class_with_reset_and_a_chat_template():
    with pytest.raises(GroupwiseError, match="give a built-in `name` or your class's `path`, not both"):
        build_config(None, ["environment.name=python_tool", "environment.path=x.py:Y"])
    with pytest.raises(GroupwiseError, match="rewards.functions is empty"):
        build_config(None, ["rewards.functions=[]"])
    cfg = build_config(None, ["environment.path=groupwise.errors:GroupwiseError"])
    with pytest.raises(GroupwiseError) as raised:
        configured_environment(cfg)
    assert raised.value.problem == ("environment.path groupwise.errors:GroupwiseError is not a class with a reset "
                                    "method")
    with pytest.raises(GroupwiseError, match="data.chat_template is false"):
        configured_environment(build_config(None, ["environment.name=python_tool", "data.chat_template=false"]))


def test_the_python_api_takes_a_class_a_name_or_a_path():
    class Local:
        def reset(self, **row):
            return None

    overrides = environment_overrides(Local)
    reference = "test_environment_config:test_the_python_api_takes_a_class_a_name_or_a_path.<locals>.Local"
    assert overrides == [f'environment.path="{reference}"', "environment.name=null"]
    assert environment_class(build_config(None, overrides).environment) is Local  # no import reaches it
    assert environment_overrides("python_tool") == ['environment.name="python_tool"', "environment.path=null"]
    assert environment_overrides("envs/echo.py:Echo")[0] == 'environment.path="envs/echo.py:Echo"'
    with pytest.raises(GroupwiseError) as raised:
        environment_overrides(Local())
    assert raised.value.problem == "environment= is a Local"


def test_the_python_tool_experiment_meets_the_issue_budget():
    from pathlib import Path

    from groupwise.compare.spec import cell_config, load_experiment

    experiment = load_experiment(Path(__file__).parents[2] / "examples" / "experiments" / "python_tool.yaml")
    assert len(experiment.seeds) >= 3 and experiment.eval.problems >= 100
    cfg = cell_config(experiment, experiment.variants[0], 0, threads=1)
    assert cfg.environment.name == "python_tool" and cfg.data.heldout_size >= 100
    bonus = cfg.rewards.functions[1].name  # the format reward file, found beside the experiment
    assert bonus.endswith("examples/experiments/python_tool_rewards.py:python_ran") and Path(bonus[:-11]).is_file()
