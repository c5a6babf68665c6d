"""The run configuration: one pydantic model per YAML section, every field documented where it is declared."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from groupwise.config.paths import resolve_data_path, resolve_model_name, resolve_reward_name

DEFAULT_COMPILE_TIMEOUT_S = 20.0  # a Rust reward's compile limit, unless its params.compile_timeout_s says otherwise


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelConfig(Section):
    name: str = Field("smollm2-135m", description="Built-in name (smollm2-135m, tiny-random), a local folder, "
                      "a .gguf file, or a hub id.")
    gguf_file: str | None = Field(None, description="GGUF file inside `name` (a folder or hub repo) to dequantize.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="Weights' dtype; auto: a frozen LoRA base in bfloat16 where the device computes bf16 "
        "fast (AVX512-BF16/AMX CPUs, CUDA), else float32. A LoRA adapter stays float32; full fine-tuning trains "
        "the weights in this dtype (bfloat16: see train.optimizer_offload for float32 master weights).")
    device: str = Field("auto", description="'auto' (cuda if available, else cpu), 'cpu' or 'cuda[:N]'.")
    gradient_checkpointing: bool = Field(False, description="Recompute activations in backward to save memory.")
    attention: Literal["auto", "eager", "sdpa"] = Field(
        "auto", description="Attention kernel of the training passes; auto: eager (plain matrix products, faster "
        "for short sequences) on a CPU when rollout.max_new_tokens <= 256, else sdpa.")
    cache_dir: str | None = Field(None, description="Where dequantized GGUF models are cached as safetensors "
                                  "(default: ~/.cache/groupwise).")

    @field_validator("name")
    @classmethod
    def _absolute_local_name(cls, name: str) -> str:
        return resolve_model_name(name)

    @field_validator("cache_dir")
    @classmethod
    def _absolute_cache_dir(cls, path: str | None) -> str | None:
        return resolve_data_path(path)


class LoraConfig(Section):
    enabled: bool = Field(True, description="Train a LoRA adapter (peft); false means full fine-tuning.")
    r: int = Field(16, ge=1, description="LoRA rank.")
    alpha: float = Field(32.0, gt=0, description="LoRA alpha (scale = alpha / r).")
    dropout: float = Field(0.0, ge=0, lt=1, description="LoRA dropout.")
    target_modules: str | list[str] = Field("all-linear", description="Modules to adapt: 'all-linear' or names.")


class DataConfig(Section):
    task: str | None = Field("arithmetic", description="Built-in task name (arithmetic, countdown, "
                             "python-functions, rust-functions); null when `path` is given.")
    task_params: dict[str, Any] = Field(default_factory=dict, description="Parameters of the built-in task.")
    path: str | None = Field(None, description="Local .jsonl/.json/.parquet/.csv file, or hf:NAME for a hub dataset.")
    hf_config: str | None = Field(None, description="Hub dataset configuration name.")
    split: str = Field("train", description="Split of a hub dataset to train on.")
    heldout_path: str | None = Field(None, description="Held-out data for eval (default: the task's held-out "
                                     "split, or the tail of the training file).")
    heldout_split: str | None = Field(None, description="Hub split for held-out data (e.g. test).")
    heldout_fraction: float = Field(0.1, ge=0, lt=1, description="Share of a data file kept aside for eval "
                                    "when no held-out data is given.")
    columns: dict[str, str] = Field(default_factory=dict, description="Rename columns to prompt/answer/tests/"
                                    "system, e.g. {prompt: question}.")
    prompt_template: str = Field("{prompt}", description="Python format string applied to each row's columns "
                                 "(to a chat prompt's last user message, {prompt} being its text).")
    system_prompt: str | None = Field(None, description="System message (overridden by a row's `system`; added to "
                                      "a chat prompt that has none).")
    chat_template: bool = Field(True, description="Apply the tokenizer's chat template to the prompt.")
    train_size: int | None = Field(None, ge=1, description="Rows generated/used for training (None: task default).")
    heldout_size: int = Field(200, ge=1, description="Held-out rows for evaluation.")
    seed: int = Field(0, description="Seed for generating and shuffling the data.")
    order_seed: int | None = Field(None, description="Seed of the training data order alone (default: `seed`); "
                                   "`groupwise compare` sets it per seed so the problems stay the same.")
    difficulty_filter: dict[str, Any] | None = Field(None, description="Skip prompts whose last `visits` groups "
                                                     "were all-correct or all-wrong: {visits: 2}.")

    @field_validator("path", "heldout_path")
    @classmethod
    def _absolute_local_path(cls, path: str | None) -> str | None:
        return resolve_data_path(path)


class RewardSpec(Section):
    name: str = Field(description="Built-in reward name, module:function or path/file.py:function.")
    weight: float = Field(1.0, description="Weight in the summed reward.")
    params: dict[str, Any] = Field(default_factory=dict, description="Parameters of a built-in reward.")

    @field_validator("name")
    @classmethod
    def _absolute_reward_file(cls, name: str) -> str:
        return resolve_reward_name(name)


class RewardsConfig(Section):
    functions: list[RewardSpec] | None = Field(None, description="Reward functions combined by weight (default: "
                                               "the built-in task's own, e.g. code_tests for rust-functions; "
                                               "answer_match for data files).")
    workers: int = Field(4, ge=1, description="Parallel workers scoring a batch.")
    timeout_s: float = Field(120.0, gt=0, description="Longest wait for one reward function on one batch "
                             "(code rewards compile and run every completion).")
    on_error: Literal["raise", "zero"] = Field("raise", description="A raising reward function stops the run "
                                               "(raise) or scores 0 and is counted (zero).")

    @model_validator(mode="after")
    def _check_rust_compile_timeout(self) -> RewardsConfig:
        for spec in self.functions or []:
            rust = spec.name in ("rust_compiles", "rust_clippy") or (
                spec.name == "code_tests" and spec.params.get("language") == "rust")
            compile_s = spec.params.get("compile_timeout_s", DEFAULT_COMPILE_TIMEOUT_S)
            if rust and isinstance(compile_s, int | float) and compile_s > self.timeout_s / 2:
                raise ValueError(f"reward {spec.name}: params.compile_timeout_s ({compile_s:g}s) must be at most "
                                 f"half of rewards.timeout_s ({self.timeout_s:g}s), so that one stuck compile "
                                 "scores 0 alone instead of timing out the whole batch; lower it or raise "
                                 "rewards.timeout_s")
        return self


class SandboxConfig(Section):
    require: bool = Field(False, description="Fail instead of falling back when bubblewrap or libseccomp is missing.")
    timeout_s: float = Field(10.0, gt=0, description="Wall-clock limit for one sandboxed test run.")
    cpu_s: int = Field(10, ge=1, description="CPU-seconds limit of a run (its cgroup; RLIMIT_CPU per process).")
    memory_mb: int = Field(1024, ge=16, description="MiB for processes, /box, /tmp (cgroup; RLIMIT_AS too).")
    max_processes: int = Field(64, ge=1, description="Process limit (cgroup pids.max; RLIMIT_NPROC).")
    max_output_kb: int = Field(64, ge=1, description="Captured stdout/stderr cap in KiB.")


class AlgorithmConfig(Section):
    preset: str = Field("grpo", description="grpo, dr_grpo, dapo, cispo, gspo, rloo or reinforce_pp; any "
                        "knob below overrides it.")
    scale: Literal["group", "batch", "none"] = Field("group", description="Advantage std scaling (none: Dr. GRPO).")
    baseline: Literal["mean", "leave_one_out"] = Field("mean", description="Subtracted from each reward: the "
                                                       "group mean, or the mean of the group's other samples (RLOO).")
    loss: Literal["clip", "cispo", "gspo"] = Field("clip", description="Policy loss kind.")
    dual_clip: float | None = Field(None, gt=1, description="Dual-clip PPO: cap the clip loss of tokens with A < 0 "
                                    "at -A * dual_clip (> 1; verl uses 3.0); clip loss only.")
    eps_low: float = Field(0.2, ge=0, description="Lower clip range (ratio >= 1 - eps_low).")
    eps_high: float = Field(0.2, ge=0, description="Upper clip range (DAPO clip-higher: 0.28).")
    beta: float = Field(0.04, ge=0, description="KL weight to the reference model (0 skips the reference).")
    kl_estimator: Literal["k1", "k2", "k3", "k3_clamped"] = Field(
        "k3_clamped", description="KL estimator: k3 as DeepSeekMath, or k3_clamped (default), k3 bounded to "
        "[0, 10] as verl's low_var_kl.")
    agg: Literal["seq-mean-token-mean", "token-mean", "seq-mean-token-sum-norm"] = Field(
        "seq-mean-token-mean", description="Loss aggregation over tokens and sequences.")
    adv_eps: float = Field(1e-4, gt=0, description="Added to the std in advantage scaling.")
    num_iterations: int = Field(1, ge=1, description="Policy updates per rollout batch (PPO epochs).")
    mini_batches: int = Field(1, ge=1, description="Optimizer steps per iteration over the rollout batch.")
    dynamic_sampling: bool = Field(False, description="DAPO: drop groups with all-equal rewards and resample.")
    max_sampling_rounds: int = Field(3, ge=1, description="Rollout rounds per step for dynamic sampling.")
    overlong_filter: bool = Field(False, description="DAPO: mask the loss of truncated completions.")
    soft_overlong: bool = Field(False, description="DAPO: add the soft overlong punishment to the reward.")
    overlong_cache: int = Field(8, ge=1, description="DAPO soft punishment interval (tokens before the limit).")
    focal_gamma: float = Field(0.0, ge=0, description="F-GRPO: scale advantages by (1 - success rate)^gamma.")
    success_threshold: float | None = Field(None, description="Reward counted as success for F-GRPO and "
                                            "diagnostics (default 1.0, the maximum of a 0/1 reward).")
    importance_sampling: Literal["off", "token", "sequence"] = Field(
        "off", description="Correct rollout/trainer mismatch with TIS/MIS weights at this level.")
    is_mode: Literal["truncate", "mask"] = Field("truncate", description="TIS truncates at the cap; MIS masks.")
    is_cap: float = Field(2.0, gt=0, description="Importance weight cap.")

    @field_validator("importance_sampling", mode="before")
    @classmethod
    def _off_as_yaml_reads_it(cls, value: Any) -> Any:
        """YAML 1.1 reads a bare `off` (in a file or a --set) as false: it means "off" here."""
        return "off" if value is False else value


class VLLMConfig(Section):
    gpu_memory_utilization: float = Field(0.3, gt=0, le=1, description="Share of the GPU's memory vLLM may take "
                                          "(weights and KV cache) beside the trainer; GPU only.")
    cpu_kv_cache_gb: float = Field(1.0, gt=0, description="GiB of KV cache on a CPU (vLLM's CPU backend would "
                                   "otherwise take most of the RAM).")
    max_model_len: int | None = Field(None, ge=16, description="Longest prompt + completion in tokens (default: "
                                      "the model's own limit).")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "auto", description="vLLM's weight and compute precision; auto: the policy's own dtype.")
    enable_sleep_mode: bool = Field(False, description="GPU: free vLLM's memory while the trainer updates and take "
                                    "it back for sampling (a no-op on a CPU).")
    enforce_eager: Literal["auto"] | bool = Field("auto", description="Run without CUDA graphs / torch.compile; "
                                                   "auto: eager on a CPU, graphs on a GPU.")
    tensor_parallel_size: int = Field(1, ge=1, description="GPUs one vLLM engine spans (colocated: 1).")
    lora_sync: Literal["merged", "adapter"] = Field(
        "merged", description="With LoRA: send the merged weights after each step, or the adapter alone (vLLM "
        "applies it per token).")
    sync_timeout_s: float = Field(300.0, gt=0, description="A weight sync (or a server's answer) that takes longer "
                                  "stops the run with a checkpoint.")
    url: str | None = Field(None, description="engine vllm_server: the `groupwise serve-rollout` address, e.g. "
                            "http://127.0.0.1:8471.")


class RolloutConfig(Section):
    engine: Literal["fast", "hf", "vllm", "vllm_server"] = Field(
        "fast", description="fast: a copy of the policy decoding each prompt once per group; hf: plain "
        "transformers generate; vllm: vLLM in this process (colocated); vllm_server: a `groupwise serve-rollout` "
        "process at rollout.vllm.url (docs/vllm.md).")
    weights: Literal["auto", "copy", "shared"] = Field(
        "auto", description="The fast engine decodes from a copy of the policy (copy: LoRA merged in float32, kept "
        "beside the frozen weights in bf16; one more model in memory) or from the policy itself (shared); auto: copy "
        "on a CPU, shared on GPUs.")
    dtype: Literal["auto", "float32", "bfloat16"] = Field(
        "auto", description="Precision of the fast engine's products (the copy's weights, or autocast when shared); "
        "auto: bfloat16 where the device computes it fast (AVX512-BF16/AMX CPUs, CUDA), else float32.")
    prompts_per_step: int = Field(8, ge=1, description="Distinct prompts per training step.")
    group_size: int = Field(8, ge=2, description="Completions per prompt (GRPO group).")
    max_new_tokens: int = Field(32, ge=1, description="Completion length limit.")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature.")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling.")
    batch_size: int | None = Field(None, ge=1, description="Sequences generated at once (default: all).")
    max_episode_tokens: int = Field(512, ge=1, description="With an environment: tokens of one episode at most, "
                                    "the model's turns and the environment's messages together; an episode that "
                                    "reaches it ends and is flagged truncated (DAPO's overlong options apply).")
    vllm: VLLMConfig = Field(default_factory=VLLMConfig, description="Settings of the vllm engines.")
    max_staleness: int = Field(0, ge=0, description="Asynchronous rollouts (docs/async.md): a producer samples and "
                               "scores the batch of step s from the weights of step s-1-k while the trainer "
                               "updates, k this value; 0: synchronous (sample, score, then update).")
    producer_timeout_s: float = Field(600.0, gt=0, description="With max_staleness > 0: a producer that hands over "
                                      "no batch for this long stops the run with a checkpoint.")
    threads: int | None = Field(None, ge=1, description="With max_staleness > 0: the producer's torch CPU threads "
                                "(default: half the cores, or those train.threads leaves; the trainer keeps "
                                "train.threads, default the rest).")

    @model_validator(mode="after")
    def _check_server_url(self) -> RolloutConfig:
        if self.engine == "vllm_server" and not self.vllm.url:
            raise ValueError("rollout.engine vllm_server needs rollout.vllm.url (where `groupwise serve-rollout` "
                             "listens, e.g. http://127.0.0.1:8471)")
        return self


class EnvironmentConfig(Section):
    name: str | None = Field(None, description="A built-in environment: python_tool (arithmetic with a sandboxed "
                             "python tool) or code_feedback (write code, read the failing tests, revise); "
                             "docs/environments.md.")
    path: str | None = Field(None, description="Your environment class as file.py:Class or module:Class: step "
                             "style (reset/step) or tool style (reset and tool methods, as TRL's "
                             "environment_factory).")
    params: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments of the environment's "
                                   "constructor.")
    max_turns: int = Field(3, ge=1, description="Assistant turns per episode at most.")

    @property
    def enabled(self) -> bool:
        return self.name is not None or self.path is not None

    @field_validator("path")
    @classmethod
    def _absolute_environment_file(cls, path: str | None) -> str | None:
        return None if path is None else resolve_reward_name(path)

    @model_validator(mode="after")
    def _one_source(self) -> EnvironmentConfig:
        if self.name is not None and self.path is not None:
            raise ValueError("environment: give a built-in `name` or your class's `path`, not both")
        return self


class TrainConfig(Section):
    bf16: Literal["auto"] | bool = Field("auto", description="bf16 autocast for the training forward/backward "
                                         "(fp32 weights and optimizer); auto: where the device computes it fast.")
    steps: int = Field(20, ge=1, description="Training steps (one rollout batch each).")
    learning_rate: float = Field(5e-5, gt=0, description="AdamW learning rate.")
    optimizer: Literal["adamw", "adamw_8bit"] = Field(
        "adamw", description="adamw: torch's AdamW (two moments in the weights' dtype: 8 bytes per parameter in "
        "float32); adamw_8bit: torchao's 8-bit AdamW (2 bytes per parameter; bf16 weights are updated with "
        "stochastic rounding); needs torchao (scripts/setup.sh --lowbit). docs/memory.md.")
    optimizer_offload: bool = Field(
        False, description="Step float32 master copies of the trained weights in CPU memory, with the optimizer's "
        "state: the device keeps only the weights and gradients. With model.dtype bfloat16, this is bf16 weights "
        "with float32 master weights and optimizer state. Nothing changes for float32 weights on a CPU.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    warmup_steps: int = Field(0, ge=0, description="Linear warm-up steps.")
    schedule: Literal["constant", "cosine"] = Field("constant", description="Schedule after warm-up.")
    max_grad_norm: float = Field(1.0, gt=0, description="Gradient clipping norm.")
    micro_batch_size: int = Field(16, ge=1, description="Completions per forward/backward pass; lowered to the "
                                  "largest that divides a mini-batch (the gradient is the same, only memory and "
                                  "speed change).")
    logprob_chunk: int = Field(256, ge=1, description="Rows (tokens) per chunk of the memory-safe log-softmax.")
    seed: int = Field(0, description="Seed for sampling and initialisation.")
    threads: int | None = Field(None, ge=1, description="torch CPU threads (default: all cores).")
    save_every: int = Field(0, ge=0, description="Checkpoint every N steps (0: only at the end).")
    save_every_minutes: float = Field(10.0, ge=0, description="Also checkpoint when this many minutes have "
                                      "passed since the last checkpoint (or the start); 0: off.")
    keep_checkpoints: int = Field(2, ge=1, description="Checkpoints kept.")
    max_nonfinite: int = Field(3, ge=1, description="Stop after this many non-finite updates in a row.")


class EvalConfig(Section):
    before_after: bool = Field(False, description="Evaluate the base and the trained model on the held-out set.")
    num_problems: int = Field(200, ge=1, description="Held-out problems per evaluation.")
    samples: int = Field(4, ge=0, description="Sampled completions per problem for the mean reward (0: greedy only).")
    every: int = Field(0, ge=0, description="Evaluate greedy accuracy every N steps (0: never during training).")
    batch_size: int = Field(64, ge=1, description="Prompts generated at once in evaluation.")


class LogConfig(Section):
    tensorboard: bool = Field(False, description="Also write TensorBoard event files.")
    report_to: list[Literal["tensorboard", "wandb", "mlflow"]] = Field(
        default_factory=list, description="Experiment trackers that also get each step's metrics (wandb, mlflow: "
        "pip extras groupwise[wandb] / groupwise[mlflow]).")
    project: str = Field("groupwise", description="wandb project / MLflow experiment name.")
    tracking_uri: str | None = Field(None, description="MLflow tracking URI (default: MLflow's own, "
                                     "MLFLOW_TRACKING_URI).")
    samples_per_step: int = Field(2, ge=0, description="Groups written to samples.jsonl each step.")
    progress: bool = Field(True, description="Show a rich progress bar.")
    learnable_warn_below: float = Field(0.1, ge=0, le=1, description="Warn when the learnable fraction stays "
                                        "below this ...")
    learnable_warn_steps: int = Field(5, ge=1, description="... for this many steps in a row.")


class Config(Section):
    model: ModelConfig = Field(default_factory=ModelConfig)
    lora: LoraConfig = Field(default_factory=LoraConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    rewards: RewardsConfig = Field(default_factory=RewardsConfig)
    sandbox: SandboxConfig = Field(default_factory=SandboxConfig)
    algorithm: AlgorithmConfig = Field(default_factory=AlgorithmConfig)
    rollout: RolloutConfig = Field(default_factory=RolloutConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    log: LogConfig = Field(default_factory=LogConfig)
    environment: EnvironmentConfig = Field(default_factory=EnvironmentConfig, description="Multi-turn episodes "
                                           "and tools (docs/environments.md); off unless name or path is set.")
    _notes: list[str] = PrivateAttr(default_factory=list)  # what validation adjusted, shown once by the CLI
    _path_rules: dict[str, str] = PrivateAttr(default_factory=dict)  # path key -> where its relative path started

    @property
    def notes(self) -> list[str]:
        return self._notes

    @property
    def path_rules(self) -> dict[str, str]:
        """How each path that was written relative became absolute (config/paths.py), for error messages."""
        return self._path_rules

    def __eq__(self, other: object) -> bool:
        """Configs with the same values are equal, however their notes and path rules came about."""
        return isinstance(other, Config) and self.model_dump() == other.model_dump()

    @model_validator(mode="after")
    def _check_combinations(self) -> Config:
        completions = self.rollout.prompts_per_step * self.rollout.group_size
        if completions % self.algorithm.mini_batches:
            raise ValueError(f"algorithm.mini_batches ({self.algorithm.mini_batches}) must divide the "
                             f"{completions} completions per step (rollout.prompts_per_step x group_size)")
        wanted, per_update = self.train.micro_batch_size, completions // self.algorithm.mini_batches
        micro = effective_micro_batch(wanted, per_update)
        if micro != wanted:
            self.train.micro_batch_size = micro
            where = "per step" if per_update == completions else "of a mini-batch"
            self._notes.append(f"train.micro_batch_size {wanted} -> {micro}: the largest that divides the "
                               f"{per_update} completions {where}")
        if self.data.task is None and self.data.path is None:
            raise ValueError("data needs a built-in `task` or a `path`")
        budget = "max_episode_tokens" if self.environment.enabled else "max_new_tokens"  # what the penalty measures
        if self.algorithm.soft_overlong and self.algorithm.overlong_cache >= getattr(self.rollout, budget):
            raise ValueError(f"algorithm.overlong_cache {self.algorithm.overlong_cache} must be smaller than "
                             f"rollout.{budget} {getattr(self.rollout, budget)}")
        if self.algorithm.dual_clip is not None and self.algorithm.loss != "clip":
            raise ValueError(f"algorithm.dual_clip applies to the clip loss only, not to '{self.algorithm.loss}' "
                             "(set algorithm.dual_clip to null or algorithm.loss to clip)")
        if self.rewards.functions == [] and not self.environment.enabled:
            raise ValueError("rewards.functions is empty: give at least one reward function (or an environment "
                             "that rewards its episodes)")
        self._check_async()
        if self.rewards.functions is None and self.data.task == "rust-functions":
            RewardsConfig.model_validate({**self.rewards.model_dump(), "functions": [
                {"name": "code_tests", "params": {"language": "rust"}}]})  # the task's reward: same check
        return self

    def _check_async(self) -> None:
        """What asynchronous rollouts need: importance sampling on unless set, no filter fed by the trainer."""
        if not self.rollout.max_staleness:
            return
        if self.data.difficulty_filter is not None:
            raise ValueError("data.difficulty_filter learns from each step's rewards, which a producer running "
                             "ahead has not seen: use rollout.max_staleness 0 with it, or drop the filter")
        if self.eval.every and self.rollout.engine in ("vllm", "vllm_server"):
            raise ValueError(f"eval.every with rollout.engine {self.rollout.engine} and rollout.max_staleness > 0 "
                             "would share one vLLM engine between the producer and the evaluation: set eval.every "
                             "to 0 (the before/after evaluation still runs)")
        if "importance_sampling" not in self.algorithm.model_fields_set:
            self.algorithm.importance_sampling = "token"
            self._notes.append("rollout.max_staleness > 0: algorithm.importance_sampling off -> token (batches are "
                               "sampled from older weights, which truncated importance weights correct; "
                               "docs/async.md)")

    @classmethod
    def from_yaml(cls, path: str | Any, overrides: list[str] | tuple[str, ...] = ()) -> Config:
        """Schema defaults, then the YAML file at `path`, then `overrides` (as --set), then the preset."""
        from groupwise.config.load import build_config

        return build_config(path, overrides)

    def override(self, overrides: list[str] | tuple[str, ...]) -> Config:
        """A new Config with `section.key=value` overrides (as --set); setting algorithm.preset re-applies it."""
        from groupwise.config.load import override_config

        return override_config(self, overrides)

def effective_micro_batch(wanted: int, completions: int) -> int:
    """The largest micro-batch size <= `wanted` that divides `completions` (exact gradient accumulation)."""
    return max(d for d in range(1, min(wanted, completions) + 1) if completions % d == 0)
