"""Team assignment by clustering embeddings, and its accuracy under the best label permutation.

    model = TeamModel(TeamConfig()).fit(features)    # N x D, e.g. all players of one video
    teams = model.predict(features)                  # 0 / 1 = the two teams, OTHER = 2
    teams = assign_teams(features)                   # fit + predict in one call

k-means with k=2 on the (L2-normalised) features, with two kinds of outlier handling for "other"
people (referees, goalkeepers: kits that match neither team), who become OTHER:
1. a k-means cluster holding less than `min_team_fraction` of the instances is not a team (a lone
   referee far from everyone grabs a centroid of its own): its members are OTHER and k-means runs
   again on the rest;
2. then an instance is OTHER when its distance to the nearest centroid exceeds

       threshold = max(outlier_ratio * median(d), separation_floor * |c0 - c1|)

   with d the nearest-centroid distances of the instances kept by step 1 (a robust scale: the
   median is that of team players as long as they are the majority) and |c0 - c1| the distance
   between the two team centroids (so that two very tight teams do not turn ordinary spread
   into outliers). The centroids are refitted `refits` times on the inliers only, so referees and
   goalkeepers do not drag them; the threshold stays fixed (recomputing it on inliers only would
   shrink it round after round).
Fewer than `min_outlier_fit` instances: no outliers at all. Team ids are canonical (team 0 is the
centroid with the smaller first coordinate that differs), so the same features give the same ids
on every run.

Accuracy: predicted ids are compared to true ids (0 / 1 / OTHER) under the swap of 0 and 1 that
scores best (OTHER is never permuted). `outfield` counts only true team players (a prediction of
OTHER is an error there); `all` counts everyone, OTHER included.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

OTHER = 2  # referee, goalkeeper: a person of neither team (the `team` column of predictions)
UNKNOWN = -1  # no team measured (not a player, or no embedding): the schema's "unknown"
TEAM_LABELS = {"team_a": 0, "team_b": 1}  # any other source label of a person is OTHER


@dataclass
class TeamConfig:
    outlier_ratio: float = 1.7  # OTHER beyond this multiple of the median nearest-centroid distance
    separation_floor: float = 0.5  # ... and beyond this fraction of the distance between the centroids
    min_team_fraction: float = 0.1  # a smaller k-means cluster is not a team: its members are OTHER
    min_outlier_fit: int = 4  # fewer fitted instances: nobody is an outlier
    refits: int = 2
    n_init: int = 10
    seed: int = 0


def normalise(features: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero)."""
    x = np.asarray(features, dtype=np.float64)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return np.divide(x, norm, out=np.zeros_like(x), where=norm > 0)


def _rows(features) -> np.ndarray:
    """N x D float array (N x 1 for N scalars; an empty input keeps its width when it has one)."""
    x = np.asarray(features, dtype=np.float64)
    return x if x.ndim == 2 else x.reshape(len(x), -1) if x.size else np.zeros((len(x), 1))


def _kmeans2(x: np.ndarray, cfg: TeamConfig) -> np.ndarray:
    """2 x D centroids (one point: that point twice)."""
    if len(np.unique(x, axis=0)) < 2:
        return np.stack([x.mean(0), x.mean(0)])
    from sklearn.cluster import KMeans

    km = KMeans(n_clusters=2, n_init=cfg.n_init, random_state=cfg.seed).fit(x)
    return km.cluster_centers_


def _canonical(centroids: np.ndarray) -> np.ndarray:
    diff = np.flatnonzero(~np.isclose(centroids[0], centroids[1]))
    if diff.size and centroids[0, diff[0]] > centroids[1, diff[0]]:
        return centroids[::-1].copy()
    return centroids


class TeamModel:
    """Two centroids and an outlier threshold, fitted on some instances, applied to any."""

    def __init__(self, cfg: TeamConfig = TeamConfig()):
        self.cfg = cfg
        self.centroids: np.ndarray | None = None
        self.threshold = np.inf

    def distances(self, features: np.ndarray) -> np.ndarray:
        """N x 2 distances of the normalised features to the centroids."""
        x = normalise(features)
        return np.linalg.norm(x[:, None, :] - self.centroids[None], axis=2)

    def fit(self, features: np.ndarray) -> "TeamModel":
        x = normalise(_rows(features))
        self.threshold = np.inf
        self.centroids = None
        if not len(x):
            return self
        self.centroids = _canonical(_kmeans2(x, self.cfg))
        if len(x) < self.cfg.min_outlier_fit:
            return self
        keep = np.ones(len(x), dtype=bool)
        for _ in range(self.cfg.refits + 1):  # 1. small clusters are not teams
            nearest = self.distances(x[keep]).argmin(1)
            sizes = np.bincount(nearest, minlength=2)
            small = int(sizes.argmin())
            if sizes[small] >= self.cfg.min_team_fraction * keep.sum() or keep.sum() - sizes[small] < 2:
                break
            keep[np.flatnonzero(keep)[nearest == small]] = False
            self.centroids = _canonical(_kmeans2(x[keep], self.cfg))
        d = self.distances(x).min(1)  # 2. a fixed robust threshold, centroids refitted on inliers
        separation = float(np.linalg.norm(self.centroids[0] - self.centroids[1]))
        self.threshold = max(self.cfg.outlier_ratio * float(np.median(d[keep])), self.cfg.separation_floor * separation)
        for _ in range(self.cfg.refits):
            new_keep = keep & (self.distances(x).min(1) <= self.threshold)
            if new_keep.sum() < 2 or np.array_equal(new_keep, keep):
                break
            keep = new_keep
            self.centroids = _canonical(_kmeans2(x[keep], self.cfg))
        return self

    def state(self) -> dict:
        """JSON-safe fitted state (centroids None when fitted on nothing)."""
        return {"centroids": None if self.centroids is None else self.centroids.tolist(),
                "threshold": float(self.threshold)}

    @classmethod
    def from_state(cls, state: dict, cfg: TeamConfig = TeamConfig()) -> "TeamModel":
        model = cls(cfg)
        model.centroids = None if state["centroids"] is None else np.asarray(state["centroids"], dtype=np.float64)
        model.threshold = float(state["threshold"])
        return model

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Team id per instance: 0, 1 or OTHER (int64)."""
        n = len(features)
        if n == 0:
            return np.zeros(0, dtype=np.int64)
        if self.centroids is None:
            raise ValueError("TeamModel.predict before fit (or fitted on no instance)")
        d = self.distances(_rows(features))
        teams = d.argmin(1).astype(np.int64)
        teams[d.min(1) > self.threshold] = OTHER
        return teams


def assign_teams(features: np.ndarray, cfg: TeamConfig = TeamConfig()) -> np.ndarray:
    """Fit on `features` and label them (0 / 1 / OTHER); an empty input gives an empty array."""
    return TeamModel(cfg).fit(features).predict(features)


def true_teams(labels) -> np.ndarray:
    """Source labels (`team_a`, `team_b`, `referee`, `goalkeeper_a`...) -> 0 / 1 / OTHER."""
    return np.array([TEAM_LABELS.get(str(label), OTHER) for label in labels], dtype=np.int64)


def swap(teams: np.ndarray) -> np.ndarray:
    out = np.asarray(teams).copy()
    out[teams == 0], out[teams == 1] = 1, 0
    return out


def _correct(pred: np.ndarray, truth: np.ndarray, outfield: bool) -> tuple[int, int]:
    sel = truth != OTHER if outfield else np.ones(len(truth), dtype=bool)
    return int(np.count_nonzero(pred[sel] == truth[sel])), int(np.count_nonzero(sel))


def permutation_counts(pred, truth, swapped: bool | None = None) -> dict[str, tuple[int, int]]:
    """(correct, total) for `outfield` and `all`, under the best swap (or the one given)."""
    pred, truth = np.asarray(pred, dtype=np.int64), np.asarray(truth, dtype=np.int64)
    if pred.shape != truth.shape:
        raise ValueError(f"{pred.shape[0]} predictions for {truth.shape[0]} true labels")
    if swapped is None:
        swapped = best_swap(pred, truth)
    p = swap(pred) if swapped else pred
    return {"outfield": _correct(p, truth, True), "all": _correct(p, truth, False)}


def best_swap(pred, truth) -> bool:
    """Whether swapping teams 0 and 1 of `pred` matches `truth` better (ties: no swap).

    Scored on all instances (outfield first, then all as a tie-break)."""
    pred, truth = np.asarray(pred, dtype=np.int64), np.asarray(truth, dtype=np.int64)
    keep = _correct(pred, truth, True)[0], _correct(pred, truth, False)[0]
    swapped = _correct(swap(pred), truth, True)[0], _correct(swap(pred), truth, False)[0]
    return swapped > keep


def accuracy(counts: tuple[int, int]) -> float:
    correct, total = counts
    return correct / total if total else float("nan")


def team_accuracy(pred, truth) -> dict[str, float]:
    """{"outfield": acc, "all": acc} under the best swap of the two team ids (NaN with no instance)."""
    return {k: accuracy(v) for k, v in permutation_counts(pred, truth).items()}
