import torch

from groupwise.models.head_logprobs import token_logprobs
from groupwise.models.logprobs import naive_sequence_logprobs, sequence_logprobs


def _batch(tokenizer, n=3, prompt=6, completion=5):
    torch.manual_seed(1)
    ids = torch.randint(3, len(tokenizer), (n, prompt + completion))
    mask = torch.ones_like(ids)
    mask[0, :2] = 0  # left padding on one row
    return ids, mask, prompt


def test_chunked_logprobs_equal_the_naive_full_logits(tiny):
    model, tokenizer = tiny
    ids, mask, start = _batch(tokenizer)
    naive = naive_sequence_logprobs(model, ids, mask, start, temperature=0.7)
    for chunk in (1, 4, 7, 1000):
        chunked, entropy = sequence_logprobs(model, ids, mask, start, chunk=chunk, temperature=0.7)
        torch.testing.assert_close(chunked, naive, atol=1e-5, rtol=1e-5)
        assert entropy.shape == naive.shape and (entropy > 0).all()


def test_chunked_gradients_equal_the_naive_gradients(tiny):
    model, tokenizer = tiny
    ids, mask, start = _batch(tokenizer)
    naive = naive_sequence_logprobs(model, ids, mask, start).sum()
    naive_grads = torch.autograd.grad(naive, list(model.parameters()))
    chunked = sequence_logprobs(model, ids, mask, start, chunk=3)[0].sum()
    chunked_grads = torch.autograd.grad(chunked, list(model.parameters()))
    for a, b in zip(naive_grads, chunked_grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_chunk_never_holds_more_than_chunk_rows_of_logits():
    head = torch.nn.Linear(8, 50, bias=False)
    hidden, targets = torch.randn(40, 8), torch.randint(0, 50, (40,))
    rows_seen = []
    original, original_mm = torch.Tensor.__matmul__, torch.mm

    def spy(a, b, **kwargs):  # `a @ b`, or torch.mm(a, b, out=buffer) writing into the chunk's buffer
        out = (original_mm if kwargs else original)(a, b, **kwargs)
        if out.dim() == 2 and out.shape[-1] == 50:
            rows_seen.append(out.shape[0])
        return out

    torch.Tensor.__matmul__, torch.mm = spy, spy
    try:
        logp, _ = token_logprobs(hidden, head.weight, targets, chunk=16)
    finally:
        torch.Tensor.__matmul__, torch.mm = original, original_mm
    assert rows_seen == [16, 16, 8]
    full = torch.log_softmax(hidden @ head.weight.T, -1).gather(-1, targets[:, None]).squeeze(-1)
    torch.testing.assert_close(logp, full.detach())


def test_padding_positions_skip_the_head_and_read_zero(tiny):
    model, tokenizer = tiny
    ids, mask, start = _batch(tokenizer)
    full, _ = sequence_logprobs(model, ids, mask.clone(), start)
    mask[1, -2:] = 0  # row 1's completion ends two tokens early: right padding
    padded, entropy = sequence_logprobs(model, ids, mask, start)
    real = mask[:, start:].bool()
    assert (padded[~real] == 0).all() and (entropy[~real] == 0).all()
    # right padding changes nothing before it: the real tokens keep their values
    torch.testing.assert_close(padded[real], full[real], atol=1e-5, rtol=1e-5)
