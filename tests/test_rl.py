"""Lottery tickets in a PPO agent (lth rl): Stable-Baselines3's loop under find_tickets' API, masks through
SB3's training path, bit-identical resume, bad input. Skipped where the optional extra lth[rl] is missing."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from dataclasses import replace

import pytest
import torch

from lth.cli import main
from lth.config import EnvConfig, LotteryConfig, PpoConfig, PruneConfig, RlConfig
from lth.errors import ConfigError
from lth.fileio import load_weights
from lth.store import Unit

HAS_RL = all(importlib.util.find_spec(m) is not None for m in ("stable_baselines3", "gymnasium"))
needs_rl = pytest.mark.skipif(not HAS_RL, reason="the optional extra lth[rl] (stable-baselines3, gymnasium) is not "
                                                 "installed: pip install 'lth[rl]'")


def quiet(*_):
    pass


def tiny(tmp_path, **changes) -> RlConfig:
    """A few seconds of PPO on CartPole: rollouts of 2 x 64 steps, 5 rollouts, evaluations of 2 episodes."""
    cfg = RlConfig(env=EnvConfig(n_envs=2, eval_every="256it", eval_episodes=2),
                   agent=PpoConfig(budget="640it", n_steps=64, batch_size=64, n_epochs=2),
                   prune=PruneConfig(rate=0.5, output_rate=0.25),
                   lottery=LotteryConfig(levels=1, rewind="128it", controls=("reinit",)), out_dir=str(tmp_path))
    return replace(cfg, **changes)


def test_a_missing_extra_names_the_pip_command(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "stable_baselines3", None)  # import fails as if not installed
    assert main(["rl", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "lth[rl]" in err and "pip install 'lth[rl]'" in err
    assert not any(tmp_path.iterdir())  # refused before a run folder was made


def test_a_preset_of_another_experiment_is_refused(tmp_path, capsys):
    assert main(["run", "--preset", "ppo_cartpole", "--out", str(tmp_path)]) == 2
    assert "preset 'ppo_cartpole' is for `lth rl`" in capsys.readouterr().err


def test_rl_settings_are_checked_before_anything_runs():
    with pytest.raises(ConfigError, match="--agent.budget 1000it must be a multiple of the rollout .*= 256 steps"):
        RlConfig(agent=PpoConfig(budget="1000it")).check()
    with pytest.raises(ConfigError, match="--lottery.rewind 100it must be a multiple of the rollout"):
        RlConfig(lottery=LotteryConfig(rewind="100it")).check()
    with pytest.raises(ConfigError, match="--env.eval_every counts environment steps"):
        RlConfig(env=EnvConfig(eval_every="2ep")).check()


@needs_rl
def test_an_unknown_gymnasium_id_is_a_clear_error(tmp_path, capsys):
    assert main(["rl", "--env.id", "CartPol-v1", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "--env.id 'CartPol-v1' is not a registered Gymnasium environment" in err and "CartPole-v1" in err
    assert main(["rl", "--prune.exclude", "embed*", "--out", str(tmp_path)]) == 2
    assert "'embed*' matches no prunable weight" in capsys.readouterr().err


@needs_rl
def test_sb3_training_path_never_sees_a_pruned_weight(tmp_path):
    """SB3's PPO calls policy.evaluate_actions (not forward), clips the norm of all gradients and steps Adam:
    every minibatch must still see the pruned weights at exactly zero, and the result is a find_tickets run."""
    import lth
    from lth.experiments.rl import PolicyBuilder, PpoTraining

    cfg = tiny(tmp_path)
    seen = []

    def train_fn(policy, mask, loop):
        original = policy.evaluate_actions

        def checked(obs, actions):
            seen.append(max(float(policy.get_parameter(n).detach()[~mask[n]].abs().sum()) for n in mask))
            return original(obs, actions)

        policy.evaluate_actions = checked
        try:
            return PpoTraining(cfg)(policy, mask, loop)
        finally:
            del policy.evaluate_actions

    store = lth.find_tickets(PolicyBuilder(cfg), train_fn, name="ppo", prune=cfg.prune, lottery=cfg.lottery,
                             out_dir=str(tmp_path), log=quiet)
    assert len(seen) >= 10 and max(seen) == 0.0
    mask = lth.Mask.load(store.mask_path(0, 1))
    # Both heads are output layers (pruned at 25%), the hidden layers at 50%.
    kept = {n: mask[n].float().mean().item() for n in mask}
    assert kept["action_net.weight"] == pytest.approx(0.75, abs=0.01)
    assert kept["value_net.weight"] == pytest.approx(0.75, abs=0.02)
    assert kept["mlp_extractor.policy_net.2.weight"] == pytest.approx(0.5, abs=0.01)
    s = {x.branch: x for x in store.summaries() if x.level == 1}
    assert set(s) == {"ticket", "reinit"} and s["ticket"].start_step == 128
    assert math.isfinite(s["ticket"]["final_return"]) and s["ticket"]["final_return"] >= 8  # CartPole: >= 8 steps
    rows = store.metrics(Unit(0, 1, "ticket"))
    assert [r["step"] for r in rows] == [128, 256, 512, 640]  # start (k), every 256, the end


@needs_rl
def test_a_killed_agent_resumes_bit_identical(tmp_path, monkeypatch):
    """Killed mid-training (after a saved rollout boundary), the resumed run ends with the same weights,
    evaluation returns and summaries as an uninterrupted one: CPU, fixed environment seeds."""
    from lth.executors.function import Loop
    from lth.experiments import launch

    clean = launch(tiny(tmp_path / "clean", checkpoint_seconds=0.0), log=quiet)
    saves = []
    real = Loop.save_state

    def save_then_die(self, step, state):
        real(self, step, state)
        saves.append((self.key, step))
        if self.key == "rep0/level01/ticket" and step == 384:
            raise KeyboardInterrupt

    monkeypatch.setattr(Loop, "save_state", save_then_die)
    cfg = tiny(tmp_path / "killed", checkpoint_seconds=0.0)
    with pytest.raises(KeyboardInterrupt):
        launch(cfg, log=quiet)
    monkeypatch.setattr(Loop, "save_state", real)
    store = launch(cfg, log=quiet)
    assert ("rep0/level01/ticket", 384) in saves
    for unit in (Unit(0, 0, "ticket"), Unit(0, 1, "ticket"), Unit(0, 1, "reinit")):
        a, b = store.summary(unit).to_dict(), clean.summary(unit).to_dict()
        a.pop("seconds"), b.pop("seconds")
        assert a == b
        assert store.metrics(unit) == clean.metrics(unit)
    final, ref = load_weights(store.final_path(Unit(0, 1, "ticket"))), load_weights(clean.final_path(Unit(0, 1, "ticket")))
    assert all(torch.equal(final[k], ref[k]) for k in ref)


@needs_rl
def test_lth_rl_smoke_on_acrobot_with_show_and_report(tmp_path, capsys):
    """The CI smoke test: `lth rl` end to end on Acrobot-v1, then `lth show --json` and the report."""
    args = ["rl", "--preset", "ppo_acrobot", "--env.n_envs", "2", "--env.eval_every", "256it",
            "--env.eval_episodes", "1", "--agent.budget", "512it", "--agent.n_steps", "64", "--agent.batch_size", "64",
            "--agent.n_epochs", "1", "--lottery.rewind", "128it", "--lottery.levels", "1", "--quiet",
            "--compute.threads", "1", "--out", str(tmp_path)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "solved at  return@end  best return  mean return" in out and "random_prune" in out
    [run] = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert (run / "report" / "report.html").exists()
    assert main(["show", str(run), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["experiment"] == "rl" and shown["config"]["env"]["id"] == "Acrobot-v1"
    ticket = next(r for r in shown["levels"] if r["level"] == 1 and r["branch"] == "ticket")
    assert -500 <= ticket["final_return"]["mean"] <= 0  # Acrobot: -1 per step, at most 500 steps
    # The ticket exports like a find_tickets run's: from the files alone.
    assert main(["export", str(run), "--level", "1", "--format", "dense", "--out", str(tmp_path / "t.safetensors")]) == 0
    assert "action_net.weight" in load_weights(tmp_path / "t.safetensors")
