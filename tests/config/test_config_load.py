import pytest

from groupwise.config.load import build_config
from groupwise.errors import GroupwiseError


def test_embedded_default_is_the_grpo_arithmetic_job():
    cfg = build_config()
    assert cfg.model.name == "smollm2-135m"
    assert cfg.data.task == "arithmetic"
    assert cfg.algorithm.preset == "grpo" and cfg.algorithm.beta == 0.04 and cfg.algorithm.scale == "group"
    assert cfg.eval.before_after and cfg.eval.num_problems >= 200


def test_set_overrides_parse_yaml_values():
    cfg = build_config(None, ["train.steps=7", "lora.enabled=false", "lora.target_modules=[q_proj, v_proj]"])
    assert cfg.train.steps == 7 and cfg.lora.enabled is False and cfg.lora.target_modules == ["q_proj", "v_proj"]


def test_preset_fills_knobs_and_explicit_keys_win(tmp_path):
    cfg = build_config(None, ["algorithm.preset=dapo"])
    assert (cfg.algorithm.eps_high, cfg.algorithm.beta, cfg.algorithm.agg) == (0.28, 0.0, "token-mean")
    assert cfg.algorithm.dynamic_sampling and cfg.algorithm.overlong_filter
    file = tmp_path / "c.yaml"
    file.write_text("algorithm:\n  preset: dapo\n  beta: 0.01\n")
    assert build_config(file).algorithm.beta == 0.01
    assert build_config(file, ["algorithm.eps_high=0.3"]).algorithm.eps_high == 0.3


@pytest.mark.parametrize("overrides, message", [
    (["train.nope=1"], "unknown config key 'train.nope'"),
    (["rollout.group_size=1"], "rollout.group_size"),
    (["train.steps=many"], "train.steps"),
    (["algorithm.mini_batches=3"], "mini_batches (3) must divide the 64 completions"),
    (["algorithm.preset=ppo"], "unknown algorithm.preset 'ppo'"),
    (["trainsteps=3"], "not of the form section.key=value"),
    (["algorithm.loss=dpo"], "algorithm.loss"),
])
def test_bad_config_is_one_clear_error(overrides, message):
    with pytest.raises(GroupwiseError) as err:
        build_config(None, overrides)
    assert message in str(err.value)
    assert "\n" not in str(err.value) and " -- " in str(err.value)


def test_the_overlong_cache_is_checked_against_the_budget_the_penalty_measures():
    """DAPO's soft punishment counts a turn's tokens, or an episode's with an environment (rewards/rollout_scores)."""
    dapo = ["algorithm.preset=dapo", "rollout.max_new_tokens=32"]
    with pytest.raises(GroupwiseError, match="overlong_cache 32 must be smaller than rollout.max_new_tokens 32"):
        build_config(None, [*dapo, "algorithm.overlong_cache=32"])
    episodes = [*dapo, "environment.name=python_tool", "rollout.max_episode_tokens=96"]
    assert build_config(None, [*episodes, "algorithm.overlong_cache=48"]).algorithm.overlong_cache == 48
    with pytest.raises(GroupwiseError, match="overlong_cache 96 must be smaller than rollout.max_episode_tokens 96"):
        build_config(None, [*episodes, "algorithm.overlong_cache=96"])


def test_bad_yaml_file_names_the_line(tmp_path):
    file = tmp_path / "bad.yaml"
    file.write_text("train:\n  steps: [1, 2\n")
    with pytest.raises(GroupwiseError, match="not valid YAML at line"):
        build_config(file)
    with pytest.raises(GroupwiseError, match="does not exist"):
        build_config(tmp_path / "missing.yaml")


def test_configuration_doc_matches_the_field_descriptions():
    from pathlib import Path

    from groupwise.config.reference import reference_markdown

    doc = (Path(__file__).parents[2] / "docs" / "configuration.md").read_text()
    assert reference_markdown() in doc, "regenerate docs/configuration.md with `groupwise config --reference`"


def test_another_task_does_not_inherit_the_default_jobs_task_params():
    assert build_config(None, ["data.task=rust-functions"]).data.task_params == {}
    assert build_config(None, ["data.task=arithmetic"]).data.task_params["max_operand"] == 20
    kept = build_config(None, ["data.task=countdown", "data.task_params={num_numbers: 4}"])
    assert kept.data.task_params == {"num_numbers": 4}
