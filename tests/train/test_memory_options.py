"""Issue 31's memory options, each a config key: the 8-bit optimizer, optimizer offload (float32 master weights
for bf16 ones), gradient checkpointing; each changes memory, not the training maths beyond its stated rounding."""

import json
import sys

import pytest
import torch

from groupwise.config.load import build_config
from groupwise.errors import GroupwiseError
from groupwise.models.tiny import build_tiny_random
from groupwise.rollout.engines.hf import HFEngine
from groupwise.rollout.sampler import sample_rollouts
from groupwise.train.loop import training_loop
from groupwise.train.offload import OffloadedOptimizer
from groupwise.train.optim import build_optimizer
from groupwise.train.policy import wrap_policy
from groupwise.train.step import one_optimizer_step, reference_and_old_logprobs


def _train(overrides: list[str]):
    return build_config(None, ["model.name=tiny-random", "train.learning_rate=1e-4", *overrides]).train


def _metrics(run) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").open()]


def test_optimizer_keys_validate_and_name_their_choices():
    train = _train(["train.optimizer=adamw_8bit", "train.optimizer_offload=true"])
    assert (train.optimizer, train.optimizer_offload) == ("adamw_8bit", True)
    with pytest.raises(GroupwiseError, match="adamw_8bit"):  # the error lists the choices
        _train(["train.optimizer=adam8"])


def test_offload_of_float32_weights_on_a_cpu_is_the_plain_optimizer(tiny_config, tmp_path):
    weights = [torch.nn.Parameter(torch.ones(3))]
    optimizer, _ = build_optimizer(weights, _train(["train.optimizer_offload=true"]))
    assert type(optimizer) is torch.optim.AdamW  # nothing to move: the weights are float32 and on the CPU
    runs = {}
    for offload in (False, True):
        training_loop(tiny_config(f"train.optimizer_offload={offload}"), tmp_path / str(offload))
        runs[offload] = _metrics(tmp_path / str(offload))
    for plain, offloaded in zip(runs[False], runs[True], strict=True):
        assert offloaded["loss"] == pytest.approx(plain["loss"], abs=1e-7)
        assert offloaded["grad_norm"] == pytest.approx(plain["grad_norm"], rel=1e-6)


def _steps(optimizer, weights, grads):
    for grad in grads:
        for w, g in zip(weights, grad, strict=True):
            w.grad = g.to(w.dtype)
        optimizer.step()
        optimizer.zero_grad()


def test_offload_keeps_float32_masters_of_bf16_weights():
    # Adam's update is lr * m_hat / sqrt(v_hat) = 1e-4 per step for a constant gradient; bf16 spaces its values
    # 2^-7 apart at 1.0, so bf16 AdamW rounds every step away while the float32 master takes each one
    grads = [[torch.full((4,), 0.5)]] * 100
    plain = [torch.nn.Parameter(torch.ones(4, dtype=torch.bfloat16))]
    _steps(build_optimizer(plain, _train([]))[0], plain, grads)
    assert torch.equal(plain[0].detach(), torch.ones(4, dtype=torch.bfloat16))  # the run learned nothing

    weights = [torch.nn.Parameter(torch.ones(4, dtype=torch.bfloat16))]
    optimizer, _ = build_optimizer(weights, _train(["train.optimizer_offload=true"]))
    assert isinstance(optimizer, OffloadedOptimizer) and optimizer.masters[0].dtype == torch.float32
    _steps(optimizer, weights, grads)
    reference = [torch.nn.Parameter(torch.ones(4))]  # float32 AdamW on the same gradients
    _steps(torch.optim.AdamW(reference, lr=1e-4, weight_decay=0.0), reference, grads)
    torch.testing.assert_close(optimizer.masters[0].detach(), reference[0].detach())
    assert float(reference[0].detach()[0]) == pytest.approx(1 - 100 * 1e-4, abs=1e-5)
    assert torch.equal(weights[0].detach(), reference[0].detach().to(torch.bfloat16))  # the master, rounded


def test_offloaded_state_saves_the_masters_and_reloads_them():
    weights = [torch.nn.Parameter(torch.ones(4, dtype=torch.bfloat16))]
    optimizer, _ = build_optimizer(weights, _train(["train.optimizer_offload=true"]))
    _steps(optimizer, weights, [[torch.full((4,), 0.5)]] * 3)
    saved = optimizer.state_dict()
    assert int(saved["state"][0]["step"]) == 3 and saved["state"][0]["exp_avg"].dtype == torch.float32
    assert float(saved["masters"][0][0]) == pytest.approx(1 - 3e-4, abs=1e-6)  # below bf16's resolution at 1
    fresh_weights = [torch.nn.Parameter(weights[0].detach().clone())]  # the checkpoint's bf16 weights: 1.0
    fresh, _ = build_optimizer(fresh_weights, _train(["train.optimizer_offload=true"]))
    fresh.load_state_dict(saved)
    assert torch.equal(fresh.masters[0].detach(), saved["masters"][0])
    without = {k: v for k, v in saved.items() if k != "masters"}  # a checkpoint written without offload
    fresh.load_state_dict(without)
    assert torch.equal(fresh.masters[0].detach(), torch.ones(4))  # the masters start from the weights


def test_full_fine_tuning_of_bf16_weights_with_offload_trains(tiny_config, tmp_path):
    cfg = tiny_config("lora.enabled=false", "model.dtype=bfloat16", "train.optimizer_offload=true",
                      "train.learning_rate=1e-3")
    training_loop(cfg, tmp_path / "run")
    rows = _metrics(tmp_path / "run")
    assert len(rows) == 2 and all(row["skipped_update"] == 0.0 and row["grad_norm"] > 0 for row in rows)


def _state_bytes(optimizer) -> int:
    return sum(t.untyped_storage().nbytes() if not hasattr(t, "codes") else t.codes.nbytes + t.scale.nbytes
               + getattr(t, "qmap", torch.empty(0)).nbytes
               for state in optimizer.state.values() for t in state.values() if t.dim() > 0)


def test_adamw_8bit_stores_a_quarter_of_the_state_and_steps_like_adamw(torchao):
    torch.manual_seed(0)
    start = torch.randn(64, 256)
    grads = [[torch.randn(64, 256)] for _ in range(3)]
    runs = {}
    for name in ("adamw", "adamw_8bit"):
        weights = [torch.nn.Parameter(start.clone())]
        optimizer, _ = build_optimizer(weights, _train([f"train.optimizer={name}"]))
        _steps(optimizer, weights, grads)
        runs[name] = (weights[0].detach() - start, _state_bytes(optimizer))
    (update, full_bytes), (update_8bit, bytes_8bit) = runs["adamw"], runs["adamw_8bit"]
    assert full_bytes == 2 * 4 * start.numel()  # two float32 moments
    assert bytes_8bit < full_bytes / 3.5  # one byte per value, plus a scale per block of 256 and the code table
    assert update.abs().max() > 1e-4  # each of the three steps moves every weight by about lr
    torch.testing.assert_close(update_8bit, update, atol=1.5e-5, rtol=0.1)  # 8-bit moments: ~1% error


def _one_update(overrides: list[str], rollout=None):
    """Loss and SGD(lr=1) step (= the gradient) of one optimizer step of tiny-random on a fixed rollout."""
    model, tokenizer = build_tiny_random(seed=0)
    model.set_attn_implementation("eager")
    cfg = build_config(None, ["model.name=tiny-random", "rollout.engine=hf", "train.bf16=false", "lora.r=4",
                              "rollout.prompts_per_step=2", "rollout.group_size=4", "train.max_grad_norm=1e9",
                              "algorithm.beta=0.1", "train.micro_batch_size=4", *overrides])
    torch.manual_seed(0)
    policy = wrap_policy(model, cfg)
    assert policy.model.is_gradient_checkpointing == cfg.model.gradient_checkpointing
    with torch.no_grad():
        for name, param in policy.model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.05)
    if rollout is None:
        torch.manual_seed(1)
        rollout = sample_rollouts(HFEngine(policy.model), tokenizer, ["1+1=", "2*3="], group_size=4,
                                  max_new_tokens=6, temperature=1.0)
    trainable = {n: p for n, p in policy.model.named_parameters() if p.requires_grad}
    before = {n: p.detach().clone() for n, p in trainable.items()}
    fixed = reference_and_old_logprobs(policy, rollout, rollout.completion_mask, cfg)
    stats = one_optimizer_step(policy, torch.optim.SGD(list(trainable.values()), lr=1.0), rollout,
                               torch.arange(8), torch.linspace(-1, 1, 8), rollout.completion_mask, fixed, cfg)
    return stats, {n: before[n] - p.detach() for n, p in trainable.items()}, rollout


@pytest.mark.parametrize("lora", [True, False])
def test_gradient_checkpointing_changes_memory_not_the_gradient(lora):
    plain_stats, plain_step, rollout = _one_update([f"lora.enabled={lora}"])
    stats, step, _ = _one_update([f"lora.enabled={lora}", "model.gradient_checkpointing=true"], rollout)
    assert stats["loss"] == pytest.approx(plain_stats["loss"], abs=1e-6)
    assert stats["kl"] == pytest.approx(plain_stats["kl"], abs=1e-6)
    assert any(d.abs().max() > 1e-4 for d in plain_step.values())  # a real update
    for name in plain_step:
        torch.testing.assert_close(step[name], plain_step[name], atol=1e-6, rtol=1e-4)


def test_adamw_8bit_without_torchao_names_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "torchao", None)  # import torchao raises ImportError
    monkeypatch.setitem(sys.modules, "torchao.optim", None)
    with pytest.raises(GroupwiseError, match="needs torchao") as err:
        build_optimizer([torch.nn.Parameter(torch.ones(3))], _train(["train.optimizer=adamw_8bit"]))
    assert "torchao==0.18.0" in err.value.fix and "train.optimizer: adamw" in err.value.fix


def test_adamw_8bit_on_bf16_fsdp2_shards_is_refused_in_one_line():
    """torchao 0.18's bf16 stochastic rounding fails on DTensor state (found by benchmarks/fsdp_memory.py)."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor import distribute_tensor

    owned = not dist.is_initialized()  # vLLM's in-process engine (other tests) leaves a one-process group behind
    if owned:
        dist.init_process_group("gloo", init_method="tcp://127.0.0.1:0", rank=0, world_size=1)
    try:
        mesh = init_device_mesh("cpu", (1,))
        for dtype, refused in ((torch.bfloat16, True), (torch.float32, False)):
            weight = torch.nn.Parameter(distribute_tensor(torch.ones(4, 4, dtype=dtype), mesh))
            cfg = _train(["train.optimizer=adamw_8bit"])
            if refused:
                with pytest.raises(GroupwiseError, match="adamw_8bit cannot step bfloat16") as err:
                    build_optimizer([weight], cfg)
                assert "model.dtype: float32" in err.value.fix
            else:  # float32 shards pass the check (torchao itself may still be missing here)
                try:
                    build_optimizer([weight], cfg)
                except GroupwiseError as missing:
                    assert "needs torchao" in str(missing)
    finally:
        if owned:
            dist.destroy_process_group()
