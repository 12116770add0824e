"""The CLIP ViT image tower (Radford et al. 2021) in Flax NNX, for CLIP-I: image embeddings and their cosines.

Architecture: Hugging Face `CLIPVisionModelWithProjection` (= OpenAI CLIP's `VisionTransformer`), any size:

* patch embedding (conv `patch`x`patch`, stride `patch`, no bias), a class token, learned position embeddings;
* `pre_layrnorm` (sic, the HF spelling), `num_hidden_layers` pre-norm transformer blocks (LayerNorm eps 1e-5,
  multi-head self-attention with q scaled by head_dim^-0.5, MLP fc1 -> activation -> fc2), with the
  activation `quick_gelu` (`x * sigmoid(1.702 x)`, every OpenAI CLIP) or `gelu` (exact erf, e.g. LAION);
* `post_layernorm` of the class token, then `visual_projection` (no bias) -> the image embedding
  `(..., projection_dim)` (unnormalised; cosines normalise).

The default (`CLIPVisionConfig()`) is ViT-L/14 at 224² (`openai/clip-vit-large-patch14`): hidden 1024, 24
layers, 16 heads, MLP 4096, projection 768. Which CLIP the GenXD paper used is not documented; ViT-L/14 is the
model most CLIP-I scripts use (inferred; see the spec).

Preprocessing (applied by :class:`CLIP`), as OpenAI `clip.load` / HF `CLIPImageProcessor`: images
`(..., H, W, 3)` in [0, 1] (float) or uint8 are resized so that the short side is `image_size` (224) with
bicubic resampling (PIL's: Keys cubic a = -0.5, widened by the scale when shrinking, i.e. antialiased;
computed in float32 here, whereas PIL rounds to uint8 after each pass), centre-cropped to `image_size`²
(offset `(H - size) // 2`, as HF), then normalised with mean (0.48145466, 0.4578275, 0.40821073) and std
(0.26862954, 0.26130258, 0.27577711). An image already at `image_size`² is not resampled.

Weights: the HF `CLIPModel` `model.safetensors` as published (text tower ignored) or a
`CLIPVisionModelWithProjection` file, loaded directly with :func:`load_clip`; the config comes from the
`config.json` next to it, from the metadata `genxd_jax.tools.convert_metrics clip` writes, or from the shapes.
"""

from __future__ import annotations

import dataclasses
import functools
import os

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

__all__ = ["CLIPVisionConfig", "CLIPVisionTower", "CLIP", "load_clip", "clip_similarity", "preprocess_images",
           "pil_bicubic_matrix", "CLIP_MEAN", "CLIP_STD"]

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
_HIGHEST = jax.lax.Precision.HIGHEST


@dataclasses.dataclass(frozen=True)
class CLIPVisionConfig:
    """CLIP vision tower hyper-parameters (HF `CLIPVisionConfig` names); defaults are ViT-L/14 at 224²."""

    hidden_size: int = 1024
    intermediate_size: int = 4096
    num_hidden_layers: int = 24
    num_attention_heads: int = 16
    patch_size: int = 14
    image_size: int = 224
    projection_dim: int = 768
    hidden_act: str = "quick_gelu"
    layer_norm_eps: float = 1e-5

    def __post_init__(self):
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"hidden_size {self.hidden_size} is not divisible by {self.num_attention_heads} heads")
        if self.image_size % self.patch_size:
            raise ValueError(f"image_size {self.image_size} is not a multiple of patch_size {self.patch_size}")
        if self.hidden_act not in _ACTIVATIONS:
            raise ValueError(f"hidden_act must be one of {sorted(_ACTIVATIONS)}, got {self.hidden_act!r}")


_ACTIVATIONS = {
    "quick_gelu": lambda x: x * jax.nn.sigmoid(1.702 * x),
    "gelu": lambda x: jax.nn.gelu(x, approximate=False),
    "gelu_new": lambda x: jax.nn.gelu(x, approximate=True),
    "gelu_pytorch_tanh": lambda x: jax.nn.gelu(x, approximate=True),
}


def _linear(din, dout, rngs, bias=True):
    return nnx.Linear(din, dout, use_bias=bias, precision=_HIGHEST, rngs=rngs)


class EncoderLayer(nnx.Module):
    def __init__(self, cfg: CLIPVisionConfig, rngs: nnx.Rngs):
        d = cfg.hidden_size
        self.heads = cfg.num_attention_heads
        self.act = cfg.hidden_act
        self.layer_norm1 = nnx.LayerNorm(d, epsilon=cfg.layer_norm_eps, rngs=rngs)
        self.q_proj, self.k_proj = _linear(d, d, rngs), _linear(d, d, rngs)
        self.v_proj, self.out_proj = _linear(d, d, rngs), _linear(d, d, rngs)
        self.layer_norm2 = nnx.LayerNorm(d, epsilon=cfg.layer_norm_eps, rngs=rngs)
        self.fc1 = _linear(d, cfg.intermediate_size, rngs)
        self.fc2 = _linear(cfg.intermediate_size, d, rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        b, n, d = x.shape
        hd = d // self.heads
        h = self.layer_norm1(x)
        q = self.q_proj(h).reshape(b, n, self.heads, hd) * (hd ** -0.5)
        k = self.k_proj(h).reshape(b, n, self.heads, hd)
        v = self.v_proj(h).reshape(b, n, self.heads, hd)
        att = jax.nn.softmax(jnp.einsum("bqhd,bkhd->bhqk", q, k, precision=_HIGHEST), axis=-1)
        o = jnp.einsum("bhqk,bkhd->bqhd", att, v, precision=_HIGHEST).reshape(b, n, d)
        x = x + self.out_proj(o)
        return x + self.fc2(_ACTIVATIONS[self.act](self.fc1(self.layer_norm2(x))))


class CLIPVisionTower(nnx.Module):
    """Normalised pixels `(B, S, S, 3)` (S = image_size) -> projected image embeddings `(B, projection_dim)`."""

    def __init__(self, cfg: CLIPVisionConfig, *, rngs: nnx.Rngs):
        d, p = cfg.hidden_size, cfg.patch_size
        self.cfg = cfg
        n = (cfg.image_size // p) ** 2 + 1
        self.patch_embedding = nnx.Param(jax.random.normal(rngs.params(), (p, p, 3, d)) * (3 * p * p) ** -0.5)
        self.class_embedding = nnx.Param(jax.random.normal(rngs.params(), (d,)) * d ** -0.5)
        self.position_embedding = nnx.Param(jax.random.normal(rngs.params(), (n, d)) * 0.02)
        self.pre_layrnorm = nnx.LayerNorm(d, epsilon=cfg.layer_norm_eps, rngs=rngs)
        self.layers = nnx.List([EncoderLayer(cfg, rngs) for _ in range(cfg.num_hidden_layers)])
        self.post_layernorm = nnx.LayerNorm(d, epsilon=cfg.layer_norm_eps, rngs=rngs)
        self.visual_projection = _linear(d, cfg.projection_dim, rngs, bias=False)

    def __call__(self, pixels: jax.Array) -> jax.Array:
        p = self.cfg.patch_size
        x = jax.lax.conv_general_dilated(pixels, self.patch_embedding[...], (p, p), "VALID",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=_HIGHEST)
        b = x.shape[0]
        x = x.reshape(b, -1, x.shape[-1])
        cls = jnp.broadcast_to(self.class_embedding[...], (b, 1, x.shape[-1]))
        x = jnp.concatenate([cls, x], axis=1) + self.position_embedding[...]
        x = self.pre_layrnorm(x)
        for layer in self.layers:
            x = layer(x)
        return self.visual_projection(self.post_layernorm(x[:, 0]))


def clip_state(model: CLIPVisionTower) -> dict[str, tuple[nnx.Variable, callable]]:
    """{HF key: (variable, torch-layout -> our-layout function)} for every weight of `model`."""
    t = (lambda a: a.T)
    same = (lambda a: a)
    out = {
        "vision_model.embeddings.patch_embedding.weight": (model.patch_embedding,
                                                           lambda a: a.transpose(2, 3, 1, 0)),
        "vision_model.embeddings.class_embedding": (model.class_embedding, same),
        "vision_model.embeddings.position_embedding.weight": (model.position_embedding, same),
        "visual_projection.weight": (model.visual_projection.kernel, t),
    }
    for name, ln in (("pre_layrnorm", model.pre_layrnorm), ("post_layernorm", model.post_layernorm)):
        out[f"vision_model.{name}.weight"] = (ln.scale, same)
        out[f"vision_model.{name}.bias"] = (ln.bias, same)
    for i, layer in enumerate(model.layers):
        pre = f"vision_model.encoder.layers.{i}."
        for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
            lin = getattr(layer, name)
            out[f"{pre}self_attn.{name}.weight"] = (lin.kernel, t)
            out[f"{pre}self_attn.{name}.bias"] = (lin.bias, same)
        for name in ("fc1", "fc2"):
            lin = getattr(layer, name)
            out[f"{pre}mlp.{name}.weight"] = (lin.kernel, t)
            out[f"{pre}mlp.{name}.bias"] = (lin.bias, same)
        for name in ("layer_norm1", "layer_norm2"):
            ln = getattr(layer, name)
            out[f"{pre}{name}.weight"] = (ln.scale, same)
            out[f"{pre}{name}.bias"] = (ln.bias, same)
    return out


def assign_clip(model: CLIPVisionTower, tensors: dict[str, np.ndarray], path) -> None:
    """Loads HF-layout vision tensors into `model` with a strict key and shape check (one error)."""
    from genxd_jax.evaluation.i3d import assign_state

    mapping = clip_state(model)
    converted = {k: mapping[k][1](np.asarray(v)) if k in mapping else np.asarray(v) for k, v in tensors.items()}
    assign_state({k: v for k, (v, _) in mapping.items()}, converted, path, "CLIP vision")


def _cubic(x: np.ndarray, a: float = -0.5) -> np.ndarray:
    x = np.abs(x)
    return np.where(x < 1, ((a + 2) * x - (a + 3)) * x * x + 1,
                    np.where(x < 2, (((x - 5) * x + 8) * x - 4) * a, 0.0))


def pil_bicubic_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights of PIL's `Image.resize(BICUBIC)` along one axis (PIL `precompute_coeffs`)."""
    scale = n_in / n_out
    filterscale = max(scale, 1.0)
    support = 2.0 * filterscale
    m = np.zeros((n_out, n_in))
    for i in range(n_out):
        center = (i + 0.5) * scale
        lo = max(int(center - support + 0.5), 0)
        hi = min(int(center + support + 0.5), n_in)
        j = np.arange(lo, hi)
        w = _cubic((j - center + 0.5) / filterscale)
        m[i, lo:hi] = w / w.sum()
    return m


def preprocess_images(images, size: int = 224) -> jax.Array:
    """Images `(..., H, W, 3)` in [0, 1] (or uint8) -> normalised `(..., size, size, 3)` float32 (see module doc)."""
    x = jnp.asarray(images)
    if x.ndim < 3 or x.shape[-1] != 3:
        raise ValueError(f"images must be (..., H, W, 3) RGB, got shape {x.shape}")
    x = x.astype(jnp.float32) / 255.0 if x.dtype == jnp.uint8 else x.astype(jnp.float32)
    h, w = x.shape[-3:-1]
    if (h, w) != (size, size):
        short = min(h, w)
        nh, nw = (size, int(size * w / h)) if h == short else (int(size * h / w), size)
        top, left = (nh - size) // 2, (nw - size) // 2
        ry = jnp.asarray(pil_bicubic_matrix(h, nh)[top:top + size], jnp.float32)
        rx = jnp.asarray(pil_bicubic_matrix(w, nw)[left:left + size], jnp.float32)
        x = jnp.einsum("yh,...hwc,xw->...yxc", ry, x, rx, precision=_HIGHEST)
    return (x - jnp.asarray(CLIP_MEAN)) / jnp.asarray(CLIP_STD)


@functools.partial(jax.jit, static_argnames=("graphdef", "size"))
def _clip_forward(graphdef, state, images, size):
    """Jitted forward; keyed on the architecture (graphdef), so reloading weights does not recompile."""
    net = nnx.merge(graphdef, state)
    x = preprocess_images(images, size)
    out = net(x.reshape((-1, *x.shape[-3:])))
    return out.reshape((*x.shape[:-3], out.shape[-1]))


class CLIP:
    """A loaded CLIP image tower: `clip(images)` maps `(..., H, W, 3)` images in [0, 1] (or uint8) to projected
    embeddings `(..., projection_dim)` float32, jitted (preprocessing included); `clip.embed(images,
    batch_size)` runs a large set in fixed-size batches and returns numpy."""

    def __init__(self, model: CLIPVisionTower):
        self.model = model
        self.config = model.cfg
        self._graphdef, self._state = nnx.split(model)

    def __call__(self, images) -> jax.Array:
        return _clip_forward(self._graphdef, self._state, jnp.asarray(images), self.config.image_size)

    def embed(self, images, batch_size: int = 16, progress: bool = False) -> np.ndarray:
        from tqdm import tqdm

        n = len(images)
        if n == 0:
            raise ValueError("no images to embed")
        out = []
        for start in tqdm(range(0, n, batch_size), desc="CLIP", unit="batch", disable=not progress):
            batch = np.stack([np.asarray(im) for im in images[start:start + batch_size]])
            real = len(batch)
            if real < batch_size and n > batch_size:
                batch = np.concatenate([batch, np.repeat(batch[-1:], batch_size - real, axis=0)])
            out.append(np.asarray(self(batch))[:real])
        return np.concatenate(out)


def clip_similarity(reference, images, model: CLIP | None = None) -> float:
    """CLIP-I: the mean over `images` of the cosine between each image's embedding and the reference's.

    With `model`, `reference` is one image `(H, W, 3)` and `images` is `(N, H', W', 3)` (any sizes; in [0, 1]
    or uint8). Without, they are embeddings already: `(D,)` and `(N, D)`. Computed in float64.
    """
    if model is not None:
        reference = model(np.asarray(reference)[None])[0]
        images = model.embed(images)
    ref = np.asarray(reference, np.float64).reshape(-1)
    emb = np.asarray(images, np.float64)
    if emb.ndim != 2 or emb.shape[1] != ref.shape[0] or len(emb) == 0:
        raise ValueError(f"clip_similarity: need a (D,) reference and (N, D) embeddings, got {ref.shape} and "
                         f"{emb.shape}")
    cos = emb @ ref / (np.linalg.norm(emb, axis=1) * np.linalg.norm(ref))
    return float(cos.mean())


def load_clip(path: str | os.PathLike, *, config: str | os.PathLike | None = None) -> CLIP:
    """Loads a CLIP vision tower from HF `model.safetensors` (CLIPModel or CLIPVisionModelWithProjection) or
    a file `convert_metrics clip` wrote; `config` names a HF config.json (default: the one next to the file)."""
    from genxd_jax.convert.metrics_weights_video import read_hf_clip

    tensors, cfg = read_hf_clip(path, config)
    model = nnx.eval_shape(lambda: CLIPVisionTower(CLIPVisionConfig(**cfg), rngs=nnx.Rngs(0)))
    assign_clip(model, tensors, path)
    return CLIP(model)
