"""Geometry on the unit hypersphere: geodesics, the Fréchet (Riemannian) mean and spherical k-means.

HaLP's release clusters queue keys with geomstats' ``RiemannianKMeans`` on the hypersphere (k-means++ seeding,
geodesic distance, centroids as Fréchet means found by gradient descent with step 1, tolerance 1e-3). This module is
that algorithm in torch, seeded by an explicit generator, so a run (and its resume) is reproducible.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["geodesic_distance", "log_map", "exp_map", "frechet_mean", "spherical_kmeans"]


def geodesic_distance(a: Tensor, b: Tensor) -> Tensor:
    """Great-circle distances (radians) between unit rows: (n, d) x (k, d) -> (n, k)."""
    return torch.arccos((a @ b.t()).clamp(-1.0, 1.0))


def log_map(base: Tensor, points: Tensor) -> Tensor:
    """Tangent vectors at unit ``base`` (d,) pointing to unit ``points`` (n, d), of length their geodesic distance."""
    cos = (points @ base).clamp(-1.0, 1.0).unsqueeze(1)
    direction = points - cos * base
    norm = direction.norm(dim=1, keepdim=True)
    theta = torch.arccos(cos)
    return torch.where(norm > 1e-12, direction * theta / norm.clamp_min(1e-12), torch.zeros_like(direction))


def exp_map(base: Tensor, tangent: Tensor) -> Tensor:
    """The point reached from unit ``base`` (d,) along the tangent vector ``tangent`` (d,)."""
    norm = tangent.norm()
    if norm < 1e-12:
        return base.clone()
    return F.normalize(torch.cos(norm) * base + torch.sin(norm) * tangent / norm, dim=0)


def frechet_mean(points: Tensor, init: Tensor | None = None, step: float = 1.0, max_iter: int = 32,
                 tol: float = 1e-4) -> Tensor:
    """The point minimising the summed squared geodesic distances to unit ``points`` (n, d), by Riemannian gradient
    descent from ``init`` (default: the normalised Euclidean mean) with step ``step`` (geomstats' defaults)."""
    mean = F.normalize(points.mean(0), dim=0) if init is None else init.clone()
    for _ in range(max_iter):
        gradient = log_map(mean, points).mean(0)
        if gradient.norm() < tol:
            break
        mean = exp_map(mean, step * gradient)
    return mean


def _kmeans_pp(points: Tensor, k: int, generator: torch.Generator) -> Tensor:
    """k-means++ seeding with the squared geodesic distance."""
    n = points.shape[0]
    first = int(torch.randint(n, (1,), generator=generator))
    centers = [points[first]]
    nearest = geodesic_distance(points, centers[0][None]).squeeze(1)
    for _ in range(k - 1):
        weights = nearest ** 2
        if weights.sum() <= 0:  # every point coincides with a centre already
            index = int(torch.randint(n, (1,), generator=generator))
        else:
            index = int(torch.multinomial(weights, 1, generator=generator))
        centers.append(points[index])
        nearest = torch.minimum(nearest, geodesic_distance(points, points[index][None]).squeeze(1))
    return torch.stack(centers)


@torch.no_grad()
def spherical_kmeans(points: Tensor, k: int, generator: torch.Generator | None = None, max_iter: int = 100,
                     tol: float = 1e-3) -> Tensor:
    """``k`` centroids (k, d) of unit ``points`` (n, d) on the hypersphere.

    Lloyd iterations: assign each point to the centroid at the smallest geodesic distance, move each centroid to the
    Fréchet mean of its points (an empty cluster takes a random point), stop when the centroids moved less than
    ``tol`` (mean geodesic distance) or after ``max_iter`` iterations.
    """
    if points.dim() != 2 or points.shape[0] < k:
        raise ValueError(f"spherical k-means needs at least k={k} points as an (n, d) tensor, got "
                         f"{tuple(points.shape)}")
    generator = generator or torch.Generator().manual_seed(0)
    points = F.normalize(points.detach().float().cpu(), dim=1)
    centroids = _kmeans_pp(points, k, generator)
    for _ in range(max_iter):
        assignment = (points @ centroids.t()).argmax(1)
        previous = centroids.clone()
        for c in range(k):
            members = points[assignment == c]
            if len(members):
                centroids[c] = frechet_mean(members, init=centroids[c])
            else:
                centroids[c] = points[int(torch.randint(points.shape[0], (1,), generator=generator))]
        moved = torch.arccos((previous * centroids).sum(1).clamp(-1.0, 1.0)).mean()
        if moved < tol:
            break
    return centroids
