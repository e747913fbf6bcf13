"""The report's training curves: a preference run's reward accuracy is drawn beside the token accuracy."""

from __future__ import annotations

from tunesmith.curves import plot
from tunesmith.runfiles import LogRow
from tunesmith.train import summarize


def test_a_preference_run_draws_its_reward_accuracy():
    rows = [LogRow(0, 0, eval_loss=0.69, eval_rewards_accuracies=0.0),
            LogRow(2, 0.5, loss=0.6, learning_rate=1e-4, mean_token_accuracy=0.5, rewards_accuracies=0.6),
            LogRow(4, 1, loss=0.4, learning_rate=5e-5, mean_token_accuracy=0.55, rewards_accuracies=0.9),
            LogRow(4, 1, eval_loss=0.45, eval_rewards_accuracies=0.8)]
    training = summarize(rows, steps_per_epoch=4, planned_steps=4)
    sft, pref = plot(rows, training), plot(rows, training, preference=True)
    assert sft.startswith(b"\x89PNG") and pref.startswith(b"\x89PNG")
    assert sft != pref  # the reward-accuracy lines and the preference titles are drawn
