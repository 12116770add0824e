"""GenXD UNet and SVD VAE in Flax NNX (channels last), with loaders for the released checkpoint layout."""

from genxd_jax.models.loading import load_unet, load_vae, save_pretrained
from genxd_jax.models.pool8 import Pool8Autoencoder
from genxd_jax.models.unet import UNetConfig, UNetMVTemporalConditionModel, abstract_unet, build_unet
from genxd_jax.models.vae import AutoencoderKLTemporalDecoder, VAEConfig, abstract_vae, build_vae

__all__ = [
    "load_unet",
    "load_vae",
    "save_pretrained",
    "UNetConfig",
    "UNetMVTemporalConditionModel",
    "abstract_unet",
    "build_unet",
    "AutoencoderKLTemporalDecoder",
    "VAEConfig",
    "build_vae",
    "abstract_vae",
    "Pool8Autoencoder",
]
