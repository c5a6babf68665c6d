"""`groupwise report RUN_DIR`: PNG plots of a run's metrics and one self-contained report.html.

The page embeds the plots as base64 data URIs, the run's config.yaml, its summary.json (if any) and
sample completions from early, middle and late steps (samples.jsonl), so it can be mailed as one file.
"""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from groupwise.errors import GroupwiseError
from groupwise.report.episodes import episodes_html
from groupwise.runtime.jsonl import read_jsonl
from groupwise.train.metrics import read_metrics

Record = dict[str, Any]


@dataclass(frozen=True)
class Panel:
    """One plot: a file slug, a title, and which metric keys it draws."""

    slug: str
    title: str
    keys: Callable[[list[str]], list[str]]


def _exact(*names: str) -> Callable[[list[str]], list[str]]:
    return lambda available: [n for n in names if n in available]


def _reward_keys(available: list[str]) -> list[str]:
    per_function = sorted(k for k in available if k.startswith("reward/") and k.endswith("/mean")
                          and k != "reward/mean")
    return [k for k in ("reward/mean",) if k in available] + per_function


def _gaming_keys(available: list[str]) -> list[str]:
    return sorted(k for k in available if k.startswith("reward/") and k.endswith(("/tests_not_run", "/limit_hit")))


def _only_async(*names: str) -> Callable[[list[str]], list[str]]:
    """`names` for a run with a rollout producer (rollout.max_staleness > 0), none for a synchronous one."""
    return lambda available: [n for n in names if n in available] if "rollout/staleness" in available else []


PANELS = [
    Panel("rewards", "Reward (total and per function)", _reward_keys),
    Panel("learnable", "Learnable fraction and success rate", _exact("learnable_fraction", "success_rate")),
    Panel("kl", "KL to the reference", _exact("kl")),
    Panel("kl_max", "Largest per-token KL and |log pi_ref - log pi|", _exact("kl_max", "ref_log_ratio_max")),
    Panel("mismatch", "Sampler vs trainer: |log pi_train - log pi_sampler|, share over the IS cap",
          _exact("sampler_gap_max", "sampler_gap_mean", "is_would_cap_frac")),
    Panel("entropy", "Entropy (nats per token)", _exact("entropy")),
    Panel("lengths", "Completion length (tokens)", _exact("completion_len/mean", "completion_len/max")),
    Panel("truncation", "Truncated fraction", _exact("truncated_fraction")),
    Panel("clipping", "Clip fractions", _exact("clip_frac_low", "clip_frac_high", "clip_frac_dual")),
    Panel("heldout", "Held-out greedy accuracy", _exact("eval/greedy_accuracy")),
    Panel("difficulty", "Prompts skipped by the difficulty filter", _exact("difficulty/skipped")),
    Panel("code_tests", "Code samples that ended before their tests ran, or hit a sandbox limit", _gaming_keys),
    Panel("environment", "Episodes: turns and tool calls per episode, bad tool calls, truncated share",
          _exact("env/turns_mean", "env/tool_calls_mean", "env/tool_errors", "env/truncated_frac")),
    Panel("async", "Seconds: the trainer's step, producer busy and waiting, trainer waiting",
          _only_async("step_s", "async/producer_busy_s", "async/producer_idle_s", "async/trainer_idle_s")),
    Panel("staleness", "Batch age in updates, mean importance weight, share capped or masked",
          _only_async("rollout/staleness", "is_weight_mean", "is_frac_capped")),
]


def series(metrics: list[Record], key: str) -> tuple[list[int], list[float]]:
    """(steps, values) of one metric, skipping steps where it is missing or not finite."""
    steps, values = [], []
    for record in metrics:
        value = record.get(key)
        if isinstance(value, int | float) and math.isfinite(value):
            steps.append(int(record["step"]))
            values.append(float(value))
    return steps, values


def plot_panel(panel: Panel, metrics: list[Record], keys: list[str], path: Path) -> bool:
    """Draw one panel to `path` (PNG); False when none of its metrics has a value."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    drawn = [(key, *series(metrics, key)) for key in keys]
    drawn = [d for d in drawn if d[1]]
    if not drawn:
        return False
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=100)
    for key, steps, values in drawn:
        marker = "o" if len(steps) <= 30 else None
        ax.plot(steps, values, marker=marker, markersize=3, linewidth=1.4, label=key)
    ax.set_title(panel.title)
    ax.set_xlabel("step")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    if len(drawn) > 1:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
    return True


def plot_all(metrics: list[Record], out: Path) -> list[tuple[Panel, Path]]:
    """Every panel that has data, as out/<slug>.png."""
    available = sorted({k for record in metrics for k in record})
    made = []
    for panel in PANELS:
        path = out / f"{panel.slug}.png"
        if plot_panel(panel, metrics, panel.keys(available), path):
            made.append((panel, path))
    return made


def pick_sample_steps(samples: list[Record]) -> dict[str, int]:
    """The early, middle and late step that have samples (fewer when the run has fewer steps)."""
    steps = sorted({int(s["step"]) for s in samples})
    if not steps:
        return {}
    picks = {"early": steps[0], "middle": steps[len(steps) // 2], "late": steps[-1]}
    out: dict[str, int] = {}
    for label, step in picks.items():
        if step not in out.values():
            out[label] = step
    return out


def _esc(value: Any) -> str:
    return html.escape(value if isinstance(value, str) else json.dumps(value, default=str))


def _samples_html(samples: list[Record], groups: int = 2, completions: int = 4) -> str:
    parts = []
    for label, step in pick_sample_steps(samples).items():
        parts.append(f"<h3>{label} (step {step})</h3>")
        for group in [s for s in samples if int(s["step"]) == step][:groups]:
            items = []
            rewards, truncated = group.get("rewards", []), group.get("truncated", [])
            per_function = group.get("reward_per_function", {})
            for i, text in enumerate(group.get("completions", [])[:completions]):
                reward = rewards[i] if i < len(rewards) else None
                cut = " (truncated)" if i < len(truncated) and truncated[i] else ""
                each = ", ".join(f"{name} {_esc(v[i])}" for name, v in per_function.items() if i < len(v))
                items.append(f"<li><span class='reward'>reward {_esc(reward)}{f' ({each})' if each else ''}"
                             f"{cut}</span><pre>{_esc(text)}</pre></li>")
            parts.append(f"<div class='group'>{_gold_html(group)}<ol>{''.join(items)}</ol></div>")
    return "\n".join(parts) or "<p>no samples.jsonl in this run</p>"


def _gold_html(group: Record) -> str:
    """What the model saw (the rendered prompt when logged) and what it was scored against."""
    seen = group.get("rendered_prompt") or group.get("prompt")
    gold = (f"<b>tests:</b><pre>{_esc(chr(10).join(map(str, group['tests'])))}</pre>" if group.get("tests")
            else f"<b>answer:</b> {_esc(group.get('answer'))}")
    return f"<p><b>prompt:</b></p><pre>{_esc(seen)}</pre><p>{gold}</p>"


def _summary_html(run_dir: Path) -> str:
    path = run_dir / "summary.json"
    if not path.is_file():
        return ""
    summary = json.loads(path.read_text())
    rows = []
    for label in ("base", "trained"):
        if isinstance(summary.get(label), dict):
            acc = summary[label].get("greedy_accuracy")
            rows.append(f"<tr><td>{label}</td><td>{'-' if acc is None else f'{100 * acc:.1f}%'}</td></tr>")
    table = (f"<table><tr><th>model</th><th>held-out greedy accuracy</th></tr>{''.join(rows)}</table>"
             if rows else "")
    return f"<h2>Summary</h2>{table}<pre>{_esc(json.dumps(summary, indent=2))}</pre>"


STYLE = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
.plots{display:flex;flex-wrap:wrap;gap:12px}.plots figure{margin:0}
.plots img{width:520px;border:1px solid #ddd}
pre{background:#f6f6f6;padding:8px;white-space:pre-wrap;overflow-x:auto}
.group{border-left:3px solid #88a;padding-left:10px;margin-bottom:1em}.reward{color:#555;font-size:90%}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 10px}
.turn{margin-left:1em}.turn.assistant pre{background:#eef4ff}.turn.tool pre{background:#f3f3e6}"""

# Marks <body data-images-loaded="N"> once every image has decoded (naturalWidth > 0): a check for tests.
LOADED_SCRIPT = """window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.length > 0 && imgs.every(function (i) { return i.complete && i.naturalWidth > 0; });
  if (ok) { document.body.setAttribute('data-images-loaded', String(imgs.length)); }
});"""


def data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def render_html(run_dir: Path, plots: list[tuple[Panel, Path]], metrics: list[Record]) -> str:
    """The whole page as one string: no external file, script or style is referenced."""
    config = run_dir / "config.yaml"
    figures = "".join(f"<figure><img alt='{_esc(p.title)}' src='{data_uri(path)}'></figure>"
                      for p, path in plots)
    last = metrics[-1]["step"] if metrics else 0
    samples = read_jsonl(run_dir / "samples.jsonl")
    episodes = episodes_html(samples)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>groupwise report: {_esc(run_dir.name)}</title>
<style>{STYLE}</style></head>
<body>
<h1>Run report: {_esc(run_dir.name)}</h1>
<p>{len(metrics)} logged steps (last step {last}).</p>
{_summary_html(run_dir)}
<h2>Metrics</h2><div class="plots">{figures}</div>
<h2>Sample completions</h2>{_samples_html(samples)}
{f"<h2>Episodes (one per step)</h2>{episodes}" if episodes else ""}
<h2>Config</h2><pre>{_esc(config.read_text()) if config.is_file() else 'no config.yaml'}</pre>
<script>{LOADED_SCRIPT}</script>
</body></html>
"""


def build_report(run_dir: Path, out: Path | None = None) -> Path:
    """Write the PNGs and report.html into `out` (default run_dir/report); returns the page's path."""
    run_dir = Path(run_dir)
    metrics = read_metrics(run_dir)
    if not metrics:
        raise GroupwiseError(f"'{run_dir}' has no metrics.jsonl (or it is empty)",
                             "give a run folder written by groupwise train")
    out = Path(out) if out else run_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    plots = plot_all(metrics, out)
    page = out / "report.html"
    page.write_text(render_html(run_dir, plots, metrics))
    return page
