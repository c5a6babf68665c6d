import torch

from groupwise.models.logprobs import naive_sequence_logprobs
from groupwise.rollout.completions import completion_mask_and_eos, concat_rollouts, select_groups
from groupwise.rollout.engines.hf import HFEngine
from groupwise.rollout.sampler import sample_rollouts


def test_mask_covers_tokens_up_to_and_including_the_first_eos():
    eos = 1
    completion = torch.tensor([[5, 6, 1, 1], [5, 1, 7, 1], [5, 6, 7, 8]])
    mask, has_eos = completion_mask_and_eos(completion, eos)
    assert mask.tolist() == [[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1]]
    assert has_eos.tolist() == [True, True, False]


def test_groups_of_samples_with_recorded_sampling_logprobs(tiny):
    model, tokenizer = tiny
    torch.manual_seed(0)
    prompts = ["1+1=", "what is 22?"]
    rollout = sample_rollouts(HFEngine(model), tokenizer, prompts, group_size=3, max_new_tokens=6, temperature=0.8)
    assert rollout.completion_ids.shape[0] == 6 and len(rollout.completions) == 6
    assert rollout.prompt_ids[0].tolist() == rollout.prompt_ids[2].tolist()  # rows 0..2 are prompt 0's group
    assert (rollout.prompt_mask[:, 0] == 0).any()  # the shorter prompt is left-padded
    valid = rollout.completion_mask.bool()
    assert (rollout.sampling_logp[valid] < 0).all() and (rollout.sampling_logp[~valid] == 0).all()
    truncated = ~rollout.ended_with_eos
    assert (rollout.lengths[truncated] == 6).all()


def test_recorded_logprobs_equal_the_warped_scores_of_generate(tiny):
    # the tokens come from the rows' own streams (StreamSampling); the recorded log-probs are the model's own
    # at the sampling temperature, recomputed here by one forward pass over prompt + completion
    model, tokenizer = tiny
    rollout = sample_rollouts(HFEngine(model), tokenizer, ["7+8="], group_size=2, max_new_tokens=5, temperature=0.7,
                                      keys=[3])
    ids = torch.cat([rollout.prompt_ids, rollout.completion_ids], 1)
    mask = torch.cat([rollout.prompt_mask, rollout.completion_mask], 1)
    with torch.no_grad():
        expected = naive_sequence_logprobs(model, ids, mask, rollout.prompt_ids.shape[1], temperature=0.7)
    valid = rollout.completion_mask.bool()
    torch.testing.assert_close(rollout.sampling_logp[valid], expected[valid], atol=1e-4, rtol=1e-4)


def test_greedy_is_deterministic_and_select_concat_keep_rows(tiny):
    model, tokenizer = tiny
    a = sample_rollouts(HFEngine(model), tokenizer, ["12", "3+4"], group_size=2, max_new_tokens=4, greedy=True)
    b = sample_rollouts(HFEngine(model), tokenizer, ["12", "3+4"], group_size=2, max_new_tokens=4, greedy=True)
    assert a.completions == b.completions
    second = select_groups(a, [1])
    assert second.completions == a.completions[2:]
    both = concat_rollouts([second, select_groups(a, [0])], tokenizer.pad_token_id)
    assert both.completions == a.completions[2:] + a.completions[:2]
    assert both.completion_ids.shape[0] == 4
