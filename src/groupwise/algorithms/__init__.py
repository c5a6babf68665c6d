"""The GRPO family as small pure tensor functions: advantages, KL, policy losses, importance weights."""

from groupwise.algorithms.advantages import (
    BASELINES,
    DEFAULT_SUCCESS_THRESHOLD,
    SCALES,
    focal_advantages,
    focal_weights,
    group_advantages,
    leave_one_out,
    success_rate,
)
from groupwise.algorithms.importance import IS_LEVELS, IS_MODES, importance_ratio, importance_weights
from groupwise.algorithms.kl import KL_ESTIMATORS, kl_k1, kl_k2, kl_k3, kl_k3_clamped, kl_penalty
from groupwise.algorithms.losses import (
    AGGREGATIONS,
    POLICY_LOSSES,
    TokenLoss,
    cispo_token_loss,
    clip_token_loss,
    dual_clip_cap,
    gspo_token_loss,
    policy_loss,
    register_aggregation,
    register_policy_loss,
    seq_mean_token_mean,
    seq_mean_token_sum_norm,
    token_mean,
)
from groupwise.algorithms.overlong import soft_overlong_penalty
from groupwise.algorithms.passk import pass_at_k, pass_at_k_many
from groupwise.algorithms.presets import PRESETS, get_preset, preset_names

__all__ = [
    "AGGREGATIONS",
    "BASELINES",
    "DEFAULT_SUCCESS_THRESHOLD",
    "IS_LEVELS",
    "IS_MODES",
    "KL_ESTIMATORS",
    "POLICY_LOSSES",
    "PRESETS",
    "SCALES",
    "TokenLoss",
    "cispo_token_loss",
    "clip_token_loss",
    "dual_clip_cap",
    "focal_advantages",
    "focal_weights",
    "get_preset",
    "group_advantages",
    "gspo_token_loss",
    "importance_ratio",
    "importance_weights",
    "kl_k1",
    "kl_k2",
    "kl_k3",
    "kl_k3_clamped",
    "kl_penalty",
    "leave_one_out",
    "pass_at_k",
    "pass_at_k_many",
    "policy_loss",
    "preset_names",
    "register_aggregation",
    "register_policy_loss",
    "seq_mean_token_mean",
    "seq_mean_token_sum_norm",
    "soft_overlong_penalty",
    "success_rate",
    "token_mean",
]
