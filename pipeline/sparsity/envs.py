"""gymnasium environments over any `CompressionProblem`: one flat, two hierarchical.

- `CompressionEnv` (flat): one action picks a layer, a group and an operation.
- `GroupEnv` (the hierarchy's low level): the action picks a group and an operation in the
  current layer; every `ops_per_layer` steps a `LayerChooser` (the high level: another
  policy) picks the next layer from every layer's summary.

Every step applies the operation, fine-tunes the layer and rewards the change in
J = −error/error₀ − ρ·max(0, density/budget − 1) − μ·reconstruction, so an episode's
return is how much it improved on its start, the uniform pruning at its budget. The last
step prunes to the budget (`enforce`), so an episode always ends within it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from pipeline.sparsity.protocol import FEATURES, OPS, CompressionProblem, Score

N_GLOBALS = 4  # progress, density over budget, error over start, reconstruction


@dataclass(frozen=True)
class Reward:
    budget: float  # the final density an episode must end within
    density_penalty: float = 2.0  # ρ
    reconstruction_weight: float = 0.5  # μ (0: the ablation without the autoencoder)

    def objective(self, score: Score, error0: float, density: float) -> float:
        over = max(0.0, score.density / density - 1.0)
        value = (-score.error / max(error0, 1e-12) - self.density_penalty * over
                 - self.reconstruction_weight * score.reconstruction)
        if not math.isfinite(value):
            raise FloatingPointError(f"non-finite reward from {score}: the problem's fit "
                                     "diverged; lower its learning rate or check its data")
        return value


class _Episode:
    """What both env levels share: the problem, the budget of this episode, the objective."""

    def __init__(self, problem: CompressionProblem, reward: Reward, steps: int):
        self.problem, self.reward, self.steps = problem, reward, steps
        self.n_layers, self.n_groups = len(problem.layer_names), problem.n_groups
        self.t = 0
        self.density = reward.budget

    def start(self, options: dict | None) -> None:
        self.density = float((options or {}).get("density", self.reward.budget))
        self.problem.reset(self.density)
        self.error0 = self.problem.score().error
        self.last = self._objective()
        self.features = self.problem.features()
        self.t = 0

    def _objective(self) -> float:
        self.score = self.problem.score()
        return self.reward.objective(self.score, self.error0, self.density)

    def act(self, layer: int, group: int, op: int) -> tuple[float, bool]:
        self.problem.apply(layer, group, op)
        self.problem.fine_tune(layer)
        self.t += 1
        done = self.t >= self.steps
        if done:
            self.problem.enforce(self.density)
        value = self._objective()
        reward, self.last = value - self.last, value
        self.features = self.problem.features()
        return reward, done

    def globals(self) -> np.ndarray:
        s = self.score
        return np.array([self.t / self.steps, s.density / self.density - 1.0,
                         s.error / max(self.error0, 1e-12) - 1.0, s.reconstruction],
                        dtype=np.float32)

    def layer_summary(self) -> np.ndarray:
        return self.features.mean(axis=1)

    def info(self) -> dict:
        return {"error": self.score.error, "density": self.score.density,
                "reconstruction": self.score.reconstruction, "error0": self.error0}


OBS_BOUND = 10.0  # features are scaled to about O(1); observations are clipped here


def _box(n: int) -> gym.spaces.Box:
    return gym.spaces.Box(-OBS_BOUND, OBS_BOUND, shape=(n,), dtype=np.float32)


def _clip(obs: np.ndarray) -> np.ndarray:
    return np.clip(obs, -OBS_BOUND, OBS_BOUND).astype(np.float32)


class CompressionEnv(gym.Env):
    """Flat: Discrete(layers · groups · ops); the observation is every group's features."""

    def __init__(self, problem: CompressionProblem, reward: Reward, steps: int):
        self.episode = _Episode(problem, reward, steps)
        e = self.episode
        self.action_space = gym.spaces.Discrete(e.n_layers * e.n_groups * len(OPS))
        self.observation_space = _box(e.n_layers * e.n_groups * len(FEATURES) + N_GLOBALS)

    def _obs(self) -> np.ndarray:
        return _clip(np.concatenate([self.episode.features.ravel(), self.episode.globals()]))

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.episode.start(options)
        return self._obs(), self.episode.info()

    def step(self, action: int):
        e = self.episode
        layer, group, op = np.unravel_index(int(action), (e.n_layers, e.n_groups, len(OPS)))
        reward, done = e.act(int(layer), int(group), int(op))
        return self._obs(), reward, done, False, e.info()


def high_space(n_layers: int) -> gym.spaces.Box:
    return _box(n_layers * len(FEATURES) + N_GLOBALS)


LayerChooser = Callable[[np.ndarray], int]  # high-level observation → layer


class GroupEnv(gym.Env):
    """The low level: Discrete(groups · ops) in the layer the chooser picked."""

    def __init__(self, problem: CompressionProblem, reward: Reward, steps: int,
                 ops_per_layer: int, chooser: LayerChooser | None = None):
        self.episode = _Episode(problem, reward, steps)
        e = self.episode
        self.ops_per_layer = ops_per_layer
        self.chooser = chooser or (lambda obs: self.np_random.integers(e.n_layers))
        self.action_space = gym.spaces.Discrete(e.n_groups * len(OPS))
        self.observation_space = _box((e.n_groups + 1) * len(FEATURES) + e.n_layers
                                      + N_GLOBALS)
        self.layer = 0

    def high_obs(self) -> np.ndarray:
        return _clip(np.concatenate([self.episode.layer_summary().ravel(),
                                     self.episode.globals()]))

    def _obs(self) -> np.ndarray:
        e = self.episode
        onehot = np.zeros(e.n_layers, dtype=np.float32)
        onehot[self.layer] = 1.0
        return _clip(np.concatenate([e.features[self.layer].ravel(),
                                     e.layer_summary()[self.layer], onehot, e.globals()]))

    def _choose(self) -> None:
        if self.episode.t % self.ops_per_layer == 0:
            self.layer = int(self.chooser(self.high_obs()))

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.episode.start(options)
        self._choose()
        return self._obs(), self.episode.info()

    def step(self, action: int):
        group, op = divmod(int(action), len(OPS))
        reward, done = self.episode.act(self.layer, group, op)
        if not done:
            self._choose()
        return self._obs(), reward, done, False, self.episode.info()
