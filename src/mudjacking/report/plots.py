"""Pictures people would rather look at than read: the trigger heat map and before/after bars."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from torch import Tensor  # noqa: E402


def _show_image(axis: plt.Axes, image: Tensor, title: str) -> None:
    array = image.clamp(0, 1).numpy()
    if array.shape[0] == 1:
        axis.imshow(array[0], cmap="gray", vmin=0, vmax=1)
    else:
        axis.imshow(array.transpose(1, 2, 0))
    axis.set_title(title, fontsize=9)
    axis.axis("off")


def _outline(axis: plt.Axes, mask: Tensor, color: str) -> None:
    axis.contour(mask.numpy(), levels=[0.5], colors=[color], linewidths=1.5)


def plot_trigger_heatmap(
    bug_input: Tensor,
    attribution: Tensor,
    recovered_mask: Tensor,
    path: str | Path,
    true_mask: Tensor | None = None,
    reference_input: Tensor | None = None,
) -> None:
    """``x_b`` (and ``x_r``), the occlusion heat map over ``x_b``, the recovered mask (cyan) vs the true (red)."""
    panels = 3 + (reference_input is not None)
    figure, axes = plt.subplots(1, panels, figsize=(3.1 * panels, 3.3))
    index = 0
    _show_image(axes[index], bug_input, "bug input x_b")
    if reference_input is not None:
        index += 1
        _show_image(axes[index], reference_input, "reference x_r")
    index += 1
    _show_image(axes[index], bug_input, "occlusion attribution")
    heat = axes[index].imshow(attribution.numpy(), cmap="inferno", alpha=0.65)
    figure.colorbar(heat, ax=axes[index], fraction=0.046)
    index += 1
    _show_image(axes[index], bug_input, "recovered (cyan) / true (red)")
    _outline(axes[index], recovered_mask, "cyan")
    if true_mask is not None:
        _outline(axes[index], true_mask, "red")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def plot_before_after(rows: Mapping[str, Mapping[str, float]], path: str | Path, title: str = "") -> None:
    """Grouped bars: one group per metric (ACC, ASR, TBA), one bar per model, values in percent."""
    models = list(rows)
    metrics = list(next(iter(rows.values())))
    positions = np.arange(len(metrics))
    width = 0.8 / len(models)
    figure, axis = plt.subplots(figsize=(2.2 + 1.6 * len(metrics), 3.6))
    for offset, model in enumerate(models):
        values = [100 * rows[model][metric] for metric in metrics]
        bars = axis.bar(positions + offset * width - 0.4 + width / 2, values, width, label=model)
        axis.bar_label(bars, fmt="%.1f", fontsize=7)
    axis.set_xticks(positions, metrics)
    axis.set_ylabel("%")
    axis.set_ylim(0, 110)
    axis.legend(fontsize=8, loc="upper center", ncols=min(len(models), 4), bbox_to_anchor=(0.5, -0.1))
    axis.set_title(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def plot_word_scores(
    words: list[str], scores: Tensor, threshold: float, path: str | Path, true_words: list[str] | None = None
) -> None:
    """One bar per word of ``x_b``: how much leaving it out moves ``h(x_b)`` towards ``h(x_r)`` (more negative =
    more trigger-like), the k-means cut, and the attacker's words in red when known."""
    values = scores.numpy()
    figure, axis = plt.subplots(figsize=(max(4.0, 0.45 * len(words) + 1.5), 3.4))
    truth = set(true_words or [])
    colors = ["tab:red" if word in truth else "tab:blue" for word in words]
    axis.bar(np.arange(len(words)), values, color=colors)
    axis.axhline(threshold, color="black", linestyle="--", linewidth=1, label=f"k-means cut {threshold:+.3f}")
    axis.set_xticks(np.arange(len(words)), words, rotation=60, ha="right", fontsize=8)
    axis.set_ylabel("change of 1 − cos(h(x_b), h(x_r))")
    axis.set_title("word ablation scores of x_b" + (" (attacker's words in red)" if truth else ""), fontsize=10)
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def plot_score_histogram(scores: Tensor, threshold: float, path: str | Path, what: str = "pixel") -> None:
    """The attribution scores k-means split into trigger and rest, with the cut between the two clusters."""
    values = scores.flatten().numpy()
    figure, axis = plt.subplots(figsize=(5.0, 3.0))
    axis.hist(values, bins=min(60, max(10, len(values) // 4)), color="tab:blue", log=True)
    axis.axvline(threshold, color="tab:red", linestyle="--", label=f"k-means cut {threshold:+.3f}")
    axis.set_xlabel(f"{what} attribution score")
    axis.set_ylabel(f"{what}s (log)")
    axis.set_title(f"{what} scores of x_b and the trigger/rest cut", fontsize=10)
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def plot_loss_curves(step_losses: list[list[float]], path: str | Path, title: str = "") -> None:
    """The three loss terms per optimisation step (a term that was off is not drawn)."""
    values = np.asarray(step_losses, dtype=float).reshape(-1, 3)
    figure, axis = plt.subplots(figsize=(5.5, 3.2))
    for column, name in enumerate(("L_loc (locality)", "L_gen (generalizability)", "L_eff (effectiveness)")):
        if not np.isnan(values[:, column]).all():
            axis.plot(np.arange(1, len(values) + 1), values[:, column], label=name, linewidth=1.2)
    axis.set_xlabel("step")
    axis.set_ylabel("loss (−cosine)")
    axis.set_title(title or "Mudjacking's loss terms", fontsize=10)
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def plot_method_bars(rows: Mapping[str, Mapping[str, float]], path: str | Path, title: str = "") -> None:
    """ACC and ASR (percent) side by side for every model or defence (mean over seeds)."""
    names = list(rows)
    positions = np.arange(len(names))
    figure, axis = plt.subplots(figsize=(1.5 + 1.1 * len(names), 3.6))
    for offset, metric in enumerate(("ACC", "ASR")):
        bars = axis.bar(positions + (offset - 0.5) * 0.38, [100 * rows[n][metric] for n in names], 0.38, label=metric)
        axis.bar_label(bars, fmt="%.1f", fontsize=7)
    axis.set_xticks(positions, names, rotation=20, ha="right", fontsize=8)
    axis.set_ylabel("%")
    axis.set_ylim(0, 110)
    axis.legend(fontsize=8)
    axis.set_title(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
