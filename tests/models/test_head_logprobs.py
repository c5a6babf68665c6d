import pytest
import torch

from groupwise.models.head_logprobs import token_logprobs


def _naive(hidden, weight, targets, temperature):
    log_probs = torch.log_softmax((hidden @ weight.T).float() / temperature, -1)
    entropy = -(log_probs.exp() * log_probs).sum(-1)
    return log_probs.gather(-1, targets[:, None]).squeeze(-1), entropy


def _inputs(seed=0, n=37, h=8, v=50):
    torch.manual_seed(seed)
    hidden = torch.randn(n, h, requires_grad=True)
    weight = torch.randn(v, h, requires_grad=True)
    return hidden, weight, torch.randint(0, v, (n,))


@pytest.mark.parametrize("chunk,temperature", [(1, 1.0), (5, 0.7), (16, 1.3), (1000, 1.0)])
def test_logprobs_entropy_and_gradients_equal_autograd_through_log_softmax(chunk, temperature):
    hidden, weight, targets = _inputs()
    upstream = torch.randn(hidden.shape[0])  # an arbitrary loss: sum of weighted log-probs
    logp, entropy = token_logprobs(hidden, weight, targets, chunk=chunk, temperature=temperature)
    grads = torch.autograd.grad((logp * upstream).sum(), (hidden, weight))
    naive_logp, naive_entropy = _naive(hidden, weight, targets, temperature)
    naive_grads = torch.autograd.grad((naive_logp * upstream).sum(), (hidden, weight))
    torch.testing.assert_close(logp, naive_logp, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(entropy, naive_entropy.detach(), atol=1e-5, rtol=1e-5)
    for ours, theirs in zip(grads, naive_grads, strict=True):
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def test_hand_computed_two_token_vocabulary():
    # logits (2, 0): log p(token 0) = 2 - log(e^2 + 1); d logp / d h = w0 - sum_j p_j w_j
    hidden = torch.tensor([[1.0]], requires_grad=True)
    weight = torch.tensor([[2.0], [0.0]])
    logp, entropy = token_logprobs(hidden, weight, torch.tensor([0]), chunk=4)
    p0 = torch.e**2 / (torch.e**2 + 1)
    assert logp.item() == pytest.approx(2 - torch.log(torch.tensor(torch.e**2 + 1)).item(), abs=1e-6)
    assert entropy.item() == pytest.approx(-(p0 * torch.log(torch.tensor(p0)) + (1 - p0) * torch.log(
        torch.tensor(1 - p0))).item(), abs=1e-6)
    logp.sum().backward()
    assert hidden.grad.item() == pytest.approx(2 - 2 * p0, abs=1e-6)


def test_bf16_autocast_stays_close_to_float32():
    hidden, weight, targets = _inputs(n=64, h=32, v=300)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logp, _ = token_logprobs(hidden, weight, targets, chunk=24)
        grad_h, = torch.autograd.grad(logp.sum(), hidden)
    reference, _ = _naive(hidden, weight, targets, 1.0)
    reference_grad, = torch.autograd.grad(reference.sum(), hidden)
    assert logp.dtype == torch.float32 and grad_h.dtype == torch.float32
    torch.testing.assert_close(logp, reference.detach(), atol=0.15, rtol=0.05)
    torch.testing.assert_close(grad_h, reference_grad, atol=0.1, rtol=0.05)


def test_frozen_weight_gets_no_gradient_and_needs_none():
    hidden, weight, targets = _inputs()
    weight = weight.detach()
    logp, _ = token_logprobs(hidden, weight, targets, chunk=8)
    logp.sum().backward()
    assert weight.grad is None and hidden.grad is not None


def test_cpu_calls_reuse_one_workspace_and_stay_exact():
    from groupwise.models import head_logprobs

    hidden, weight, targets = _inputs(n=40, v=77)
    token_logprobs(hidden, weight, targets, chunk=16)[0].sum().backward()
    storage = {k: v.data_ptr() for k, v in head_logprobs._workspace.buffers.items() if k[1] == 77}
    logp, _ = token_logprobs(hidden * 2, weight, targets, chunk=16)
    assert storage and storage == {k: v.data_ptr() for k, v in head_logprobs._workspace.buffers.items() if k[1] == 77}
    torch.testing.assert_close(logp, _naive(hidden * 2, weight, targets, 1.0)[0], atol=1e-5, rtol=1e-5)


def test_each_thread_has_its_own_workspace_so_concurrent_passes_stay_exact():
    """An async run scores log-probs on the producer's thread while the trainer's runs: a shared buffer would let
    one thread's logits overwrite the other's mid-pass."""
    import threading

    from groupwise.models import head_logprobs

    hidden, weight, targets = _inputs(n=64, v=77)
    expected = _naive(hidden, weight, targets, 1.0)[0]
    results, pointers = {}, {}

    def score(name: str) -> None:
        results[name] = [token_logprobs(hidden, weight, targets, chunk=8)[0] for _ in range(50)]
        pointers[name] = {v.data_ptr() for k, v in head_logprobs._workspace.buffers.items() if k[1] == 77}

    threads = [threading.Thread(target=score, args=(name,)) for name in ("producer", "trainer")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert pointers["producer"] and not pointers["producer"] & pointers["trainer"]
    for logp in results["producer"] + results["trainer"]:
        torch.testing.assert_close(logp, expected, atol=1e-5, rtol=1e-5)
