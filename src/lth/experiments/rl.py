"""`lth rl`: lottery tickets in the policy and value networks of a PPO agent (Yu et al. 2020).

The agent is Stable-Baselines3's PPO, trained in SB3's own loop; lth reaches it the way it reaches any user's
loop, through find_tickets' API (`run_tickets`, lth.executors.function): `PolicyBuilder(cfg)(seed)` is the
model factory (SB3's ActorCriticPolicy, which is an nn.Module) and `PpoTraining(cfg)` the training function
train_fn(policy, mask, loop). So IMP, late rewinding, the reinit and random-pruning controls, the run folder
and resuming are lth's, and the optimizer steps are SB3's. `MaskGuard` keeps pruned weights at zero through
SB3's training path, which calls `policy.evaluate_actions` rather than `forward` (tests/test_rl.py checks
every minibatch).

Metrics: the mean return of the greedy policy over a fixed set of evaluation episodes (seeds eval_seed ...),
every `env.eval_every` steps; "solved at" is the first evaluation whose return reaches the environment's
threshold (the analogue of the early-stop iteration).

Resuming: at each rollout boundary (every checkpoint_seconds) the state that decides the rest of training is
saved as plain data: the weights and Adam's state, the environments' states (every attribute of each wrapper
layer that is plain data or a numpy Generator), the last observations, and the torch, numpy and Python RNGs.
On the CPU a resumed training then ends bit-identical to an uninterrupted one for environments whose state
lives in such attributes, which includes Gymnasium's classic control (tested on CartPole-v1). SB3's logging
counters and episode-info buffer are not restored: they only feed its logs.

Stable-Baselines3 and Gymnasium are an optional extra (`pip install 'lth[rl]'`), imported inside functions.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lth.config import ImpConfig, RlConfig, TrainConfig, parse_steps
from lth.errors import ConfigError, UserError
from lth.experiments.base import Experiment, register
from lth.experiments.imp import expected_branches, show

INSTALL = "pip install 'lth[rl]'  (or: pip install stable-baselines3 gymnasium)"
OUTPUT_NAMES = ["action_net.weight", "value_net.weight"]
"""The two heads of the actor-critic: pruned at the output rate."""


def require_rl() -> None:
    """Refuse, with the pip command, when the optional RL extra is missing."""
    try:
        import gymnasium  # noqa: F401
        import stable_baselines3  # noqa: F401
    except ImportError as e:
        raise UserError(f"lth rl needs Stable-Baselines3 and Gymnasium, the optional extra lth[rl] ({e.msg}). "
                        f"Install it: {INSTALL}") from None


def env_spec(env_id: str):
    """Gymnasium's spec of `env_id`; an unknown id is a ConfigError that names the flag."""
    require_rl()
    import gymnasium as gym

    try:
        return gym.spec(env_id)
    except gym.error.Error as e:
        raise ConfigError(f"--env.id {env_id!r} is not a registered Gymnasium environment ({e}). Use an id such "
                          "as CartPole-v1 or Acrobot-v1 (`python -c 'import gymnasium; gymnasium.pprint_registry()'` "
                          "lists them)") from None


def solved_threshold(cfg: RlConfig) -> float:
    if cfg.env.solved is not None:
        return cfg.env.solved
    threshold = env_spec(cfg.env.id).reward_threshold
    if threshold is None:
        raise ConfigError(f"Gymnasium gives no reward threshold for {cfg.env.id}; say when it counts as solved with "
                          "--env.solved RETURN")
    return float(threshold)


def steps(text: str, flag: str) -> int:
    return parse_steps(text, flag)[0]


# -- the model factory -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class PolicyBuilder:
    """build(seed): SB3's actor-critic for the config's environment, initialized (orthogonally, as SB3 does)
    from `seed`; both heads are declared output layers."""

    cfg: RlConfig

    def __call__(self, seed: int):
        import gymnasium as gym
        import torch
        from stable_baselines3.common.policies import ActorCriticPolicy

        env = gym.make(self.cfg.env.id)
        lr = self.cfg.agent.lr
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            policy = ActorCriticPolicy(env.observation_space, env.action_space, lambda _: lr,
                                       **policy_kwargs(self.cfg))
        env.close()
        policy.output_names = list(OUTPUT_NAMES)
        return policy


def policy_kwargs(cfg: RlConfig) -> dict[str, Any]:
    """The actor-critic's architecture: separate policy and value networks of `agent.hidden` widths."""
    import torch

    return {"net_arch": {"pi": list(cfg.agent.hidden), "vf": list(cfg.agent.hidden)},
            "activation_fn": {"tanh": torch.nn.Tanh, "relu": torch.nn.ReLU}[cfg.agent.activation]}


# -- evaluation ------------------------------------------------------------------------------------------

class Evaluator:
    """Mean return of the greedy policy over fixed episodes (one seed each), played in lockstep so that each
    step is one batched forward pass. It draws from no global RNG, so evaluating never changes training."""

    def __init__(self, env_id: str, seeds: list[int]):
        import gymnasium as gym

        self.seeds, self.envs = seeds, [gym.make(env_id) for _ in seeds]

    def __call__(self, policy) -> float:
        import numpy as np

        obs = [env.reset(seed=s)[0] for env, s in zip(self.envs, self.seeds)]
        returns, active = [0.0] * len(self.envs), list(range(len(self.envs)))
        while active:
            actions, _ = policy.predict(np.stack([obs[i] for i in active]), deterministic=True)
            still = []
            for a, i in zip(actions, active):
                obs[i], reward, terminated, truncated, _ = self.envs[i].step(a)
                returns[i] += float(reward)
                if not (terminated or truncated):
                    still.append(i)
            active = still
        return sum(returns) / len(returns)

    def close(self) -> None:
        for env in self.envs:
            env.close()


# -- state as plain data (loaded without unpickling code) -----------------------------------------------

_SKIP = object()


def encode(value: Any) -> Any:
    """`value` as tensors, numbers, strings, lists and dicts, or _SKIP when it is not plain data."""
    import numpy as np
    import torch

    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
        wide = value.astype(np.int64) if value.dtype.kind == "u" else value
        return {"__ndarray__": torch.from_numpy(np.array(wide, copy=True)), "dtype": str(value.dtype)}
    if isinstance(value, np.random.Generator):
        return {"__generator__": value.bit_generator.state}
    if isinstance(value, (list, tuple)):
        items = [encode(v) for v in value]
        if any(i is _SKIP for i in items):
            return _SKIP
        return {"__tuple__": items} if isinstance(value, tuple) else items
    if isinstance(value, dict) and all(isinstance(k, str) for k in value):
        items = {k: encode(v) for k, v in value.items()}
        return _SKIP if any(v is _SKIP for v in items.values()) else {"__dict__": items}
    return _SKIP


def decode(value: Any, current: Any = None) -> Any:
    import numpy as np

    if isinstance(value, list):
        return [decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    if "__ndarray__" in value:
        return value["__ndarray__"].numpy().astype(value["dtype"])
    if "__generator__" in value:
        state = value["__generator__"]
        gen = current if isinstance(current, np.random.Generator) else \
            np.random.Generator(getattr(np.random, state["bit_generator"])())
        gen.bit_generator.state = state
        return gen
    if "__tuple__" in value:
        return tuple(decode(v) for v in value["__tuple__"])
    return {k: decode(v) for k, v in value["__dict__"].items()}


def _layers(env) -> list:
    """An environment and each layer it wraps, outermost first."""
    out = [env]
    while hasattr(out[-1], "env") and out[-1].env is not out[-1]:
        out.append(out[-1].env)
    return out


def env_state(env) -> list[dict[str, Any]]:
    """Every plain-data attribute of every wrapper layer (physics state, step counters, RNG)."""
    state = []
    for layer in _layers(env):
        items = {k: encode(v) for k, v in vars(layer).items()}
        state.append({k: v for k, v in items.items() if v is not _SKIP})
    return state


def set_env_state(env, state: list[dict[str, Any]]) -> None:
    layers = _layers(env)
    if len(layers) != len(state):
        raise UserError("the saved environment state has another wrapper stack than this environment: delete the "
                        "training's resume.pt to restart it")
    for layer, attrs in zip(layers, state):
        for k, v in attrs.items():
            setattr(layer, k, decode(v, getattr(layer, k, None)))


def rng_state() -> dict[str, Any]:
    import random

    import numpy as np
    import torch

    return {"torch": torch.get_rng_state(), "numpy": encode(np.random.get_state()), "python": encode(random.getstate())}


def set_rng_state(state: dict[str, Any]) -> None:
    import random

    import numpy as np
    import torch

    torch.set_rng_state(state["torch"])
    np.random.set_state(decode(state["numpy"]))
    random.setstate(decode(state["python"]))


# -- the training function -------------------------------------------------------------------------------

@dataclass(frozen=True)
class PpoTraining:
    """train_fn(policy, mask, loop): PPO on the config's environment, from `loop.start_step` to the budget, in
    SB3's own loop. Returns the evaluation returns' summary."""

    cfg: RlConfig

    def __call__(self, policy, mask, loop) -> dict[str, float]:
        saved = rng_state()  # SB3 seeds the global generators: the caller's are put back afterwards
        try:
            return self._train(policy, loop)
        finally:
            set_rng_state(saved)

    def _agent(self, policy, seed: int):
        from stable_baselines3 import PPO
        from stable_baselines3.common.env_util import make_vec_env

        a = self.cfg.agent

        def schedule(value: float):
            return value if a.schedule == "constant" else (lambda remaining: remaining * value)

        env = make_vec_env(self.cfg.env.id, n_envs=self.cfg.env.n_envs, seed=seed)
        agent = PPO("MlpPolicy", env, learning_rate=schedule(a.lr), n_steps=a.n_steps, batch_size=a.batch_size,
                    n_epochs=a.n_epochs, gamma=a.gamma, gae_lambda=a.gae_lambda, clip_range=schedule(a.clip_range),
                    ent_coef=a.ent_coef, vf_coef=a.vf_coef, max_grad_norm=a.max_grad_norm, seed=seed, device="cpu",
                    policy_kwargs=policy_kwargs(self.cfg), verbose=0)
        agent.policy = policy  # lth's network: its starting weights, and its mask kept by lth
        return agent

    def _train(self, policy, loop) -> dict[str, float]:
        from stable_baselines3.common.callbacks import BaseCallback

        cfg = self.cfg
        total, every = steps(cfg.agent.budget, "--agent.budget"), steps(cfg.env.eval_every, "--env.eval_every")
        agent = self._agent(policy, loop.data_seed)
        evaluate = Evaluator(cfg.env.id, [cfg.env.eval_seed + i for i in range(cfg.env.eval_episodes)])
        done_until = -1
        if loop.resume_state is not None:
            state = loop.resume_state
            policy.optimizer.load_state_dict(state["optimizer"])
            agent.num_timesteps = done_until = loop.resume_step
            agent._last_obs, agent._last_episode_starts = decode(state["last_obs"]), decode(state["episode_starts"])
            for env, s in zip(agent.env.envs, state["envs"]):
                set_env_state(env, s)
            set_rng_state(state["rng"])
        else:
            agent.num_timesteps = loop.start_step

        def boundary(n: int) -> None:
            """Between two rollouts (n steps done, the last update applied): progress, evaluation, checkpoint."""
            nonlocal done_until
            if n <= done_until:
                return
            loop.reached(n)
            if n == loop.start_step or n % every == 0 or n == total:
                loop.log(n, eval_return=evaluate(policy))
            if n < total and loop.due():
                loop.save_state(n, {"optimizer": policy.optimizer.state_dict(),
                                    "last_obs": encode(agent._last_obs),
                                    "episode_starts": encode(agent._last_episode_starts),
                                    "envs": [env_state(env) for env in agent.env.envs], "rng": rng_state()})
            done_until = n

        class Boundaries(BaseCallback):
            def _on_rollout_start(self) -> None:
                boundary(self.model.num_timesteps)

            def _on_step(self) -> bool:
                return True

        if agent.num_timesteps < total:
            agent.learn(total - agent.num_timesteps, callback=Boundaries(), reset_num_timesteps=False)
        boundary(agent.num_timesteps)
        evaluate.close()
        agent.env.close()
        return summarize(loop.metrics, solved_threshold(cfg), total)


def summarize(rows: list[dict[str, Any]], threshold: float, total: int) -> dict[str, float]:
    returns = [(int(r["step"]), r["eval_return"]) for r in rows if r.get("eval_return") is not None]
    solved = next((s for s, ret in returns if ret >= threshold), math.nan)
    values = [ret for _, ret in returns]
    return {"iterations": total, "final_return": values[-1], "best_return": max(values),
            "mean_return": sum(values) / len(values), "solved_step": solved}


# -- the experiment --------------------------------------------------------------------------------------

def imp_view(cfg: RlConfig) -> ImpConfig:
    """The IMP settings of the run as find_tickets' machinery reads them."""
    return ImpConfig(prune=cfg.prune, lottery=cfg.lottery, seed=cfg.seed, train=TrainConfig(data_seed=cfg.data_seed),
                     checkpoint_seconds=cfg.checkpoint_seconds)


def check(cfg: RlConfig, data) -> None:
    """Before a run folder exists: the extra is installed, the environment exists and has a threshold, the
    pruning plan fits the policy (exclusion patterns match), the levels are useful."""
    from lth.experiments.imp import _plan, schedule_of

    require_rl()
    solved_threshold(cfg)
    view = imp_view(cfg)
    schedule_of(view, _plan(view, PolicyBuilder(cfg)(cfg.seed)))


def run(cfg: RlConfig, executor, store, log: Callable[[str], None] = print) -> None:
    from lth.experiments.imp import run_tickets

    run_tickets(imp_view(cfg), store, PolicyBuilder(cfg), PpoTraining(cfg), executor, log)


RL = register(Experiment(
    name="rl", config=RlConfig, run=run, commands=("rl",), check=check, show=show, branches=expected_branches,
    needs_data=False, default_preset="ppo_cartpole",
    help="find winning tickets in a PPO agent (Stable-Baselines3; needs lth[rl]); default: CartPole-v1"))
