"""DIR/report.html of `groupwise compare`: the results table with intervals, pass@k curves with bands and
training curves (mean over seeds, band from the lowest to the highest seed), PNGs embedded as data URIs."""

from __future__ import annotations

import html
import json
import math
import textwrap
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from groupwise.evaluate.heldout_eval import few_problems_warning as heldout_warning
from groupwise.report.run_report import LOADED_SCRIPT, STYLE, data_uri

CellResult = dict[str, Any]
FEW_PROBLEMS = 50  # below this, the intervals over problems are too wide to rank variants
TITLE_CHARS = 60  # a line of a plot's title that fits the 6.4-inch figure at the default font size


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def fmt(metric: str, value: float | None, difference: bool = False, units: bool = True) -> str:
    """Rates as percent (a difference in points), minutes with one decimal, tokens as 950, 1.6k, 25k or 1.20M;
    `units=False` leaves out the % and pts of rates (a table that says its unit once)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    sign = "+" if difference and value > 0 else ""
    if metric == "train_minutes":
        return f"{sign}{value:.1f}"
    if metric == "rollout_tokens":
        size = abs(value)
        text = (f"{value / 1e6:.2f}M" if size >= 1e6 else f"{value / 1e3:.0f}k" if size >= 1e4
                else f"{value / 1e3:.1f}k" if size >= 1e3 else f"{value:.0f}")
        return sign + text
    if metric == "mean_reward":
        return f"{sign}{value:.3f}"
    unit = (" pts" if difference else "%") if units else ""
    return f"{sign}{100 * value:.1f}{unit}"


def formatted(metric: str, entry: dict[str, Any], difference: bool = False, units: bool = True
              ) -> tuple[str, str, str]:
    """(mean, low, high) of one results.json entry, each as `fmt` writes it."""
    low, high = entry["ci95"]
    return (fmt(metric, entry["mean"], difference, units), fmt(metric, low, difference, units),
            fmt(metric, high, difference, units))


def cell_text(metric: str, entry: dict[str, Any] | None, difference: bool = False) -> str:
    if not entry:
        return "-"
    mean, lo, hi = formatted(metric, entry, difference)
    return f"{mean} <span class='ci'>[{lo}, {hi}]</span>"


def result_metrics(results: dict[str, Any]) -> list[str]:
    """The metric names of results.json's variants, in its order."""
    return list(next(iter(results["variants"].values())))


def table_html(rows: dict[str, dict[str, Any]], metrics: list[str], difference: bool = False) -> str:
    head = "".join(f"<th>{html.escape(m)}</th>" for m in metrics)
    body = []
    for name, entries in rows.items():
        cells = "".join(f"<td>{cell_text(m, entries.get(m), difference)}</td>" for m in metrics)
        body.append(f"<tr><td>{html.escape(name)}</td>{cells}</tr>")
    return f"<table><tr><th>variant</th>{head}</tr>{''.join(body)}</table>"


HEADINGS = {"greedy_accuracy": "greedy", "mean_reward": "mean reward", "train_minutes": "training min",
            "rollout_tokens": "rollout tokens"}


def table_markdown(results: dict[str, Any]) -> str:
    """results.md: base, variants and paired differences as one Markdown table, each value with its interval."""
    metrics = result_metrics(results)
    rows = {"base model": (results["base"], False)} | {f"`{n}`": (e, False) for n, e in results["variants"].items()}
    rows |= {f"`{n}` - `{results['baseline']}`": (e, True) for n, e in results["differences"].items()}
    lines = [f"{results['problems']} held-out problems, seeds {results['seeds']}, {results['samples']} samples a "
             "problem for pass@k. Mean over seeds [95% bootstrap interval over seeds and problems]; rates in "
             f"percent, the rows after the variants are paired differences to `{results['baseline']}` in points.",
             "", "| variant | " + " | ".join(HEADINGS.get(m, m) for m in metrics) + " |",
             "|---|" + "---:|" * len(metrics)]
    for name, (entries, difference) in rows.items():
        values = ["{} [{}, {}]".format(*formatted(m, entries[m], difference, units=False)) if entries.get(m)
                  else "-" for m in metrics]
        lines.append(f"| {name} | " + " | ".join(values) + " |")
    return "\n".join(lines) + "\n"


def plot_passk(results: dict[str, Any], path: Path) -> bool:
    """pass@k against k (log scale), one line per row with its 95% band; False without pass@k."""
    rows = {"base": results["base"]} | results["variants"]
    ks = sorted({int(m[5:]) for entries in rows.values() for m in entries if m.startswith("pass@")})
    if not ks:
        return False
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    for name, entries in rows.items():
        got = [(k, entries[f"pass@{k}"]) for k in ks if (entries.get(f"pass@{k}") or {}).get("mean") is not None]
        if not got:
            continue
        xs = [k for k, _ in got]
        ax.plot(xs, [e["mean"] for _, e in got], marker="o", linestyle="--" if name == "base" else "-", label=name)
        ax.fill_between(xs, [e["ci95"][0] for _, e in got], [e["ci95"][1] for _, e in got], alpha=0.2)
    ax.set_xscale("log", base=2)
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.set(title=whole_title("pass@k on the held-out problems (band: 95% bootstrap interval)"), xlabel="k",
           ylabel="pass@k")
    _save_with_legend(plt, fig, ax, path)
    return True



def _save_with_legend(plt: Any, fig: Any, ax: Any, path: Path) -> None:
    """Grid, legend, tight layout, written as PNG to `path`; the figure is closed."""
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)

def plot_scores(results: dict[str, Any], path: Path) -> bool:
    """Greedy accuracy of each row with its 95% interval as error bars."""
    rows = {"base": results["base"]} | results["variants"]
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=100)
    names = list(rows)
    entries = [rows[n]["greedy_accuracy"] for n in names]
    means = [_or(e["mean"], 0.0) for e in entries]
    lows = [m - _or(e["ci95"][0], m) for m, e in zip(means, entries, strict=True)]
    highs = [_or(e["ci95"][1], m) - m for m, e in zip(means, entries, strict=True)]
    ax.errorbar(range(len(names)), means, yerr=[lows, highs], fmt="o", capsize=4)
    ax.set_xticks(range(len(names)), names, rotation=20, fontsize=8)
    ax.set(title=whole_title("Held-out greedy accuracy (95% bootstrap interval)"), ylabel="greedy accuracy")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)
    return True


def _or(value: float | None, default: float) -> float:
    return default if value is None else value


def seed_band(curves: list[dict[str, list]], key: str) -> tuple[list[int], np.ndarray, np.ndarray, np.ndarray]:
    """(steps, mean, low, high) over seeds of one curve, on the steps every seed logged."""
    common = sorted(set.intersection(*[set(c["step"]) for c in curves])) if curves else []
    values = np.array([[_value(c, key, step) for step in common] for c in curves], dtype=float)
    if not common:
        return [], np.array([]), np.array([]), np.array([])
    with warnings.catch_warnings():  # a step where no seed has a value stays NaN, quietly
        warnings.simplefilter("ignore", RuntimeWarning)
        return common, np.nanmean(values, 0), np.nanmin(values, 0), np.nanmax(values, 0)


def _value(curve: dict[str, list], key: str, step: int) -> float:
    value = curve.get(key, [None] * len(curve["step"]))[curve["step"].index(step)]
    return math.nan if value is None else float(value)


def whole_title(text: str) -> str:
    """`text` broken into lines that fit the figure, so that no title is cut at its edges."""
    return textwrap.fill(text, TITLE_CHARS)


def plot_curves(cells: dict[str, list[CellResult]], path: Path, key: str = "reward/mean") -> bool:
    """Training `key` per step: the mean over seeds, the band from the lowest to the highest seed."""
    plt = _pyplot()
    fig = curves_figure(plt, cells, key)
    if fig is None:
        return False
    _save_with_legend(plt, fig, fig.axes[0], path)
    return True


def curves_figure(plt: Any, cells: dict[str, list[CellResult]], key: str) -> Any:
    """The figure of `plot_curves` (None when no cell logged `key`); steps are whole numbers on the axis."""
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    drawn = False
    for name, group in cells.items():
        steps, mean, low, high = seed_band([c["curve"] for c in group], key)
        if not steps or np.isnan(mean).all():
            continue
        ax.plot(steps, mean, label=name)
        ax.fill_between(steps, low, high, alpha=0.2)
        drawn = True
    if not drawn:
        plt.close(fig)
        return None
    ax.set(title=whole_title(f"Training {key}: mean over seeds, band from lowest to highest"), xlabel="step",
           ylabel=key)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    return fig


def few_problems_warning(problems: int) -> str | None:
    """A caveat when fewer than FEW_PROBLEMS held-out problems back the comparison."""
    return heldout_warning(problems, FEW_PROBLEMS, "eval.problems, and data.heldout_size or a larger held-out "
                           "file in the base config")


def build_compare_report(out: Path, results: dict[str, Any], cells: dict[str, list[CellResult]],
                         title: str | None = None) -> Path:
    """Write the PNGs and report.html into `out`; returns the page, titled with the experiment's name
    (`title`, default the folder's)."""
    plots = [(title, out / slug) for title, slug, made in (
        ("Greedy accuracy", "accuracy.png", plot_scores(results, out / "accuracy.png")),
        ("pass@k", "passk.png", plot_passk(results, out / "passk.png")),
        ("Training reward", "curves.png", plot_curves(cells, out / "curves.png")),
    ) if made]
    metrics = result_metrics(results)
    figures = "".join(f"<figure><img alt='{html.escape(t)}' src='{data_uri(p)}'></figure>" for t, p in plots)
    diff_title = f"Differences: variant minus {html.escape(results['baseline'])}, paired on seeds and problems"
    name = html.escape(title or out.name)
    warning = few_problems_warning(results["problems"])
    caveat = f"<p class='warning'>{html.escape(warning)}</p>" if warning else ""
    page = out / "report.html"
    page.write_text(f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>groupwise compare: {name}</title>
<style>{STYLE} .ci{{color:#777;font-size:85%}} .warning{{color:#a40}}</style></head>
<body>
<h1>{name}</h1>{caveat}
<p>{results['problems']} held-out problems, seeds {html.escape(json.dumps(results['seeds']))}, {results['samples']}
samples per problem for pass@k. Brackets: 95% bootstrap interval, resampling {results['bootstrap']['resamples']}
({results['bootstrap']['replicates']} replicates). The base model is evaluated once.</p>
<h2>Results</h2>{table_html({"base": results["base"]} | results["variants"], metrics)}
<h2>{diff_title}</h2>{table_html(results["differences"], metrics, difference=True)}
<h2>Plots</h2><div class="plots">{figures}</div>
<script>{LOADED_SCRIPT}</script>
</body></html>
""")
    return page
