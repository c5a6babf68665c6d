"""Paths in a config file start at that file's folder; paths on the command line at the current directory; each
error names the key and the rule (issue 28). And unknown keys name the key meant, TRL's names included."""

from __future__ import annotations

from pathlib import Path

import pytest

from groupwise.compare.spec import base_config, cell_config, load_experiment
from groupwise.config.load import build_config, config_from_mapping, config_keys
from groupwise.config.names import TRL_NAMES, suggestion
from groupwise.config.paths import check_local_paths
from groupwise.errors import GroupwiseError


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    """tmp/proj/job.yaml naming its neighbours relatively; the current directory is tmp/elsewhere."""
    proj = tmp_path / "proj"
    (proj / "models" / "mine").mkdir(parents=True)
    (proj / "rows.jsonl").write_text('{"prompt": "1+1", "answer": "2"}\n')
    (proj / "scores.py").write_text("def f(prompts, completions, **kw):\n    return [0.0] * len(completions)\n")
    (proj / "job.yaml").write_text("model: {name: models/mine, cache_dir: cache}\n"
                                   "data: {task: null, path: rows.jsonl, heldout_path: ../held/h.jsonl}\n"
                                   "rewards: {functions: [{name: 'scores.py:f'}, {name: answer_match}]}\n")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    return proj


def test_paths_in_a_file_start_at_its_folder_and_set_paths_at_the_current_directory(project, tmp_path):
    cfg = build_config(project.parent / "proj" / "job.yaml")
    assert cfg.model.name == str(project / "models" / "mine") and cfg.model.cache_dir == str(project / "cache")
    assert cfg.data.path == str(project / "rows.jsonl") and cfg.data.heldout_path == str(tmp_path / "held/h.jsonl")
    assert [f.name for f in cfg.rewards.functions] == [f"{project / 'scores.py'}:f", "answer_match"]
    rule = f"relative to the folder of {project / 'job.yaml'}"
    assert cfg.path_rules == {"model.name": rule, "model.cache_dir": rule, "data.path": rule,
                              "data.heldout_path": rule, "rewards.functions[0].name": rule}
    moved = build_config(project / "job.yaml", ["data.heldout_path=h.jsonl", "model.name=tiny-random"])
    assert moved.data.heldout_path == str(tmp_path / "elsewhere" / "h.jsonl") and moved.model.name == "tiny-random"
    assert moved.path_rules["data.heldout_path"] == "relative to the current directory, as given on the command line"
    assert "model.name" not in moved.path_rules


def test_a_missing_path_names_its_key_and_the_rule_that_resolved_it(project, tmp_path):
    with pytest.raises(GroupwiseError) as err:
        check_local_paths(build_config(project / "job.yaml"))
    assert err.value.problem == (f"data.heldout_path: held-out data file '{tmp_path / 'held' / 'h.jsonl'}' does not "
                                 f"exist (relative to the folder of {project / 'job.yaml'})")
    (project / "scores.py").unlink()
    with pytest.raises(GroupwiseError, match=r"^rewards.functions\[0\].name: reward file '.*scores.py' does not exist"):
        check_local_paths(build_config(project / "job.yaml", ["data.heldout_path=null"]))
    absolute = config_from_mapping({"data": {"task": None, "path": str(tmp_path / "none.jsonl")}})
    with pytest.raises(GroupwiseError) as err:
        check_local_paths(absolute)
    assert err.value.problem == f"data.path: data file '{tmp_path / 'none.jsonl'}' does not exist"  # no rule


def test_compare_reads_paths_relative_to_the_file_that_holds_them(project, tmp_path):
    exp = tmp_path / "exp"
    exp.mkdir()
    (exp / "rows.jsonl").write_text('{"prompt": "2+2", "answer": "4"}\n')
    (exp / "experiment.yaml").write_text("base: ../proj/job.yaml\nseeds: [0]\n"
                                         "variants: {own: {data: {path: rows.jsonl}}, same: {}}\n")
    experiment = load_experiment(Path("../exp/experiment.yaml"))
    assert base_config(experiment).data.path == str(project / "rows.jsonl")  # beside job.yaml
    own = cell_config(experiment, experiment.variant("own"), 0, threads=1)
    assert own.data.path == str(exp / "rows.jsonl")  # beside experiment.yaml
    assert own.path_rules["data.path"] == "relative to the folder of ../exp/experiment.yaml"


def test_every_trl_name_points_at_a_key_of_the_schema():
    keys = config_keys()
    assert sorted(set(TRL_NAMES.values()) - set(keys)) == []
    assert suggestion("train.stpes", keys) == "train.steps" and suggestion("trian", keys) == "train"
    assert suggestion("algorithm.learning_rate", keys) == "train.learning_rate"
    assert suggestion("max_completion_length", keys) == "rollout.max_new_tokens"
    assert suggestion("train.zzz", keys) is None


def test_an_unknown_key_in_a_file_gets_the_key_meant(tmp_path):
    (tmp_path / "job.yaml").write_text("rollout: {num_generations: 8}\n")
    with pytest.raises(GroupwiseError) as err:
        build_config(tmp_path / "job.yaml")
    assert err.value.problem == ("unknown config key 'rollout.num_generations'; TRL's `num_generations` is "
                                 "`rollout.group_size` in groupwise")


def test_the_trl_names_the_errors_know_are_in_the_from_trl_table():
    table = (Path(__file__).resolve().parents[2] / "docs" / "from-trl.md").read_text()
    assert [name for name in TRL_NAMES if f"`{name}`" not in table] == []
