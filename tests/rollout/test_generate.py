import torch

from groupwise.rollout.generate import completion_mask_and_eos, concat_rollouts, generate_group_rollouts, select_groups


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
    rollout = generate_group_rollouts(model, tokenizer, prompts, group_size=3, max_new_tokens=6, temperature=0.8)
    assert rollout.completion_ids.shape[0] == 6 and len(rollout.completions) == 6
    assert rollout.prompt_ids[0].tolist() == rollout.prompt_ids[2].tolist()  # rows 0..2 are prompt 0's group
    assert (rollout.prompt_mask[:, 0] == 0).any()  # the shorter prompt is left-padded
    valid = rollout.completion_mask.bool()
    assert (rollout.sampling_logp[valid] < 0).all() and (rollout.sampling_logp[~valid] == 0).all()
    truncated = ~rollout.ended_with_eos
    assert (rollout.lengths[truncated] == 6).all()


def test_recorded_logprobs_equal_the_warped_scores_of_generate(tiny):
    model, tokenizer = tiny
    prompts = ["7+8="]
    torch.manual_seed(3)
    rollout = generate_group_rollouts(model, tokenizer, prompts, group_size=2, max_new_tokens=5, temperature=0.7)
    enc = tokenizer(prompts * 2, return_tensors="pt", add_special_tokens=False)
    torch.manual_seed(3)
    out = model.generate(**enc, max_new_tokens=5, do_sample=True, temperature=0.7, top_k=0, top_p=1.0,
                         output_scores=True, return_dict_in_generate=True, pad_token_id=tokenizer.pad_token_id)
    tokens = out.sequences[:, enc.input_ids.shape[1]:]
    expected = torch.stack([torch.log_softmax(s, -1).gather(-1, tokens[:, i:i + 1]).squeeze(-1)
                            for i, s in enumerate(out.scores)], 1)
    assert torch.equal(tokens[:, : rollout.completion_ids.shape[1]][rollout.completion_mask.bool()],
                       rollout.completion_ids[rollout.completion_mask.bool()])
    valid = rollout.completion_mask.bool()
    torch.testing.assert_close(rollout.sampling_logp[valid], expected[:, : valid.shape[1]][valid])


def test_greedy_is_deterministic_and_select_concat_keep_rows(tiny):
    model, tokenizer = tiny
    a = generate_group_rollouts(model, tokenizer, ["12", "3+4"], group_size=2, max_new_tokens=4, greedy=True)
    b = generate_group_rollouts(model, tokenizer, ["12", "3+4"], group_size=2, max_new_tokens=4, greedy=True)
    assert a.completions == b.completions
    second = select_groups(a, [1])
    assert second.completions == a.completions[2:]
    both = concat_rollouts([second, select_groups(a, [0])], tokenizer.pad_token_id)
    assert both.completions == a.completions[2:] + a.completions[:2]
    assert both.completion_ids.shape[0] == 4
