"""Algorithm presets: the published settings, and every preset valid for the config schema."""

import pytest

from groupwise.algorithms import AGGREGATIONS, KL_ESTIMATORS, POLICY_LOSSES, PRESETS, get_preset, preset_names
from groupwise.algorithms.advantages import SCALES
from groupwise.errors import GroupwiseError

KEYS = {"scale", "baseline", "loss", "eps_low", "eps_high", "beta", "kl_estimator", "agg", "dynamic_sampling",
        "overlong_filter", "soft_overlong", "num_iterations"}


def test_names_and_keys():
    assert preset_names() == ["grpo", "dr_grpo", "dapo", "cispo", "gspo", "rloo", "reinforce_pp"]
    for name, preset in PRESETS.items():
        assert set(preset) == KEYS, name
        assert preset["scale"] in SCALES and preset["loss"] in POLICY_LOSSES
        assert preset["agg"] in AGGREGATIONS and preset["kl_estimator"] in KL_ESTIMATORS


def test_published_values():
    assert PRESETS["grpo"]["beta"] == 0.04 and PRESETS["grpo"]["agg"] == "seq-mean-token-mean"
    assert PRESETS["dr_grpo"]["scale"] == "none" and PRESETS["dr_grpo"]["agg"] == "seq-mean-token-sum-norm"
    dapo = PRESETS["dapo"]
    assert (dapo["eps_low"], dapo["eps_high"], dapo["agg"]) == (0.2, 0.28, "token-mean")
    assert dapo["dynamic_sampling"] and dapo["overlong_filter"] and dapo["soft_overlong"]
    assert PRESETS["cispo"]["loss"] == "cispo" and PRESETS["cispo"]["eps_low"] == 1.0
    assert (PRESETS["gspo"]["eps_low"], PRESETS["gspo"]["eps_high"]) == (3e-4, 4e-4)
    assert all(PRESETS[n]["beta"] == 0.0 for n in ("dr_grpo", "dapo", "cispo", "gspo", "rloo", "reinforce_pp"))
    assert (PRESETS["rloo"]["baseline"], PRESETS["rloo"]["scale"], PRESETS["rloo"]["loss"]) == (
        "leave_one_out", "none", "clip")
    assert (PRESETS["reinforce_pp"]["baseline"], PRESETS["reinforce_pp"]["scale"]) == ("mean", "batch")
    assert all(PRESETS[n]["baseline"] == "mean" for n in PRESETS if n != "rloo")


def test_presets_fit_config_schema():
    from groupwise.config.schema import AlgorithmConfig

    for name in preset_names():
        AlgorithmConfig(**PRESETS[name])


def test_get_preset_copy_and_unknown():
    copy = get_preset("grpo")
    copy["beta"] = 1.0
    assert PRESETS["grpo"]["beta"] == 0.04
    with pytest.raises(GroupwiseError, match="preset"):
        get_preset("ppo")


def test_grpo_bounds_its_kl_estimate_by_default():
    """The grpo preset's k3 is clamped (docs/training-health.md: plain k3 reached 340 on one token)."""
    assert get_preset("grpo")["kl_estimator"] == "k3_clamped"
