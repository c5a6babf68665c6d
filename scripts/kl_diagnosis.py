"""KL-spike diagnosis: runs `groupwise train` and, before each update, logs the top per-token k3 offenders.

Usage: DIAG_OUT=diag.jsonl python scripts/kl_diagnosis.py train --run-dir runs/x --overwrite [--set ...]
(docs/training-health.md has what it found on the default job).

Per step: max/mean k3, max/mean |log pi_train - log pi_sampler|, and for the 8 tokens with the largest k3
their token, position, log pi_train, log pi_ref, log pi_sampler, r = ref - train, and k3 recomputed with the
sampler's log-prob in place of the trainer's (what the KL would be without the sampler/trainer mismatch).
"""
import json
import os
import sys

import torch

import groupwise.train.step as step_mod
from groupwise.cli.main import main
from groupwise.train.batch import micro_batches

OUT = os.environ["DIAG_OUT"]
_orig = step_mod.policy_updates
_state = {"step": 0}


def patched(policy, optimizer, rollout, advantages, loss_mask, fixed, cfg):
    _state["step"] += 1
    if "ref" in fixed:
        rec = {"step": _state["step"], "top": []}
        cands = []
        all_k3, all_mis = [], []
        with torch.no_grad():
            for mb in micro_batches(rollout, torch.arange(len(rollout.completions)), cfg.train.micro_batch_size,
                                    loss_mask):
                with policy.training_precision():
                    logp, _ = step_mod._logprobs(policy.model, mb, cfg, cfg.rollout.temperature)
                logp = logp.float()
                ref = mb.take(fixed["ref"]).float()
                samp = mb.take(rollout.sampling_logp).float()
                mask = mb.completion_mask.bool()
                r = ref - logp
                k3 = torch.exp(r) - r - 1
                rs = ref - samp
                k3s = torch.exp(rs) - rs - 1
                mis = (logp - samp).abs()
                all_k3.append(k3[mask])
                all_mis.append(mis[mask])
                for i in range(k3.shape[0]):
                    m = mask[i]
                    for j in m.nonzero().flatten().tolist():
                        cands.append((float(k3[i, j]), int(mb.rows[i]), j, int(mb.completion_ids[i, j]),
                                      float(logp[i, j]), float(ref[i, j]), float(samp[i, j]), float(k3s[i, j]),
                                      float(m.sum())))
        k3c, misc = torch.cat(all_k3), torch.cat(all_mis)
        rec |= {"k3_max": float(k3c.max()), "k3_mean_tok": float(k3c.mean()), "mis_max": float(misc.max()),
                "mis_mean": float(misc.mean()), "n_tok": int(k3c.numel()),
                "n_k3_gt_10": int((k3c > 10).sum()), "n_mis_gt_1": int((misc > 1).sum())}
        cands.sort(key=lambda c: -c[0])
        for c in cands[:8]:
            k3v, row, pos, tid, lp, rf, sp, k3s, n = c
            rec["top"].append({"k3": k3v, "row": row, "pos": pos, "token_id": tid,
                               "completion": rollout.completions[row], "logp_train": lp, "logp_ref": rf,
                               "logp_sampler": sp, "r": rf - lp, "k3_with_sampler_logp": k3s,
                               "row_tokens": n})
        with open(OUT, "a") as f:
            f.write(json.dumps(rec) + "\n")
    return _orig(policy, optimizer, rollout, advantages, loss_mask, fixed, cfg)


step_mod.policy_updates = patched
sys.argv = ["groupwise", *sys.argv[1:]]
main()
