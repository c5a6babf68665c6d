"""Issue 12: a config file starts from the schema defaults, the resolved config says what runs, paths are
stored absolute, and the micro-batch size adapts to small batches."""

from __future__ import annotations

import pytest

from groupwise.config.load import build_config, dump_config, embedded_default_path
from groupwise.config.paths import looks_local_model
from groupwise.config.schema import Config, effective_micro_batch
from groupwise.errors import GroupwiseError
from groupwise.rewards.compute import with_named_rewards


def write(path, text: str):
    path.write_text(text)
    return path


def test_a_config_file_starts_from_the_schema_defaults_not_the_default_job(tmp_path):
    cfg = build_config(write(tmp_path / "c.yaml", "data:\n  path: rows.jsonl\n"))
    assert cfg.rollout.max_new_tokens == 32 and cfg.train.learning_rate == 5e-5 and cfg.train.steps == 20
    assert cfg.eval.before_after is False and cfg.eval.samples == 4
    assert cfg.data.task is None and cfg.data.task_params == {}


def test_the_default_job_is_an_ordinary_config_file_and_unchanged():
    assert build_config(embedded_default_path()) == build_config(None) == build_config()
    cfg = build_config()  # README's first command and its figures
    assert (cfg.rollout.max_new_tokens, cfg.train.learning_rate, cfg.train.steps) == (24, 1e-4, 50)
    assert cfg.eval.before_after and cfg.eval.num_problems == 200 and cfg.eval.samples == 0
    assert cfg.data.task_params == {"max_operand": 20, "operators": "+", "heldout_share": 0.5}
    assert cfg.train.micro_batch_size == 16 and cfg.notes == []


def test_set_task_drops_the_files_task_params_unless_given(tmp_path):
    file = write(tmp_path / "c.yaml", "data:\n  task: countdown\n  task_params: {num_numbers: 4}\n")
    assert build_config(file).data.task_params == {"num_numbers": 4}
    assert build_config(file, ["data.task=arithmetic"]).data.task_params == {}
    assert build_config(file, ["data.task=countdown"]).data.task_params == {"num_numbers": 4}


def test_a_data_path_drops_the_task_and_its_params():
    cfg = build_config(None, ["data.path=rows.jsonl"])  # on the default job, whose task is arithmetic
    assert cfg.data.task is None and cfg.data.task_params == {}


@pytest.mark.parametrize("overrides, rewards", [
    ([], ["answer_match"]),
    (["data.path=rows.jsonl"], ["answer_match"]),
    (["data.task=countdown"], ["countdown_verify"]),
    (["rewards.functions=[{name: format_regex, params: {pattern: x}}]"], ["format_regex"]),
])
def test_the_resolved_config_names_the_rewards_that_run(overrides, rewards):
    cfg = build_config(None, overrides)
    shown = read_yaml_text(dump_config(with_named_rewards(cfg)))
    assert [f["name"] for f in shown["rewards"]["functions"]] == rewards


def read_yaml_text(text: str) -> dict:
    import yaml

    return yaml.safe_load(text)


def test_groupwise_config_prints_named_rewards_and_no_task_params_for_a_file(tmp_path):
    from typer.testing import CliRunner

    from groupwise.cli.main import app

    file = write(tmp_path / "c.yaml", "data:\n  path: rows.jsonl\n")
    result = CliRunner().invoke(app, ["config", str(file)])
    assert result.exit_code == 0, result.output
    shown = read_yaml_text(result.stdout)
    assert shown["rewards"]["functions"] == [{"name": "answer_match", "weight": 1.0, "params": {}}]
    assert shown["data"]["task"] is None and shown["data"]["task_params"] == {}


def test_relative_paths_are_stored_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models" / "mine").mkdir(parents=True)
    cfg = build_config(None, ["data.path=rows.jsonl", "data.heldout_path=sub/held.csv", "model.name=models/mine",
                              "rewards.functions=[{name: my_rewards.py:brevity}]", "model.cache_dir=cache"])
    assert cfg.data.path == str(tmp_path / "rows.jsonl")
    assert cfg.data.heldout_path == str(tmp_path / "sub" / "held.csv")
    assert cfg.model.name == str(tmp_path / "models" / "mine")
    assert cfg.model.cache_dir == str(tmp_path / "cache")
    assert cfg.rewards.functions[0].name == f"{tmp_path / 'my_rewards.py'}:brevity"
    saved = write(tmp_path / "config.yaml", dump_config(cfg))
    monkeypatch.chdir(tmp_path / "models")  # another directory: the saved config means the same files
    assert build_config(saved) == cfg


def test_hub_ids_built_in_names_and_hub_data_stay_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = build_config(None, ["model.name=HuggingFaceTB/SmolLM2-135M-Instruct", "data.path=hf:openai/gsm8k"])
    assert cfg.model.name == "HuggingFaceTB/SmolLM2-135M-Instruct" and cfg.data.path == "hf:openai/gsm8k"
    assert build_config(None, ["model.name=tiny-random"]).model.name == "tiny-random"


@pytest.mark.parametrize("name, local", [
    ("./model", True), ("../model", True), ("/abs/model", True), ("~/model", True), ("m.gguf", True),
    ("a/b/c", True), ("runs/missing/final", True), ("runs/x", True), ("org/model", False),
    ("smollm2-135m", False), ("tiny-random", False),
])
def test_what_counts_as_a_local_model_path(name, local, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    assert looks_local_model(name) is local


def test_a_missing_local_model_is_a_local_error_not_a_hub_call(tmp_path, monkeypatch):
    from groupwise.models.load import load_model_and_tokenizer

    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    cfg = build_config(None, ["model.name=runs/x"])  # one slash, like a hub id, but `runs` is a folder here
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    with pytest.raises(GroupwiseError, match=f"model path '{tmp_path}/runs/x' does not exist"):
        load_model_and_tokenizer(cfg.model.name)


@pytest.mark.parametrize("wanted, completions, effective", [
    (16, 8, 8), (16, 64, 16), (16, 24, 12), (7, 64, 4), (5, 6, 3), (1, 9, 1), (64, 64, 64),
])
def test_effective_micro_batch_is_the_largest_divisor_not_above_the_wish(wanted, completions, effective):
    assert effective_micro_batch(wanted, completions) == effective


def test_micro_batch_larger_than_the_batch_is_lowered_with_a_note_when_the_user_set_it(tmp_path):
    quiet = build_config(None, ["rollout.prompts_per_step=2", "rollout.group_size=4"])  # the default job's 16
    assert quiet.train.micro_batch_size == 8 and quiet.notes == []
    cfg = build_config(None, ["rollout.prompts_per_step=2", "rollout.group_size=4", "train.micro_batch_size=16"])
    assert cfg.train.micro_batch_size == 8
    assert cfg.notes == ["train.micro_batch_size 16 -> 8: the largest that divides the 8 completions per step"]
    file = write(tmp_path / "job.yaml", "rollout: {prompts_per_step: 2, group_size: 4}\n"
                                        "train: {micro_batch_size: 16}\n")
    assert build_config(file).notes == cfg.notes  # written in the user's own file
    assert build_config(write(tmp_path / "plain.yaml", "rollout: {prompts_per_step: 2}\n")).notes == []
    assert Config.model_validate(cfg.model_dump()).notes == []  # the saved value is already the effective one
    mini = build_config(None, ["algorithm.mini_batches=4"])  # 64 completions, 16 per mini-batch
    assert mini.train.micro_batch_size == 16 and mini.notes == []
    mini = build_config(None, ["algorithm.mini_batches=8", "train.micro_batch_size=16"])
    assert mini.train.micro_batch_size == 8 and "of a mini-batch" in mini.notes[0]


def test_train_prints_the_micro_batch_note_once(tmp_path):
    from typer.testing import CliRunner

    from groupwise.cli.main import app

    result = CliRunner().invoke(app, ["config", "--set", "rollout.prompts_per_step=3", "--set",
                                      "rollout.group_size=2", "--set", "train.micro_batch_size=16"])
    assert result.exit_code == 0
    assert result.stderr.count("note: train.micro_batch_size 16 -> 6") == 1
    assert "micro_batch_size: 6" in result.stdout
    unset = CliRunner().invoke(app, ["config", "--set", "rollout.prompts_per_step=3", "--set", "rollout.group_size=2"])
    assert unset.exit_code == 0 and unset.stderr == "" and "micro_batch_size: 6" in unset.stdout


def test_the_config_error_hint_points_at_the_reference():
    with pytest.raises(GroupwiseError) as err:
        build_config(None, ["rollout.group_size=1"])
    assert err.value.fix == "fix the config (every key is listed in docs/configuration.md, or run " \
                            "`groupwise config --reference`)"
