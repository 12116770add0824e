"""The paper's evaluation metrics.

- Pixel metrics: ``psnr``, ``ssim`` and ``evaluate_views`` (`image_metrics`, dm-pix underneath).
- LPIPS v0.1 (AlexNet / VGG16): ``load_lpips`` (`lpips`).
- FID: the 2015-12-05 Inception's pool3 features, ``load_inception`` (`inception`), and ``fid`` /
  ``frechet_distance`` in float64 (`frechet`).
- FVD: the Kinetics-400 I3D, ``load_i3d`` and ``fvd`` (`i3d`).
- CLIP-I: a CLIP ViT image tower, ``load_clip`` and ``clip_similarity`` (`clip`).

Every network loads a safetensors file in its reference PyTorch module's ``state_dict()`` layout;
``python -m genxd_jax.tools.convert_metrics`` writes them from the public weight files.
"""

from genxd_jax.evaluation.clip import CLIP, clip_similarity, load_clip
from genxd_jax.evaluation.frechet import fid, frechet_distance
from genxd_jax.evaluation.i3d import I3D, fvd, load_i3d
from genxd_jax.evaluation.image_metrics import evaluate_views, psnr, ssim
from genxd_jax.evaluation.inception import InceptionFID, load_inception
from genxd_jax.evaluation.lpips import LPIPS, load_lpips

__all__ = [
    "CLIP",
    "I3D",
    "LPIPS",
    "InceptionFID",
    "clip_similarity",
    "evaluate_views",
    "fid",
    "frechet_distance",
    "fvd",
    "load_clip",
    "load_i3d",
    "load_inception",
    "load_lpips",
    "psnr",
    "ssim",
]
