"""The report's training curves (report_curves.png): loss, learning rate and accuracy against optimizer step,
the kept checkpoint marked. A preference run's loss is its objective's, and its accuracy panel adds TRL's reward
accuracy (the share of pairs whose chosen answer got the higher reward). A grpo run's third panel is the reward of
the answers it wrote, in training and held out (its loss says nothing of the answers)."""

from __future__ import annotations

import io

from tunesmith.runfiles import LogRow
from tunesmith.train import TrainingSummary

SFT = (("loss", "train loss", 0), ("eval_loss", "eval loss", 0), ("learning_rate", "learning rate", 1),
       ("mean_token_accuracy", "train", 2), ("eval_mean_token_accuracy", "eval", 2))
PREFERENCE = (("rewards_accuracies", "reward accuracy, train", 2), ("eval_rewards_accuracies", "reward accuracy, eval", 2))
GRPO = (("loss", "train loss", 0), ("learning_rate", "learning rate", 1), ("reward", "answers written in training", 2),
        ("eval_reward", "answers to the held-out prompts", 2))


def plot(rows: list[LogRow], training: TrainingSummary, *, preference: bool = False) -> bytes:
    """Three panels against optimizer step; PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")  # no display on the machines this runs on
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), dpi=100)
    grpo = training.best_eval_reward is not None
    for key, label, panel in GRPO if grpo else SFT + (PREFERENCE if preference else ()):
        pts = [(r.step, getattr(r, key)) for r in rows if getattr(r, key) is not None]
        if pts:
            axes[panel].plot(*zip(*pts), "o-" if key.startswith("eval") else "-", label=label, markersize=4)
    axes[0].axvline(training.best_step, color="green", linestyle="--", alpha=0.7,
                    label=f"kept: step {training.best_step}")
    titles = ("preference loss (the objective's)" if preference else "loss on supervised tokens", "learning rate",
              "token and reward accuracy" if preference else "token accuracy (supervised)")
    if grpo:
        titles = ("grpo loss (the objective's)", "learning rate", "reward (mean of the answers, summed rewards)")
    for ax, title in zip(axes, titles):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("optimizer step")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()
