"""Models shared by the model-guided methods (cbo, apollo): GP surrogates of the objective and
of each budgeted metric, a classifier of static infeasibility, and the constrained expected
improvement acquisition over discrete candidate sets.

Everything works in log space (metrics are positive and span decades) on the space's [0,1]
encoding. Candidates are sampled from the space itself (random points + mutations of the best),
so proposals always respect its discrete structure.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from hwloop.search.objective import DESIGN_METRICS, PointResult, static_check
from hwloop.search.space import Point, Space

StaticChecker = Callable[[Point], str | None]


def _norm_cdf(z: np.ndarray) -> np.ndarray:
    from scipy.special import ndtr

    return ndtr(z)


def _norm_pdf(z: np.ndarray) -> np.ndarray:
    return np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)


def _matern52(a: np.ndarray, b: np.ndarray, scales: np.ndarray) -> np.ndarray:
    a, b = a / scales, b / scales
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    r = np.sqrt(np.maximum(sq, 0.0)) * math.sqrt(5.0)
    return (1.0 + r + r * r / 3.0) * np.exp(-r)


class GP:
    """A small GP regressor (Matern 5/2) on [0,1] inputs, in numpy.

    Hyperparameters by maximum marginal likelihood over a grid (a shared length scale times
    per-dimension relevance from a coarse coordinate search, and the noise level): a few
    Cholesky factorizations of an n x n matrix, milliseconds for the n of a sweep — scikit-learn's
    gradient fit took seconds per model here and dominated the methods' time.
    """

    _LENGTHS = (0.08, 0.15, 0.3, 0.6, 1.2, 2.5)
    _NOISES = (1e-6, 1e-4, 1e-3, 1e-2, 5e-2)

    def __init__(self, *, seed: int) -> None:
        self.seed = seed

    def fit(self, x: np.ndarray, y: np.ndarray) -> GP:
        self._x = np.asarray(x, dtype=float)
        y = np.asarray(y, dtype=float)
        # A linear trend (ridge) as the prior mean: hardware costs are close to additive in
        # log2 of sizes, which a stationary kernel alone learns slowly.
        self._w = self._trend(self._x, y)
        resid = y - self._linear(self._x)
        self._mean = 0.0
        self._std = float(resid.std()) or 1.0
        self._y = resid / self._std
        dims = self._x.shape[1]
        best = (-np.inf, np.ones(dims), 1e-3)
        for length in self._LENGTHS:
            for noise in self._NOISES:
                ll = self._log_likelihood(np.full(dims, length), noise)
                if ll > best[0]:
                    best = (ll, np.full(dims, length), noise)
        _, scales, noise = best
        # Coordinate search on per-dimension relevance (shrink or stretch one length scale).
        for _ in range(2):
            for d in range(dims):
                for factor in (0.33, 3.0):
                    trial = scales.copy()
                    trial[d] = float(np.clip(trial[d] * factor, 0.03, 30.0))
                    ll = self._log_likelihood(trial, noise)
                    if ll > best[0] + 1e-6:
                        best = (ll, trial, noise)
                        scales = trial
        self._scales, self._noise = best[1], best[2]
        self._factor(self._scales, self._noise)
        return self

    @staticmethod
    def _trend(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        design = np.hstack([np.ones((len(x), 1)), x])
        ridge = 1e-2 * np.eye(design.shape[1])
        ridge[0, 0] = 0.0
        return np.linalg.solve(design.T @ design + ridge, design.T @ y)

    def _linear(self, x: np.ndarray) -> np.ndarray:
        return self._w[0] + x @ self._w[1:]

    def _factor(self, scales: np.ndarray, noise: float) -> bool:
        from scipy.linalg import LinAlgError, cho_factor, cho_solve

        k = _matern52(self._x, self._x, scales)
        k[np.diag_indices_from(k)] += noise + 1e-9
        try:
            self._chol = cho_factor(k, lower=True)
        except LinAlgError:
            return False
        self._alpha = cho_solve(self._chol, self._y)
        return True

    def _log_likelihood(self, scales: np.ndarray, noise: float) -> float:
        if not self._factor(scales, noise):
            return -np.inf
        log_det = 2.0 * np.log(np.diag(self._chol[0])).sum()
        return float(-0.5 * self._y @ self._alpha - 0.5 * log_det)

    def with_fantasy(self, x_new: np.ndarray, y_new: np.ndarray) -> GP:
        """The same GP (hyperparameters fixed) with made-up observations (constant liar)."""
        out = GP(seed=self.seed)
        out._x = np.vstack([self._x, x_new])
        out._w, out._mean, out._std = self._w, self._mean, self._std
        resid_new = np.asarray(y_new) - self._linear(np.asarray(x_new, dtype=float))
        out._y = np.concatenate([self._y, resid_new / self._std])
        out._scales, out._noise = self._scales, self._noise
        out._factor(out._scales, out._noise)
        return out

    def predict(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from scipy.linalg import solve_triangular

        x = np.asarray(x, dtype=float)
        ks = _matern52(x, self._x, self._scales)
        mu = ks @ self._alpha
        v = solve_triangular(self._chol[0], ks.T, lower=True)
        var = np.maximum(1.0 + self._noise - (v * v).sum(0), 1e-12)
        return mu * self._std + self._linear(x), np.sqrt(var) * self._std


def expected_improvement(mu: np.ndarray, sd: np.ndarray, best: float, xi: float = 0.0
                         ) -> np.ndarray:
    """EI for minimization."""
    gap = best - mu - xi
    z = gap / sd
    return gap * _norm_cdf(z) + sd * _norm_pdf(z)


def default_static_checker(space: Space) -> StaticChecker | None:
    """The real static check (check_design) if the simulator package provides it."""
    try:
        from hwloop.sim import check_design  # noqa: F401
    except ImportError:
        return None
    return lambda point: static_check(space, point)


class ConstrainedModel:
    """Objective GP + one GP per budgeted metric + a static-infeasibility classifier, fitted
    to (point, result) observations."""

    def __init__(self, space: Space, *, seed: int) -> None:
        self.space = space
        self.seed = seed
        self.objective_gp: GP | None = None
        self.budget_gps: dict[str, GP] = {}
        self.classifier: Any = None
        self.best: float | None = None  # best feasible log objective
        self.n_measured = 0
        self.xi = 0.0
        # Design metrics (area...) depend on the hardware alone: once a hardware design has
        # been measured, its value is known exactly for every mapping.
        self.known: dict[str, dict[tuple[Any, ...], float]] = {}
        # ... so they are modeled on the encoded hardware columns, one sample per design.
        columns: list[int] = []
        at = 0
        for d in space.free_dims:
            width = 1 if d.kind == "ordinal" else len(d.values)
            if d.section == "hardware":
                columns.extend(range(at, at + width))
            at += width
        self.hardware_columns = np.array(columns, dtype=int)
        self._hardware_names = [d.name for d in space.dims if d.section == "hardware"]
        # any values for the mapping dims: only the hardware columns of the encoding are used
        self._filler = {d.name: d.values[0] for d in space.dims if d.section != "hardware"}

    def fit(self, observations: list[tuple[Point, PointResult]]) -> ConstrainedModel:
        space = self.space
        measured = [(p, r) for p, r in observations
                    if r.objective is not None and r.objective > 0 and r.metrics]
        self.n_measured = len(measured)
        self.known = {m: {} for m in self.space.budgets if m in DESIGN_METRICS}
        for point, result in measured:
            for metric, values in self.known.items():
                values[self.hardware_key(point)] = result.metrics[metric]
        feasible_y = [math.log(r.objective) for _, r in measured if r.feasible]
        self.best = min(feasible_y) if feasible_y else None
        if len(measured) >= 3 and space.encoded_size:
            x = space.encode_many([p for p, _ in measured])
            y = np.array([math.log(r.objective) for _, r in measured])
            self.objective_gp = GP(seed=self.seed).fit(x, y)
            for metric in space.budgets:
                if metric in self.known:
                    designs = self.known[metric]
                    if len(designs) >= 3 and len(self.hardware_columns):
                        hw = space.encode_many([dict(zip(self._hardware_names, key,
                                                         strict=True)) | self._filler
                                                for key in designs])[:, self.hardware_columns]
                        values = np.log(np.maximum(np.array(list(designs.values())), 1e-30))
                        self.budget_gps[metric] = GP(seed=self.seed).fit(hw, values)
                    continue
                values = np.array([math.log(max(r.metrics[metric], 1e-30))
                                   for _, r in measured])
                self.budget_gps[metric] = GP(seed=self.seed).fit(x, values)
        labels = [r.infeasible_kind == "static" for _, r in observations]
        if any(labels) and not all(labels) and space.encoded_size:
            from sklearn.ensemble import ExtraTreesClassifier

            x = space.encode_many([p for p, _ in observations])
            self.classifier = ExtraTreesClassifier(n_estimators=60, min_samples_leaf=2,
                                                   random_state=self.seed)
            self.classifier.fit(x, np.array(labels))
        return self

    def hardware_key(self, point: Point) -> tuple[Any, ...]:
        return tuple(point[d.name] for d in self.space.dims if d.section == "hardware")

    def probability_feasible(self, x: np.ndarray, points: list[Point] | None = None
                             ) -> np.ndarray:
        prob = np.ones(len(x))
        for metric in self.known:  # a design metric too little measured to model yet
            if metric not in self.budget_gps and points is not None:
                limit = self.space.budgets[metric]
                for i, point in enumerate(points):
                    value = self.known[metric].get(self.hardware_key(point))
                    if value is not None and value > limit:
                        prob[i] = 0.0
        for metric, gp in self.budget_gps.items():
            mu, sd = gp.predict(x[:, self.hardware_columns] if metric in self.known else x)
            p = _norm_cdf((math.log(self.space.budgets[metric]) - mu) / sd)
            known = self.known.get(metric)
            if known and points is not None:
                limit = self.space.budgets[metric]
                for i, point in enumerate(points):
                    value = known.get(self.hardware_key(point))
                    if value is not None:
                        p[i] = 1.0 if value <= limit else 0.0
            prob *= p
        if self.classifier is not None:
            static = list(self.classifier.classes_).index(True)
            prob *= 1.0 - self.classifier.predict_proba(x)[:, static]
        return prob

    def acquisition(self, x: np.ndarray, gp: GP | None = None, *,
                    points: list[Point] | None = None, min_feasibility: float = 0.8
                    ) -> np.ndarray:
        """Constrained EI: EI over the best feasible value x probability of feasibility. With
        no feasible point yet: the probability of feasibility alone. Candidates less likely
        than ``min_feasibility`` to be feasible rank below all others: an infeasible
        evaluation teaches the feasibility model, but costs as much as a useful one."""
        gp = gp or self.objective_gp
        pof = self.probability_feasible(x, points)
        if gp is None or self.best is None:
            score = pof
        else:
            mu, sd = gp.predict(x)
            score = expected_improvement(mu, sd, self.best, self.xi) * pof
        return np.where(pof >= min_feasibility, score, score * 1e-9 - 1.0)


def candidates(space: Space, rng: np.random.Generator, *, parents: list[Point],
               n_random: int, n_local: int, exclude: set[tuple[Any, ...]]) -> list[Point]:
    """Distinct candidate points: uniform samples plus 1-2 parameter mutations of parents."""
    seen = set(exclude)
    out: list[Point] = []

    def add(point: Point) -> None:
        key = space.key(point)
        if key not in seen:
            seen.add(key)
            out.append(point)

    if space.size <= n_random + n_local:
        for point in space.enumerate():
            add(point)
        return out
    for _ in range(n_random):
        add(space.sample(rng))
    if parents:
        for i in range(n_local):
            parent = parents[i % len(parents)]
            add(space.neighbors(parent, rng, changes=1 + int(rng.random() < 0.4)))
    return out


def pick_batch(space: Space, model: ConstrainedModel, pool: list[Point], n: int, *,
               pending: list[Point], checker: StaticChecker | None,
               static_cache: dict[tuple[Any, ...], str | None]) -> list[Point]:
    """The best ``n`` of ``pool`` by constrained EI, one at a time with a constant liar
    (each pick and every pending point is assumed to score the best value so far), skipping
    statically infeasible candidates."""
    if not pool:
        return []
    x = space.encode_many(pool)
    gp = model.objective_gp
    if gp is not None and model.best is not None and pending:
        xp = space.encode_many(pending)
        gp = gp.with_fantasy(xp, np.full(len(pending), model.best))
    chosen: list[Point] = []
    alive = np.ones(len(pool), dtype=bool)
    while len(chosen) < n and alive.any():
        score = model.acquisition(x, gp, points=pool)
        score = np.where(alive, score, -np.inf)
        order = np.argsort(-score, kind="stable")
        picked = None
        for i in order[: 200]:
            if not alive[i]:
                break
            alive[i] = False
            point = pool[int(i)]
            if checker is not None:
                key = space.key(point)
                if key not in static_cache:
                    static_cache[key] = checker(point)
                if static_cache[key] is not None:
                    continue
            picked = int(i)
            break
        if picked is None:  # the top candidates were all statically infeasible
            continue
        chosen.append(pool[picked])
        if gp is not None and model.best is not None and len(chosen) < n:
            gp = gp.with_fantasy(x[picked:picked + 1], np.array([model.best]))
    return chosen
