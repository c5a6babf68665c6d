"""Compare's report page (issue 28): the experiment's name as its title, whole plot titles, whole-number step
ticks, and a warning when fewer than 50 held-out problems back the comparison."""

from __future__ import annotations

import html

import matplotlib

from groupwise.compare.grid_report import build_compare_report, curves_figure, few_problems_warning
from groupwise.compare.results import build_results


def cell(greedy, correct, seed=0, variant="v", steps=10):
    curve = {"step": list(range(1, steps + 1)), "reward/mean": [s / steps for s in range(steps)]}
    return {"variant": variant, "seed": seed, "problems": ["p1", "p2"], "greedy_correct": greedy, "n": [4, 4],
            "correct": correct, "mean_reward": [c / 4 for c in correct], "train_minutes": 1.0,
            "rollout_tokens": 100, "curve": curve}


def test_the_page_is_titled_by_the_experiment_and_warns_about_few_problems(tmp_path):
    cells = {"grpo": [cell([1, 0], [2, 0])], "a_much_longer_variant_name": [cell([1, 1], [4, 0])]}
    results = build_results(cell([0, 0], [0, 1], seed=None, variant="base"), cells, baseline="grpo", ks=[1],
                            samples=4, replicates=200, seeds=[0])
    (tmp_path / "out").mkdir()
    page = build_compare_report(tmp_path / "out", results, cells, title="hard_examples").read_text()
    assert "<title>groupwise compare: hard_examples</title>" in page and "<h1>hard_examples</h1>" in page
    assert "Comparison: out" not in page
    assert f"<p class='warning'>{html.escape(few_problems_warning(2))}</p>" in page
    assert few_problems_warning(2).startswith("warning: only 2 held-out problems: ")
    assert few_problems_warning(50) is None


def test_training_curves_keep_their_whole_title_and_whole_step_ticks():
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = {"grpo": [cell([1, 0], [2, 0], steps=5)], "f_grpo": [cell([1, 1], [4, 0], steps=5)]}
    figure = curves_figure(plt, cells, "reward/mean")
    try:
        figure.canvas.draw()
        ax = figure.axes[0]
        title = ax.title.get_window_extent()
        assert 0 <= title.x0 and title.x1 <= figure.bbox.width  # nothing cut at the figure's edges
        assert ax.get_title().replace("\n", " ") == ("Training reward/mean: mean over seeds, band from lowest to "
                                                     "highest")
        low, high = ax.get_xlim()
        ticks = [t for t in ax.get_xticks() if low <= t <= high]
        assert ticks and all(float(t).is_integer() for t in ticks), ticks  # steps 1..5, not 1.5, 2.5, ...
    finally:
        plt.close(figure)
