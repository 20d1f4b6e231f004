"""The allocation search: PPO agents (stable-baselines3) learning from parallel episodes.

stable-baselines3 collects rollouts by stepping its own vectorized env in this process.
Here each round's episodes are independent tasks on the `Runner` (Dask workers or this
process): a task rebuilds the policies from their weights, plays one whole episode of the
gymnasium env with them and returns its transitions. The learner fills SB3's rollout
buffer with them (one episode per env column, as `collect_rollouts` would) and runs PPO's
own `train`. Episode k is seeded by (seed, k) and results come back in order, so a search
gives the same policies and allocation for any number of workers.

After every round the search writes a checkpoint (policy and optimizer weights, numpy's
global generator that PPO's minibatches use, the history): an interrupted search resumes
from its last completed round with the same result. The allocation is the best of the
final candidates at the final budget (the greedy policy, sampled episodes, and the
uniform start itself), by the reward: a search never returns worse than its start.
"""

from __future__ import annotations

import io
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pandas as pd
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.logger import configure
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.vec_env import DummyVecEnv

from pipeline.core.atomic import write_bytes
from pipeline.core.errors import InputError
from pipeline.core.hashing import stable_seed
from pipeline.core.parallel import InProcess, Runner
from pipeline.core.progress import Progress, note
from pipeline.sparsity.envs import CompressionEnv, GroupEnv, Reward, high_space
from pipeline.sparsity.protocol import CompressionProblem

CHECKPOINT_FORMAT = "sparsity-search-1"
NET_ARCH = [64, 64]


@dataclass(frozen=True)
class SearchConfig:
    budget: float  # the final density (kept share of weights)
    episodes: int = 48
    parallel: int = 4  # episodes per round: PPO's env columns, run side by side
    steps: int = 24  # operations per episode
    ops_per_layer: int = 4  # low-level operations per high-level choice
    curriculum_start: float | None = 0.5  # first episodes' density; None: no curriculum
    curriculum_share: float = 0.6  # share of the rounds over which the budget tightens
    curriculum_levels: int = 4  # densities are rounded to this many levels (cached starts)
    hierarchy: bool = True
    density_penalty: float = 2.0
    reconstruction_weight: float = 0.5
    learning_rate: float = 3e-4
    ppo_epochs: int = 4
    seed: int = 0

    def __post_init__(self) -> None:
        problems = []
        if not 0 < self.budget <= 1:
            problems.append(("budget", f"{self.budget!r} is not a share in (0, 1]"))
        if self.curriculum_start is not None and not self.budget <= self.curriculum_start <= 1:
            problems.append(("curriculum_start", f"{self.curriculum_start!r} must lie between "
                             f"the budget {self.budget:.4g} and 1"))
        for name in ("episodes", "parallel", "steps", "ops_per_layer"):
            if getattr(self, name) < 1:
                problems.append((name, "must be at least 1"))
        if problems:
            name, why = problems[0]
            raise InputError(None, f"allocation.{name}", why,
                             "fix the allocation settings (profile section `allocation` or "
                             "`calibrate allocate` flags)")

    @property
    def rounds(self) -> int:
        return math.ceil(self.episodes / self.parallel)

    def density(self, round_index: int) -> float:
        """The curriculum: geometric steps from `curriculum_start` down to the budget."""
        if self.curriculum_start is None:
            return self.budget
        span = max(1, round(self.curriculum_share * self.rounds))
        level = min(self.curriculum_levels - 1,
                    round(round_index / span * (self.curriculum_levels - 1)))
        share = level / max(1, self.curriculum_levels - 1)
        return float(self.curriculum_start * (self.budget / self.curriculum_start) ** share)

    def high_steps(self) -> int:
        return math.ceil(self.steps / self.ops_per_layer)


@dataclass
class Trajectory:
    obs: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    values: np.ndarray
    log_probs: np.ndarray


@dataclass
class EpisodeResult:
    index: int
    density: float
    low: Trajectory
    high: Trajectory | None
    info: dict[str, float]
    allocation: dict[str, np.ndarray] | None = None


@dataclass
class SearchResult:
    allocation: dict[str, np.ndarray]
    history: pd.DataFrame
    final: dict[str, float]
    seconds: float
    resumed_from_round: int
    config: SearchConfig
    problem: CompressionProblem | None = field(default=None, repr=False)


# -- policies on either side of the runner ----------------------------------------------

class _Spaces(gym.Env):
    """Only the spaces: SB3 sizes its policy and buffer from an env it never steps here."""

    def __init__(self, observation_space: gym.Space, action_space: gym.Space):
        self.observation_space, self.action_space = observation_space, action_space


def _learner(obs_space: gym.Space, act_space: gym.Space, n_steps: int, config: SearchConfig,
             name: str) -> PPO:
    env = DummyVecEnv([lambda: _Spaces(obs_space, act_space)] * config.parallel)
    batch = max(2, n_steps * config.parallel // 4)
    model = PPO("MlpPolicy", env, n_steps=n_steps, batch_size=batch, n_epochs=config.ppo_epochs,
                learning_rate=config.learning_rate, gamma=0.99, gae_lambda=0.95,
                policy_kwargs={"net_arch": NET_ARCH}, seed=stable_seed(name, config.seed) % 2**31,
                device="cpu", verbose=0)
    model.set_logger(configure(None, [""]))
    return model


def _policy(obs_space: gym.Space, act_space: gym.Space,
            weights: dict[str, torch.Tensor]) -> ActorCriticPolicy:
    policy = ActorCriticPolicy(obs_space, act_space, lambda _: 0.0, net_arch=NET_ARCH)
    policy.load_state_dict(weights)
    policy.set_training_mode(False)
    return policy


def _act(policy: ActorCriticPolicy, obs: np.ndarray, deterministic: bool
         ) -> tuple[int, float, float]:
    with torch.no_grad():
        action, value, log_prob = policy(torch.as_tensor(obs[None]), deterministic)
    return int(action[0]), float(value[0, 0]), float(log_prob[0])


# -- one episode (runs on a worker) -------------------------------------------------------

ProblemFactory = Callable[[], CompressionProblem]
_PROBLEMS: dict[str, CompressionProblem] = {}  # per process: starts are cached inside


def _problem(key: str, factory: ProblemFactory) -> CompressionProblem:
    if key not in _PROBLEMS:
        _PROBLEMS.clear()  # one search at a time per process
        _PROBLEMS[key] = factory()
    return _PROBLEMS[key]


@dataclass(frozen=True)
class Policies:
    """Both levels' weights, one object (Dask would scatter a bare dict key by key)."""

    low: dict[str, torch.Tensor]
    high: dict[str, torch.Tensor] | None


GREEDY, SAMPLE, START = "greedy", "sample", "start"  # how an episode picks its actions


def play(task: tuple[int, float, str], factory: ProblemFactory, key: str,
         config: SearchConfig, policies: Policies) -> EpisodeResult:
    """Episode `index` at `density` with the given policies: their transitions. `start`
    plays no operation: the uniform start, pruned to the budget (return 0)."""
    index, density, mode = task
    deterministic = mode == GREEDY
    low_weights, high_weights = policies.low, policies.high
    problem = _problem(key, factory)
    if mode == START:
        problem.reset(density)
        problem.enforce(density)
        score = problem.score()
        empty = _trajectory([], [], [])
        return EpisodeResult(index=index, density=density, low=empty, high=None,
                             info={"error": score.error, "density": score.density,
                                   "reconstruction": score.reconstruction,
                                   "error0": score.error, "return": 0.0,
                                   "report_error": _report_error(problem)},
                             allocation=problem.allocation())
    reward = Reward(config.budget, config.density_penalty, config.reconstruction_weight)
    low_obs, high_obs = [], []
    low_rec: list[tuple[int, float, float]] = []
    high_rec: list[tuple[int, float, float]] = []
    high_rewards: list[float] = []
    with torch.random.fork_rng():
        torch.manual_seed(stable_seed("episode", config.seed, index) % 2**63)
        if config.hierarchy:
            env: gym.Env = GroupEnv(problem, reward, config.steps, config.ops_per_layer)
            n_layers = len(problem.layer_names)
            high = _policy(high_space(n_layers), gym.spaces.Discrete(n_layers), high_weights)

            def choose(obs: np.ndarray) -> int:
                high_obs.append(obs)
                high_rec.append(_act(high, obs, deterministic))
                high_rewards.append(0.0)
                return high_rec[-1][0]

            env.chooser = choose
        else:
            env = CompressionEnv(problem, reward, config.steps)
        low = _policy(env.observation_space, env.action_space, low_weights)
        obs, _ = env.reset(seed=index, options={"density": density})
        rewards, done, info = [], False, {}
        while not done:
            low_obs.append(obs)
            low_rec.append(_act(low, obs, deterministic))
            obs, r, done, _, info = env.step(low_rec[-1][0])
            rewards.append(r)
            if high_rewards:
                high_rewards[-1] += r
    info["report_error"] = _report_error(problem)
    return EpisodeResult(
        index=index, density=density, low=_trajectory(low_obs, low_rec, rewards),
        high=_trajectory(high_obs, high_rec, high_rewards) if config.hierarchy else None,
        info={**info, "return": float(sum(rewards))},
        allocation=problem.allocation() if mode != SAMPLE or index >= config.episodes
        else None)


def _report_error(problem: CompressionProblem) -> float:
    """The held-out error nobody optimizes, where the problem has one."""
    return getattr(problem, "report_error", lambda: math.nan)()


def _trajectory(obs: list, rec: list[tuple[int, float, float]], rewards: list[float]
                ) -> Trajectory:
    arr = np.asarray(rec, dtype=np.float64).reshape(-1, 3)
    return Trajectory(np.asarray(obs, dtype=np.float32), arr[:, 0].astype(np.int64),
                      np.asarray(rewards, dtype=np.float32), arr[:, 1], arr[:, 2])


# -- the learner ----------------------------------------------------------------------------

def _update(model: PPO, trajectories: list[Trajectory]) -> None:
    """Fill SB3's rollout buffer with one episode per env column, then PPO's update."""
    buffer = model.rollout_buffer
    buffer.reset()
    n_steps = buffer.buffer_size
    for t in range(n_steps):
        buffer.add(np.stack([tr.obs[t] for tr in trajectories]),
                   np.array([[tr.actions[t]] for tr in trajectories]),
                   np.array([tr.rewards[t] for tr in trajectories]),
                   np.full(len(trajectories), t == 0),
                   torch.as_tensor(np.array([tr.values[t] for tr in trajectories])),
                   torch.as_tensor(np.array([tr.log_probs[t] for tr in trajectories])))
    buffer.compute_returns_and_advantage(torch.zeros(len(trajectories)),
                                         np.ones(len(trajectories), dtype=bool))
    model.train()


def _check(results: list[EpisodeResult]) -> None:
    for r in results:
        if not np.isfinite(r.low.rewards).all() or not math.isfinite(r.info["return"]):
            raise FloatingPointError(f"episode {r.index}: NaN reward; the environment's fit "
                                     "diverged")


def search(factory: ProblemFactory, key: str, config: SearchConfig, *,
           runner: Runner | None = None, checkpoint: str | Path | None = None,
           on_round: Callable[[int], None] | None = None) -> SearchResult:
    """Train the agents for `config.episodes` episodes and play the final one."""
    runner = runner or InProcess()
    t0 = time.perf_counter()
    problem = _problem(key, factory)
    n_layers = len(problem.layer_names)
    if config.hierarchy:
        probe = GroupEnv(problem, Reward(config.budget), config.steps, config.ops_per_layer)
        low = _learner(probe.observation_space, probe.action_space, config.steps, config, "low")
        high = _learner(high_space(n_layers), gym.spaces.Discrete(n_layers),
                        config.high_steps(), config, "high")
    else:
        probe = CompressionEnv(problem, Reward(config.budget), config.steps)
        low = _learner(probe.observation_space, probe.action_space, config.steps, config, "low")
        high = None
    history: list[dict[str, Any]] = []
    start_round = 0
    if checkpoint is not None and Path(checkpoint).is_file():
        start_round, history = _restore(Path(checkpoint), key, config, low, high)
    with Progress("allocate: search", config.rounds, "round") as progress:
        progress.update(start_round)
        for r in range(start_round, config.rounds):
            density = config.density(r)
            first = r * config.parallel
            tasks = [(first + i, density, SAMPLE) for i in range(config.parallel)]
            results = runner.map(play, tasks, factory, key, config, _policies(low, high))
            _check(results)
            _update(low, [x.low for x in results])
            if high is not None:
                _update(high, [x.high for x in results])
            history += [{"round": r, "episode": x.index, "budget": x.density, **x.info}
                        for x in results]
            if checkpoint is not None:
                _save(Path(checkpoint), key, config, r + 1, history, low, high)
            if on_round is not None:
                on_round(r)
            progress.update(mean_return=float(np.mean([x.info["return"] for x in results])))
    policies = _policies(low, high)
    modes = [START, GREEDY] + [SAMPLE] * max(0, config.parallel - 2)
    candidates = [(config.episodes + i, config.budget, mode) for i, mode in enumerate(modes)]
    played = runner.map(play, candidates, factory, key, config, policies)
    best = max(range(len(played)), key=lambda i: (played[i].info["return"], -i))
    final = play(candidates[best], factory, key, config, policies)  # its state, here
    final.info["candidate"] = candidates[best][2]
    return SearchResult(allocation=final.allocation, history=pd.DataFrame(history),
                        final=final.info, seconds=time.perf_counter() - t0,
                        resumed_from_round=start_round, config=config,
                        problem=_PROBLEMS.get(key))


def _policies(low: PPO, high: PPO | None) -> Policies:
    def weights(model: PPO) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in model.policy.state_dict().items()}

    return Policies(weights(low), weights(high) if high is not None else None)


def _save(path: Path, key: str, config: SearchConfig, rounds_done: int,
          history: list[dict[str, Any]], low: PPO, high: PPO | None) -> None:
    state_np = np.random.get_state()
    state = {
        "format": CHECKPOINT_FORMAT, "key": key, "config": repr(asdict(config)),
        "rounds_done": rounds_done,
        "history": {k: [row[k] for row in history] for k in history[0]} if history else {},
        "numpy_rng": torch.from_numpy(state_np[1].astype(np.int64)),
        "numpy_pos": int(state_np[2]),
        **{f"{name}_{part}": value for name, model in (("low", low), ("high", high))
           if model is not None for part, value in _model_state(model).items()},
    }
    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_bytes(path, buffer.getvalue())


def _model_state(model: PPO) -> dict[str, Any]:
    return {"policy": model.policy.state_dict(),
            "optimizer": model.policy.optimizer.state_dict(), "updates": model._n_updates}


def _restore(path: Path, key: str, config: SearchConfig, low: PPO, high: PPO | None
             ) -> tuple[int, list[dict[str, Any]]]:
    try:
        state = torch.load(path, weights_only=True)
    except Exception as exc:  # a truncated or foreign file
        raise InputError(path, None, f"unreadable search checkpoint ({exc})",
                         "delete it to start the search afresh") from exc
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise InputError(path, "format", "not a search checkpoint of this version",
                         "delete it to start the search afresh")
    if state["key"] != key or state["config"] != repr(asdict(config)):
        note(f"{path}: the interrupted search there had other inputs or settings; "
             "starting afresh")
        return 0, []
    for name, model in (("low", low), ("high", high)):
        if model is not None:
            model.policy.load_state_dict(state[f"{name}_policy"])
            model.policy.optimizer.load_state_dict(state[f"{name}_optimizer"])
            model._n_updates = int(state[f"{name}_updates"])
    rng = np.random.get_state()
    np.random.set_state((rng[0], state["numpy_rng"].numpy().astype(np.uint32),
                         state["numpy_pos"], 0, 0.0))
    cols = state["history"]
    n = len(next(iter(cols.values()))) if cols else 0
    history = [{k: cols[k][i] for k in cols} for i in range(n)]
    return int(state["rounds_done"]), history
