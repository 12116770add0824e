"""Evaluation metrics for generated views (PSNR and SSIM in `image_metrics`)."""

from genxd_jax.evaluation.image_metrics import evaluate_views, psnr, ssim

__all__ = ["evaluate_views", "psnr", "ssim"]
