"""Masking by value: an episode's loss is the loss of its assistant tokens alone (each turn scored in its own forward
pass on the conversation before it), the environment's tokens get no gradient, and a plain rollout is unchanged."""

from __future__ import annotations

import torch

from groupwise.algorithms import policy_loss
from groupwise.models.tiny import build_tiny_random, build_tiny_tokenizer
from groupwise.rollout.completions import Rollout
from groupwise.rollout.episodes.runner import EnvironmentSpec, run_episodes
from groupwise.train.batch import micro_batch_logprobs, micro_batches
from groupwise.train.step import completion_loss_mask

POISON = 50.0  # old and reference log-probs at the environment's tokens: any leak would move the loss


class Again:
    def reset(self, **row):
        self.turn = 0

    def step(self, completion):
        self.turn += 1
        return f"again {self.turn}", None, self.turn >= 2


def episode_rollout(scripted_engine) -> Rollout:
    replies = {0: ["12", "345"], 1: ["6789", "0"]}  # sample -> its two turns: different lengths per row
    engine = scripted_engine(build_tiny_tokenizer(), lambda context, i: replies[i][context.count("again")])
    spec = EnvironmentSpec(Again, max_turns=3, max_episode_tokens=100, step_style=True)
    return run_episodes(engine, build_tiny_tokenizer(), [{"prompt": "7*8?"}], spec, group_size=2,
                        max_new_tokens=20, keys=[1])


def turn_logprobs(model, context: list[int], turn: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The plain twin for one turn: a forward pass on the conversation so far and the turn, full logits."""
    logits = model(input_ids=torch.tensor([context + turn])).logits[0, len(context) - 1:-1].float()
    logp = torch.log_softmax(logits, -1)
    return logp.gather(-1, torch.tensor(turn)[:, None]).squeeze(-1), -(logp.exp() * logp).sum(-1)


def assistant_only(model, rollout: Rollout) -> tuple[torch.Tensor, torch.Tensor, list[list[int]]]:
    """Each row's assistant tokens' log-probs and entropies [N, A] (0-padded), and their positions."""
    prompt = rollout.prompt_ids[0][rollout.prompt_mask[0].bool()].tolist()
    rows_logp, rows_entropy, positions = [], [], []
    for r in range(rollout.completion_ids.shape[0]):
        tokens, trained = rollout.completion_ids[r].tolist(), rollout.loss_mask[r].tolist()
        spans, start = [], None
        for t, flag in enumerate([*trained, 0]):
            if flag and start is None:
                start = t
            elif not flag and start is not None:
                spans.append((start, t))
                start = None
        parts = [turn_logprobs(model, prompt + tokens[:a], tokens[a:b]) for a, b in spans]
        rows_logp.append(torch.cat([p[0] for p in parts]))
        rows_entropy.append(torch.cat([p[1] for p in parts]))
        positions.append([t for a, b in spans for t in range(a, b)])
    pad = torch.nn.utils.rnn.pad_sequence
    return pad(rows_logp, batch_first=True), pad(rows_entropy, batch_first=True), positions


def test_an_episode_s_loss_kl_and_entropy_are_those_of_its_assistant_tokens_alone(scripted_engine):
    model, _ = build_tiny_random(seed=0)
    rollout = episode_rollout(scripted_engine)
    mask = completion_loss_mask(rollout, overlong_filter=False)
    assert torch.equal(mask, rollout.loss_mask) and mask.sum() < rollout.completion_mask.sum()
    mb = micro_batches(rollout, torch.arange(2), 2, mask)[0]
    logp, entropy = micro_batch_logprobs(model, mb, chunk=64, temperature=1.0)
    trained = mb.completion_mask.bool()
    old = torch.where(trained, logp.detach() - 0.05 * torch.arange(logp.shape[1]), POISON)
    ref = torch.where(trained, logp.detach() + 0.3, POISON)
    advantages = torch.tensor([1.0, -0.5])
    settings = {"agg": "seq-mean-token-mean", "beta": 0.1, "kl_estimator": "k3"}
    loss, stats = policy_loss(logp, old, advantages, mb.completion_mask, ref_logp=ref, **settings)

    alone_logp, alone_entropy, positions = assistant_only(model, rollout)
    alone_mask = torch.nn.utils.rnn.pad_sequence([torch.ones(len(p)) for p in positions], batch_first=True)
    pick = lambda full: torch.nn.utils.rnn.pad_sequence(  # noqa: E731 - the assistant positions of [N, C]
        [full[r, p] for r, p in enumerate(positions)], batch_first=True)
    alone_loss, alone_stats = policy_loss(alone_logp, pick(old), advantages, alone_mask, ref_logp=pick(ref),
                                          **settings)
    assert torch.allclose(pick(logp.detach()), alone_logp.detach(), atol=1e-5)  # same log-probs, turn by turn
    assert torch.allclose(loss, alone_loss, atol=1e-6) and abs(loss.item()) > 1e-3
    assert abs(float(stats["kl"]) - float(alone_stats["kl"])) < 1e-6
    assert torch.allclose((entropy * trained).sum() / trained.sum(), alone_entropy.sum() / alone_mask.sum(),
                          atol=1e-5)

    model.zero_grad()
    loss.backward()
    episode_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    alone_loss.backward()
    for episode_grad, alone in zip(episode_grads, (p.grad for p in model.parameters()), strict=True):
        assert torch.allclose(episode_grad, alone, atol=1e-6)


def test_no_gradient_reaches_the_environment_s_tokens(scripted_engine):
    model, _ = build_tiny_random(seed=0)
    rollout = episode_rollout(scripted_engine)
    mb = micro_batches(rollout, torch.arange(2), 2, completion_loss_mask(rollout, overlong_filter=False))[0]
    logp = micro_batch_logprobs(model, mb, chunk=64, temperature=1.0)[0].detach().requires_grad_()
    old = torch.full_like(logp, -1.0)
    loss, _ = policy_loss(logp, old, torch.tensor([1.0, -0.5]), mb.completion_mask, ref_logp=old - 0.2, beta=0.1)
    loss.backward()
    environment = (mb.completion_attention == 1) & (mb.completion_mask == 0)
    assert environment.sum() == 2 * len("\nu:again 1\na:")
    assert (logp.grad[environment] == 0).all() and (logp.grad[mb.completion_mask.bool()] != 0).all()


def test_a_plain_rollout_trains_on_its_completion_mask_as_before():
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    plain = Rollout(torch.ones(2, 3, dtype=torch.long), torch.ones(2, 3, dtype=torch.long),
                    torch.tensor([[5, 6, 7, 0], [8, 9, 0, 0]]), mask, torch.zeros(2, 4),
                    torch.tensor([True, False]), ["a", "b"], 2)
    spelled = Rollout(*[getattr(plain, k) for k in ("prompt_ids", "prompt_mask", "completion_ids",
                                                   "completion_mask", "sampling_logp", "ended_with_eos",
                                                   "completions", "group_size")], loss_mask=mask.clone())
    for overlong_filter in (False, True):
        assert torch.equal(completion_loss_mask(plain, overlong_filter), completion_loss_mask(spelled, overlong_filter))
    assert completion_loss_mask(plain, True).tolist() == [[1, 1, 1, 0], [0, 0, 0, 0]]
