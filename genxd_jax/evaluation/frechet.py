"""Fréchet distance between two sets of features (FID, FVD), in float64 on the host.

The Fréchet (2-Wasserstein) distance between the Gaussians fitted to two feature sets is

    d² = ||mu_a − mu_b||² + Tr(S_a + S_b − 2 (S_a S_b)^(1/2))

with `mu` the feature means and `S` the *unbiased* covariances (`np.cov`, normalised by N − 1), computed
in float64 with `scipy.linalg.sqrtm`, exactly as pytorch-fid 0.3.0 (`calculate_frechet_distance`),
clean-fid and StyleGAN-V's FVD do:

* when the matrix square root of the product is not finite (a singular product), it is recomputed on
  `(S_a + eps I)(S_b + eps I)` with `eps = 1e-6`;
* a complex square root whose diagonal has an imaginary part above 1e-3 is an error (numerical trouble,
  usually far too few samples for the feature dimension); otherwise its real part is used.

Units: the squared units of the features (FID on Inception pool3 features is unitless by convention).
The result is not clipped at zero: tiny negative values (−1e-10) can appear for identical statistics.
"""

from __future__ import annotations

import warnings

import numpy as np
import scipy.linalg

__all__ = ["feature_statistics", "fid", "frechet_distance", "frechet_distance_from_statistics"]

SINGULAR_OFFSET = 1e-6


def _as_features(x, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"frechet_distance: {name} must be a (num_samples, feature_dim) array, got shape {x.shape}")
    if x.shape[0] < 2:
        raise ValueError(f"frechet_distance: {name} has {x.shape[0]} sample(s); the unbiased covariance needs at "
                         "least 2 (and far more than feature_dim for a meaningful FID/FVD)")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"frechet_distance: {name} holds NaN or inf values")
    return x


def feature_statistics(features) -> tuple[np.ndarray, np.ndarray]:
    """Mean `(D,)` and unbiased covariance `(D, D)` (float64) of features of shape `(N, D)`, N >= 2."""
    x = _as_features(features, "features")
    return x.mean(axis=0), np.cov(x, rowvar=False, ddof=1).reshape(x.shape[1], x.shape[1])


def _sqrtm(m: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        # scipy >= 1.16 deprecates `disp`; the result is the same (no printed warning, no error estimate).
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", RuntimeWarning)  # "matrix is singular" from the Schur method
        out = scipy.linalg.sqrtm(m, disp=False)
    return out[0] if isinstance(out, tuple) else out


def frechet_distance_from_statistics(mu_a, sigma_a, mu_b, sigma_b, *, eps: float = SINGULAR_OFFSET) -> float:
    """Fréchet distance between N(mu_a, sigma_a) and N(mu_b, sigma_b), as pytorch-fid computes it.

    Args:
        mu_a, mu_b: means, shape `(D,)`.
        sigma_a, sigma_b: covariances, shape `(D, D)`.
        eps: diagonal offset added to both covariances when the square root of their product is not
            finite (pytorch-fid's 1e-6).

    Returns:
        the distance as a Python float (float64 arithmetic).
    """
    mu_a, mu_b = (np.atleast_1d(np.asarray(m, np.float64)) for m in (mu_a, mu_b))
    sigma_a, sigma_b = (np.atleast_2d(np.asarray(s, np.float64)) for s in (sigma_a, sigma_b))
    d = mu_a.shape[0]
    if mu_a.shape != (d,) or mu_b.shape != (d,) or sigma_a.shape != (d, d) or sigma_b.shape != (d, d):
        raise ValueError(f"frechet_distance: inconsistent statistics shapes mu_a {mu_a.shape}, sigma_a "
                         f"{sigma_a.shape}, mu_b {mu_b.shape}, sigma_b {sigma_b.shape}")
    diff = mu_a - mu_b
    covmean = _sqrtm(sigma_a @ sigma_b)
    if not np.all(np.isfinite(covmean)):
        offset = np.eye(d) * eps
        covmean = _sqrtm((sigma_a + offset) @ (sigma_b + offset))
    if np.iscomplexobj(covmean):
        imag = np.max(np.abs(np.diagonal(covmean).imag))
        if imag > 1e-3:
            raise ValueError(f"frechet_distance: the square root of the covariance product has an imaginary "
                             f"component of {imag:.3g} (numerically unstable; use more samples)")
        covmean = covmean.real
    return float(diff @ diff + np.trace(sigma_a) + np.trace(sigma_b) - 2.0 * np.trace(covmean))


def frechet_distance(features_a, features_b, *, eps: float = SINGULAR_OFFSET) -> float:
    """Fréchet distance between the Gaussians fitted to two feature sets (the FID / FVD formula).

    Args:
        features_a: `(N, D)` features of the first set (e.g. Inception pool3 of generated images), N >= 2.
        features_b: `(M, D)` features of the second set, same D, M >= 2.
        eps: see `frechet_distance_from_statistics`.

    Returns:
        `||mu_a − mu_b||² + Tr(S_a + S_b − 2 sqrtm(S_a S_b))` as a float, with means and unbiased (N − 1)
        covariances computed in float64.
    """
    a = _as_features(features_a, "features_a")
    b = _as_features(features_b, "features_b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"frechet_distance: feature dimensions differ: {a.shape[1]} (features_a) vs "
                         f"{b.shape[1]} (features_b)")
    return frechet_distance_from_statistics(*feature_statistics(a), *feature_statistics(b), eps=eps)


def fid(images_a, images_b, inception, *, batch_size: int = 50, resize: str | None = None,
        progress: bool = True) -> float:
    """FID between two image sets, with a loaded FID Inception (`load_inception`).

    Args:
        images_a, images_b: `(N, H, W, 3)` arrays in [0, 1] (any size; resized to 299² by `resize`), or
            iterables of such batches; each set needs at least 2 images (in practice thousands: FID is
            biased upwards for small N, and values are only comparable at equal N).
        inception: an `InceptionFID` (anything with `features_of(images, batch_size=, resize=, progress=)`).
        batch_size: images per network call.
        resize: `pytorch` (default, pytorch-fid), `tf1` or `clean`; see `genxd_jax.evaluation.resize`.
        progress: show progress bars.

    Returns:
        `frechet_distance` of the two sets' pool3 features (float64 statistics).
    """
    from genxd_jax.evaluation.resize import DEFAULT_FID_RESIZE

    resize = DEFAULT_FID_RESIZE if resize is None else resize
    kw = dict(batch_size=batch_size, resize=resize, progress=progress)
    feats_a = inception.features_of(images_a, desc="FID features (set a)", **kw)
    feats_b = inception.features_of(images_b, desc="FID features (set b)", **kw)
    return frechet_distance(feats_a, feats_b)
