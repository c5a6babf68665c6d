"""Algorithm presets: the published settings, and every preset valid for the config schema."""

import pytest

from groupwise.algorithms import AGGREGATIONS, KL_ESTIMATORS, POLICY_LOSSES, PRESETS, get_preset, preset_names
from groupwise.algorithms.advantages import SCALES
from groupwise.errors import GroupwiseError

KEYS = {"scale", "baseline", "loss", "eps_low", "eps_high", "beta", "kl_estimator", "agg", "dynamic_sampling",
        "overlong_filter", "soft_overlong", "num_iterations"}


# what each preset changes from GRPO's settings (Shao et al. 2024), by its paper
FROM_GRPO = {
    "grpo": {},
    "dr_grpo": {"scale": "none", "agg": "seq-mean-token-sum-norm", "beta": 0.0, "kl_estimator": "k3"},
    "dapo": {"eps_high": 0.28, "agg": "token-mean", "dynamic_sampling": True, "overlong_filter": True,
             "soft_overlong": True, "beta": 0.0, "kl_estimator": "k3"},
    "cispo": {"loss": "cispo", "eps_low": 1.0, "eps_high": 0.28, "agg": "token-mean", "beta": 0.0,
              "kl_estimator": "k3"},
    "gspo": {"loss": "gspo", "eps_low": 3e-4, "eps_high": 4e-4, "beta": 0.0, "kl_estimator": "k3"},
    "rloo": {"baseline": "leave_one_out", "scale": "none", "beta": 0.0, "kl_estimator": "k3"},
    "reinforce_pp": {"scale": "batch", "beta": 0.0, "kl_estimator": "k3"},
}


def test_names_and_keys():
    assert preset_names() == ["grpo", "dr_grpo", "dapo", "cispo", "gspo", "rloo", "reinforce_pp"]
    assert PRESETS["grpo"] == {"scale": "group", "baseline": "mean", "loss": "clip", "eps_low": 0.2, "eps_high": 0.2,
                               "beta": 0.04, "kl_estimator": "k3_clamped", "agg": "seq-mean-token-mean",
                               "dynamic_sampling": False, "overlong_filter": False, "soft_overlong": False,
                               "num_iterations": 1}
    for name, preset in PRESETS.items():
        assert set(preset) == KEYS, name
        assert {k: v for k, v in preset.items() if v != PRESETS["grpo"][k]} == FROM_GRPO[name], name
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
    from groupwise.config.load import build_config
    from groupwise.config.schema import AlgorithmConfig

    for name in preset_names():
        assert AlgorithmConfig(**PRESETS[name]).model_dump(include=set(KEYS)) == PRESETS[name], name
        chosen = build_config(None, [f"algorithm.preset={name}"]).algorithm  # named in a config: exactly its values
        assert chosen.model_dump(include=set(KEYS)) == PRESETS[name], name
    assert build_config(None, ["algorithm.preset=dapo", "algorithm.eps_high=0.3"]).algorithm.eps_high == 0.3


def test_get_preset_copy_and_unknown():
    copy = get_preset("grpo")
    copy["beta"] = 1.0
    assert PRESETS["grpo"]["beta"] == 0.04
    with pytest.raises(GroupwiseError, match="preset"):
        get_preset("ppo")


def test_grpo_bounds_its_kl_estimate_by_default():
    """The grpo preset's k3 is clamped (docs/training-health.md: plain k3 reached 340 on one token)."""
    assert get_preset("grpo")["kl_estimator"] == "k3_clamped"
