"""Named overrides for the config's `algorithm` section: one entry per published recipe.

Choices the papers leave open, and what is used here:
- grpo: DeepSeekMath (arXiv 2402.03300) sec. 4.2 uses beta 0.04 with the k3 estimator and one policy update
  per rollout batch; eps 0.2 is the usual PPO value. k3 is bounded here (k3_clamped, verl's low_var_kl): on the
  default job plain k3 reached 340 on one token with no gain for it (docs/training-health.md).
- dr_grpo: Dr. GRPO (arXiv 2503.20783) removes the std division and the per-sequence length normalisation
  (the trainer passes the generation limit as `max_tokens`) and uses no KL term.
- dapo: DAPO (arXiv 2503.14476) sec. 3: clip-higher eps 0.2 / 0.28, dynamic sampling, token-level loss,
  overlong filtering and the soft overlong punishment, no KL term.
- cispo: MiniMax-M1 (arXiv 2506.13585) sec. 3.1 imposes no lower bound on the IS weight (eps_low set large:
  1.0 makes the lower bound 0, which a positive ratio never reaches) and tunes only eps_high, whose value the
  paper does not report; 0.28 (DAPO's clip-higher) is used. Token-level loss as in the paper, no KL.
- gspo: GSPO (arXiv 2507.18071) sec. 5.1 clips the sequence ratio to [1 - 3e-4, 1 + 4e-4], no KL term.
- rloo: RLOO (Ahmadian et al., arXiv 2402.14740): the leave-one-out baseline, no std division, no KL term
  (the paper folds a KL penalty into the reward; beta 0 here), and the clip loss, which with one update per
  rollout batch is REINFORCE with that baseline.
- reinforce_pp: REINFORCE++-baseline (Hu et al., arXiv 2501.03262): the group mean is subtracted and the
  result divided by the std of the whole batch's rewards; clip loss, no KL term.
num_iterations stays 1 (one policy update pass per rollout batch) in every preset.
"""

from __future__ import annotations

from groupwise.errors import GroupwiseError

_BASE: dict[str, object] = {
    "scale": "group", "baseline": "mean", "loss": "clip", "eps_low": 0.2, "eps_high": 0.2, "beta": 0.0,
    "kl_estimator": "k3", "agg": "seq-mean-token-mean", "dynamic_sampling": False, "overlong_filter": False,
    "soft_overlong": False, "num_iterations": 1,
}

PRESETS: dict[str, dict[str, object]] = {
    "grpo": {**_BASE, "beta": 0.04, "kl_estimator": "k3_clamped"},
    "dr_grpo": {**_BASE, "scale": "none", "agg": "seq-mean-token-sum-norm"},
    "dapo": {**_BASE, "eps_high": 0.28, "agg": "token-mean", "dynamic_sampling": True,
             "overlong_filter": True, "soft_overlong": True},
    "cispo": {**_BASE, "loss": "cispo", "eps_low": 1.0, "eps_high": 0.28, "agg": "token-mean"},
    "gspo": {**_BASE, "loss": "gspo", "eps_low": 3e-4, "eps_high": 4e-4},
    "rloo": {**_BASE, "baseline": "leave_one_out", "scale": "none"},
    "reinforce_pp": {**_BASE, "scale": "batch"},
}


def preset_names() -> list[str]:
    """Names of the built-in algorithm presets."""
    return list(PRESETS)


def get_preset(name: str) -> dict[str, object]:
    """A copy of the overrides of preset `name`."""
    if name not in PRESETS:
        raise GroupwiseError(f"unknown algorithm preset {name!r}", f"use one of {', '.join(PRESETS)}")
    return dict(PRESETS[name])
