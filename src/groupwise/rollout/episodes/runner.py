"""A batch of episodes as one `Rollout`: G episodes per row, each turn one `generate` call on the conversation so
far, the environment's tokens attended but kept out of the loss (`Rollout.loss_mask`).

Turn 1 of a group whose G episodes start from the same prompt is one grouped call (one prefill, as a plain
rollout); every other turn continues each episode from its whole token history. Each episode draws from its own
random streams, keyed by (prompt key, sample, turn): the same episodes on one process or many. An episode ends
when the environment says done (tool style: a turn without a tool call), after `max_turns` assistant turns, or
when it reaches `max_episode_tokens`; it is flagged truncated when it ran out of tokens or its last turn did.
A turn that reaches `max_new_tokens` is cut there and the episode goes on (the template's end of turn follows).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

from groupwise.data.prompts import build_messages
from groupwise.rollout.completions import Completions, Rollout, SamplingParams, left_pad
from groupwise.rollout.episodes.chat import ChatFormat
from groupwise.rollout.episodes.log import EpisodeLog
from groupwise.rollout.episodes.styles import EpisodeFailed, Guard, StepStyle, ToolStyle, start
from groupwise.rollout.protocol import RolloutEngine
from groupwise.rollout.streams import mix_key, random_prompt_keys

Message = dict[str, Any]


@dataclass
class EnvironmentSpec:
    """How a sampler runs episodes: `factory()` makes one environment per episode; the limits; how rows become
    first messages (data.prompt_template, data.system_prompt); `guard` applies rewards.on_error. `step_style`: the
    class has `step`, so its rewards are a reward column of their own (known from the class, so every rank's
    batch has the same columns)."""

    factory: Callable[[], Any]
    max_turns: int
    max_episode_tokens: int
    step_style: bool = False
    template: str = "{prompt}"
    system_prompt: str | None = None
    guard: Guard = field(default_factory=Guard)


@dataclass
class Episode:
    """One episode as it runs: its environment, its conversation and its tokens after the group's prompt."""

    group: int
    key: int  # its random streams' key; turn t > 1 draws from mix_key(key, t)
    environment: Any = None
    style: StepStyle | ToolStyle | None = None
    messages: list[Message] = field(default_factory=list)
    first_reply: int = 0
    prompt: str = ""
    prompt_ids: list[int] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)  # after the group's shared prompt
    trained: list[int] = field(default_factory=list)  # 1: sampled (trained), 0: the environment's
    logp: list[float] = field(default_factory=list)
    reward: float | None = None
    turns: int = 0
    tool_calls: int = 0
    tool_errors: int = 0
    failed: bool = False
    truncated: bool = False
    done: bool = False

    def add(self, ids: list[int], logp: list[float] | None, trained: bool) -> None:
        self.tokens += ids
        self.trained += [int(trained)] * len(ids)
        self.logp += logp if logp is not None else [0.0] * len(ids)


def run_episodes(engine: RolloutEngine, tokenizer: PreTrainedTokenizerBase, rows: list[dict[str, Any]],
                 spec: EnvironmentSpec, *, group_size: int, max_new_tokens: int, temperature: float = 1.0,
                 top_p: float = 1.0, greedy: bool = False, keys: list[int] | None = None) -> Rollout:
    """`group_size` episodes per row with `engine`; `keys`: one random-stream key per row (streams.py)."""
    keys = random_prompt_keys(len(rows)) if keys is None else keys
    chat = ChatFormat(tokenizer)
    episodes = [_start(spec, chat, tokenizer, row, p, mix_key(key, i))
                for p, (row, key) in enumerate(zip(rows, keys, strict=True)) for i in range(group_size)]
    prompts = _shared_prompts(episodes, group_size)
    sampling = {"eos_id": tokenizer.eos_token_id, "pad_id": tokenizer.pad_token_id, "temperature": temperature,
                "top_p": top_p, "greedy": greedy}
    for turn in range(spec.max_turns):
        active = [e for e in episodes if not e.done]
        if not active:
            break
        room = max(spec.max_episode_tokens - len(e.tokens) for e in active)
        turns = _sample_turn(engine, active, prompts, keys, turn, group_size, max(1, min(max_new_tokens, room)),
                             sampling)
        for episode, (ids, logp, ended) in zip(active, turns, strict=True):
            _after_turn(episode, ids, logp, ended, turn, spec, chat, tokenizer)
    return _rollout(episodes, prompts, tokenizer, group_size, spec.step_style)


def _start(spec: EnvironmentSpec, chat: ChatFormat, tokenizer: PreTrainedTokenizerBase, row: dict[str, Any],
           group: int, key: int) -> Episode:
    episode = Episode(group, key)
    messages = build_messages(row, spec.template, spec.system_prompt)
    try:
        episode.environment, episode.style, messages = start(spec.factory, row, messages, spec.guard)
    except EpisodeFailed:  # reset raised: the row's own prompt, no turn, a score of 0
        episode.failed = episode.done = True
    if spec.system_prompt and not any(m["role"] == "system" for m in messages):
        messages = [{"role": "system", "content": spec.system_prompt}, *messages]
    tools = episode.style.schemas if episode.style is not None else []
    episode.messages = chat.shown(messages, tools)
    episode.first_reply = len(episode.messages)
    episode.prompt = chat.prompt(episode.messages, tools)
    episode.prompt_ids = tokenizer(episode.prompt, add_special_tokens=False).input_ids
    return episode


def _shared_prompts(episodes: list[Episode], group_size: int) -> list[list[int]]:
    """Each group's prompt: the tokens its G first prompts share (the trainer reads one prompt per group); what
    an episode's own prompt has beyond it (a reset that differs per instance) opens its completion, untrained."""
    prompts = []
    for first in range(0, len(episodes), group_size):
        members = episodes[first:first + group_size]
        shared = members[0].prompt_ids
        for episode in members[1:]:
            shared = shared[:common_prefix_length(shared, episode.prompt_ids)]
        for episode in members:
            episode.add(episode.prompt_ids[len(shared):], None, trained=False)
        prompts.append(shared)
    return prompts


def common_prefix_length(a: list[int], b: list[int]) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))


def _sample_turn(engine: RolloutEngine, active: list[Episode], prompts: list[list[int]], keys: list[int],
                 turn: int, group_size: int, limit: int, sampling: dict[str, Any]
                 ) -> list[tuple[list[int], list[float], bool]]:
    """Each active episode's next turn: (tokens, their log-probs, ended with EOS). Whole groups still at their
    shared prompt sample together, the rest one conversation each."""
    by_group: dict[int, list[Episode]] = {}
    for episode in active:
        by_group.setdefault(episode.group, []).append(episode)
    whole = [g for g, members in by_group.items()
             if turn == 0 and len(members) == group_size and not any(e.tokens for e in members)]
    single = [e for e in active if e.group not in whole]
    sampled: dict[int, tuple[list[int], list[float], bool]] = {}
    if whole:
        out = engine.generate([prompts[g] for g in whole],
                              SamplingParams(group_size, limit, keys=[keys[g] for g in whole], **sampling))
        rows = [e for g in whole for e in by_group[g]]
        sampled |= {id(e): _row(out, r) for r, e in enumerate(rows)}
    if single:
        out = engine.generate([prompts[e.group] + e.tokens for e in single],
                              SamplingParams(1, limit, keys=[mix_key(e.key, turn) for e in single], **sampling))
        sampled |= {id(e): _row(out, r) for r, e in enumerate(single)}
    return [sampled[id(e)] for e in active]


def _row(out: Completions, r: int) -> tuple[list[int], list[float], bool]:
    n = int(out.lengths[r])
    return out.token_ids[r, :n].tolist(), out.logprobs[r, :n].tolist(), bool(out.finished[r])


def _after_turn(episode: Episode, ids: list[int], logp: list[float], ended: bool, turn: int, spec: EnvironmentSpec,
                chat: ChatFormat, tokenizer: PreTrainedTokenizerBase) -> None:
    """Record the sampled turn, ask the environment, and append its reply's tokens unless the episode ends."""
    room = max(spec.max_episode_tokens - len(episode.tokens), 0)  # a long reset remainder may leave none
    if len(ids) > room:  # the episode's budget ends inside this turn
        ids, logp, ended, episode.truncated = ids[:room], logp[:room], False, True
    episode.add(ids, logp, trained=True)
    episode.turns += 1
    text = tokenizer.decode(ids, skip_special_tokens=True)
    episode.messages.append({"role": "assistant", "content": text})
    if episode.truncated:
        episode.done = True
        return
    try:
        reply = episode.style.respond(text)
    except EpisodeFailed:
        episode.failed = episode.done = True
        return
    episode.tool_calls += reply.tool_calls
    episode.tool_errors += reply.tool_errors
    if reply.reward is not None:
        episode.reward = (episode.reward or 0.0) + reply.reward
    if reply.done or turn == spec.max_turns - 1:
        episode.done, episode.truncated = True, not ended
        return
    following = tokenizer(chat.after_turn(reply.messages, tokenizer.eos_token if ended else None),
                          add_special_tokens=False).input_ids
    if len(episode.tokens) + len(following) >= spec.max_episode_tokens:  # no room for another turn
        episode.done = episode.truncated = True
        return
    episode.add(following, None, trained=False)
    episode.messages += reply.messages


def _rollout(episodes: list[Episode], prompts: list[list[int]], tokenizer: PreTrainedTokenizerBase,
             group_size: int, step_style: bool) -> Rollout:
    pad = tokenizer.pad_token_id
    prompt_ids, prompt_mask = left_pad(prompts, pad)
    rows = [e.group for e in episodes]
    width = max([len(e.tokens) for e in episodes] + [1])
    ids = torch.full((len(episodes), width), pad, dtype=torch.long)
    attended = torch.zeros((len(episodes), width), dtype=torch.long)
    trained = torch.zeros_like(attended)
    logp = torch.zeros((len(episodes), width))
    for r, e in enumerate(episodes):
        n = len(e.tokens)
        ids[r, :n], attended[r, :n] = torch.tensor(e.tokens, dtype=torch.long), 1
        trained[r, :n], logp[r, :n] = torch.tensor(e.trained, dtype=torch.long), torch.tensor(e.logp)
    replies = [[m["content"] for m in e.messages[e.first_reply:] if m["role"] == "assistant"] for e in episodes]
    log = EpisodeLog([e.prompt for e in episodes], [e.messages for e in episodes],
                     [e.first_reply for e in episodes], [e.reward for e in episodes], [e.turns for e in episodes],
                     [e.tool_calls for e in episodes], [e.tool_errors for e in episodes],
                     [e.failed for e in episodes], scored=step_style,
                     environments=[e.environment for e in episodes])
    return Rollout(prompt_ids[rows], prompt_mask[rows], ids, attended, logp,
                   torch.tensor([not e.truncated for e in episodes]), [r[-1] if r else "" for r in replies],
                   group_size, trained, log)

