"""Data sets: 8x8 digits, bars and stripes, IDX reading and MNIST (synthetic files; the real ones
when they are beside the repo). No network."""

from __future__ import annotations

import gzip
import hashlib
import math
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from ebm import datasets

REAL_MNIST = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "mnist"

N_DIGITS = 1797

# IDX type code -> numpy dtype, written independently of the module's own table
IDX_CODES = {
    0x08: np.uint8,
    0x09: np.int8,
    0x0B: np.int16,
    0x0C: np.int32,
    0x0D: np.float32,
    0x0E: np.float64,
}


def idx_bytes(array: np.ndarray, code: int) -> bytes:
    """An IDX file's bytes, built with struct (big-endian header and payload)."""
    header = struct.pack(">BBBB", 0, 0, code, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    payload = np.ascontiguousarray(array, dtype=np.dtype(IDX_CODES[code]).newbyteorder(">"))
    return header + payload.tobytes()


def write(path: Path, data: bytes, compress: bool) -> Path:
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


# --------------------------------------------------------------------------------------------
# digits


@pytest.fixture(scope="module")
def grey_digits():
    return datasets.digits(binarize=None)


def test_digits_shapes_and_dtype(grey_digits):
    train, test = grey_digits
    n_test = round(0.2 * N_DIGITS)
    assert train.shape == (N_DIGITS - n_test, 64)
    assert test.shape == (n_test, 64)
    assert train.dtype == test.dtype == torch.float32
    tr64, te64 = datasets.digits(binarize="threshold", dtype=torch.float64)
    assert tr64.dtype == te64.dtype == torch.float64
    assert tr64.shape == train.shape and te64.shape == test.shape
    tr, te = datasets.digits(test_fraction=0.5)
    assert te.shape == (round(0.5 * N_DIGITS), 64)
    assert tr.shape[0] + te.shape[0] == N_DIGITS


def test_digits_grey_levels_are_sixteenths(grey_digits):
    train, test = grey_digits
    both = torch.cat([train, test]).double()
    assert both.min() == 0.0 and both.max() == 1.0
    levels = torch.unique(both * 16)
    assert torch.equal(levels, torch.round(levels))
    assert set(levels.tolist()) == set(range(17))


def test_digits_split_is_the_documented_permutation(grey_digits):
    bunch = load_digits()
    perm = np.random.default_rng(0).permutation(N_DIGITS)
    n_test = round(0.2 * N_DIGITS)
    expected_test = torch.from_numpy(bunch.data[perm[:n_test]] / 16.0).float()
    expected_train = torch.from_numpy(bunch.data[perm[n_test:]] / 16.0).float()
    train, test = grey_digits
    assert torch.equal(test, expected_test)
    assert torch.equal(train, expected_train)
    train_labels, test_labels = datasets.digits_labels()
    assert train_labels.dtype == test_labels.dtype == torch.int64
    assert torch.equal(test_labels, torch.from_numpy(bunch.target[perm[:n_test]]).long())
    assert torch.equal(train_labels, torch.from_numpy(bunch.target[perm[n_test:]]).long())


def test_digits_threshold_values(grey_digits):
    train, test = datasets.digits(binarize="threshold")
    assert set(torch.unique(torch.cat([train, test])).tolist()) == {0.0, 1.0}
    assert torch.equal(train, (grey_digits[0] > 0.5).float())
    assert torch.equal(test, (grey_digits[1] > 0.5).float())


def test_digits_split_fixed_across_seeds(grey_digits):
    grey_train, grey_test = grey_digits
    a_train, a_test = datasets.digits(binarize="threshold", seed=0)
    b_train, b_test = datasets.digits(binarize="threshold", seed=123)
    assert torch.equal(a_train, b_train) and torch.equal(a_test, b_test)
    # stochastic draws differ between seeds but the images (hence the certain pixels) do not
    for seed in (0, 1, 7):
        s_train, s_test = datasets.digits(binarize="stochastic", seed=seed)
        for s, g in ((s_train, grey_train), (s_test, grey_test)):
            assert torch.all(s[g == 0.0] == 0.0)
            assert torch.all(s[g == 1.0] == 1.0)


def test_digits_stochastic_reproducible_and_seed_dependent(grey_digits):
    a_train, a_test = datasets.digits(binarize="stochastic", seed=5)
    b_train, b_test = datasets.digits(binarize="stochastic", seed=5)
    c_train, c_test = datasets.digits(binarize="stochastic", seed=6)
    assert torch.equal(a_train, b_train) and torch.equal(a_test, b_test)
    assert not torch.equal(a_train, c_train)
    assert not torch.equal(a_test, c_test)
    assert set(torch.unique(torch.cat([a_train, a_test])).tolist()) == {0.0, 1.0}
    # the draws do not depend on the split: an image has the same draw whichever side it is on
    _, test_10 = datasets.digits(binarize="stochastic", seed=5, test_fraction=0.1)
    assert torch.equal(test_10, a_test[: test_10.shape[0]])


def test_digits_stochastic_mean_matches_grey_mean(grey_digits):
    p = torch.cat(grey_digits).double()
    x = torch.cat(datasets.digits(binarize="stochastic", seed=11)).double()
    # the sum of independent Bernoulli(p_i) has variance sum p_i (1 - p_i)
    se_total = math.sqrt(float((p * (1 - p)).sum())) / p.numel()
    assert abs(float(x.mean() - p.mean())) < 5 * se_total
    # per pixel position, over the images
    se_pixel = torch.sqrt((p * (1 - p)).sum(0)) / p.shape[0]
    diff = (x.mean(0) - p.mean(0)).abs()
    assert torch.all(diff <= 5 * se_pixel)


@pytest.mark.parametrize("bad", ["Threshold", "bernoulli", "", 0.5, True])
def test_digits_bad_binarize(bad):
    with pytest.raises(ValueError, match="binarize") as info:
        datasets.digits(binarize=bad)
    assert "threshold" in str(info.value) and "stochastic" in str(info.value)


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5, "0.2"])
def test_digits_bad_test_fraction(bad):
    with pytest.raises(ValueError, match="test_fraction"):
        datasets.digits(test_fraction=bad)
    with pytest.raises(ValueError, match="test_fraction"):
        datasets.digits_labels(test_fraction=bad)


# --------------------------------------------------------------------------------------------
# bars and stripes


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_bars_and_stripes(n):
    data = datasets.bars_and_stripes(n)
    assert data.shape == (2 ** (n + 1) - 2, n * n)
    assert data.dtype == torch.float32
    assert set(torch.unique(data).tolist()) <= {0.0, 1.0}
    rows = [tuple(r) for r in data.tolist()]
    assert len(set(rows)) == len(rows)
    assert rows == sorted(rows)
    for row in data:
        img = row.reshape(n, n)
        bars = bool(torch.all(img == img[0:1, :]))  # all rows identical
        stripes = bool(torch.all(img == img[:, 0:1]))  # all columns identical
        assert bars or stripes
    assert [0.0] * (n * n) in data.tolist() and [1.0] * (n * n) in data.tolist()
    assert torch.equal(datasets.bars_and_stripes(n), data)  # deterministic


def test_bars_and_stripes_dtype():
    assert datasets.bars_and_stripes(2, dtype=torch.float64).dtype == torch.float64


@pytest.mark.parametrize("bad", [0, -1, 2.0, "3", True, None])
def test_bars_and_stripes_bad_n(bad):
    with pytest.raises(ValueError, match="n must be"):
        datasets.bars_and_stripes(bad)


# --------------------------------------------------------------------------------------------
# load_idx


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("code", sorted(IDX_CODES))
def test_load_idx_round_trip(tmp_path, code, compress):
    rng = np.random.default_rng(code)
    if np.issubdtype(IDX_CODES[code], np.integer):
        info = np.iinfo(IDX_CODES[code])
        array = rng.integers(info.min, info.max, size=(3, 4, 5), endpoint=True)
    else:
        array = rng.normal(size=(3, 4, 5)) * 1e3
    array = array.astype(IDX_CODES[code])
    path = write(tmp_path / "data.idx", idx_bytes(array, code), compress)
    loaded = datasets.load_idx(path)
    assert loaded.dtype == np.dtype(IDX_CODES[code])
    assert loaded.dtype.isnative
    assert loaded.shape == (3, 4, 5)
    np.testing.assert_array_equal(loaded, array)
    loaded[0, 0, 0] = 0  # writable
    np.testing.assert_array_equal(datasets.load_idx(str(path)), array)  # str path too


def test_load_idx_int32_big_endian_and_1d(tmp_path):
    array = np.array([-(2**31), -1, 0, 1, 258, 2**31 - 1], dtype=np.int32)
    raw = idx_bytes(array, 0x0C)
    assert raw[:8] == bytes([0, 0, 0x0C, 1, 0, 0, 0, 6])
    assert raw[8 + 4 * 4 : 8 + 5 * 4] == bytes([0, 0, 1, 2])  # 258 big-endian
    np.testing.assert_array_equal(datasets.load_idx(write(tmp_path / "a", raw, False)), array)
    np.testing.assert_array_equal(datasets.load_idx(write(tmp_path / "b", raw, True)), array)


def test_load_idx_detects_gzip_by_content_not_name(tmp_path):
    array = np.arange(12, dtype=np.uint8).reshape(3, 4)
    raw = idx_bytes(array, 0x08)
    gz_without_suffix = write(tmp_path / "images-idx3-ubyte", raw, True)
    raw_with_suffix = write(tmp_path / "images-idx3-ubyte.gz", raw, False)
    np.testing.assert_array_equal(datasets.load_idx(gz_without_suffix), array)
    np.testing.assert_array_equal(datasets.load_idx(raw_with_suffix), array)


def test_load_idx_empty_dimension(tmp_path):
    path = write(tmp_path / "empty", idx_bytes(np.zeros((0, 28, 28), np.uint8), 0x08), False)
    assert datasets.load_idx(path).shape == (0, 28, 28)


@pytest.mark.parametrize("compress", [False, True])
def test_load_idx_truncated_payload(tmp_path, compress):
    raw = idx_bytes(np.arange(24, dtype=np.int32).reshape(2, 3, 4), 0x0C)
    path = write(tmp_path / "short.idx", raw[:-3], compress)
    with pytest.raises(ValueError, match="truncated") as info:
        datasets.load_idx(path)
    assert "short.idx" in str(info.value)


def test_load_idx_trailing_bytes(tmp_path):
    raw = idx_bytes(np.arange(6, dtype=np.uint8), 0x08)
    path = write(tmp_path / "long.idx", raw + b"\x00", False)
    with pytest.raises(ValueError, match="long.idx"):
        datasets.load_idx(path)


def test_load_idx_truncated_header(tmp_path):
    raw = idx_bytes(np.zeros((2, 3, 4), np.uint8), 0x08)
    for i, cut in enumerate([0, 2, 10]):
        path = write(tmp_path / f"head{i}.idx", raw[:cut], False)
        with pytest.raises(ValueError, match=f"head{i}.idx"):
            datasets.load_idx(path)


@pytest.mark.parametrize("compress", [False, True])
def test_load_idx_bad_magic(tmp_path, compress):
    good = idx_bytes(np.zeros((2, 2), np.uint8), 0x08)
    for name, raw in [
        ("nonzero.idx", b"\x01" + good[1:]),
        ("zero2.idx", good[:1] + b"\x08" + good[2:]),
        ("code.idx", good[:2] + b"\x0a" + good[3:]),
    ]:
        path = write(tmp_path / name, raw, compress)
        with pytest.raises(ValueError, match="magic") as info:
            datasets.load_idx(path)
        assert name in str(info.value)


def test_load_idx_corrupt_gzip(tmp_path):
    raw = idx_bytes(np.arange(1000, dtype=np.int16), 0x0B)
    compressed = gzip.compress(raw)
    path = tmp_path / "cut.gz"
    path.write_bytes(compressed[: len(compressed) // 2])
    with pytest.raises(ValueError, match="cut.gz"):
        datasets.load_idx(path)


def test_load_idx_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere"):
        datasets.load_idx(tmp_path / "nothere")


# --------------------------------------------------------------------------------------------
# mnist on tiny synthetic IDX files

SPELLINGS = {
    "dash": {
        "train-images": "train-images-idx3-ubyte",
        "train-labels": "train-labels-idx1-ubyte",
        "t10k-images": "t10k-images-idx3-ubyte",
        "t10k-labels": "t10k-labels-idx1-ubyte",
    },
    "dot": {
        "train-images": "train-images.idx3-ubyte",
        "train-labels": "train-labels.idx1-ubyte",
        "t10k-images": "t10k-images.idx3-ubyte",
        "t10k-labels": "t10k-labels.idx1-ubyte",
    },
}


def fake_mnist(directory: Path, spelling: str = "dash", compress: bool = False) -> dict:
    """Four tiny IDX files (7 train, 5 test images of 4x3 pixels); returns the arrays."""
    rng = np.random.default_rng(2024)
    arrays = {
        "train-images": rng.integers(0, 256, size=(7, 4, 3), dtype=np.uint8),
        "train-labels": rng.integers(0, 10, size=7, dtype=np.uint8),
        "t10k-images": rng.integers(0, 256, size=(5, 4, 3), dtype=np.uint8),
        "t10k-labels": rng.integers(0, 10, size=5, dtype=np.uint8),
    }
    arrays["train-images"][0, 0, :3] = [0, 255, 128]  # the extremes and the threshold edge
    arrays["train-images"][0, 1, :2] = [127, 129]
    directory.mkdir(parents=True, exist_ok=True)
    for stem, array in arrays.items():
        name = SPELLINGS[spelling][stem] + (".gz" if compress else "")
        write(directory / name, idx_bytes(array, 0x08), compress)
    return arrays


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("spelling", ["dash", "dot"])
def test_mnist_synthetic(tmp_path, spelling, compress):
    arrays = fake_mnist(tmp_path, spelling, compress)
    train, test = datasets.mnist(tmp_path, verify=False)
    assert train.shape == (7, 12) and test.shape == (5, 12)
    assert train.dtype == test.dtype == torch.float32
    expected = torch.from_numpy(arrays["train-images"].reshape(7, 12).astype(np.float64) / 255)
    torch.testing.assert_close(train.double(), expected, rtol=0, atol=1e-7)
    assert train[0, 0] == 0.0 and train[0, 1] == 1.0
    (tr, tr_lab), (te, te_lab) = datasets.mnist(str(tmp_path), verify=False, return_labels=True)
    assert torch.equal(tr, train) and torch.equal(te, test)
    assert tr_lab.dtype == te_lab.dtype == torch.int64
    assert tr_lab.tolist() == arrays["train-labels"].tolist()
    assert te_lab.tolist() == arrays["t10k-labels"].tolist()


def test_mnist_mixed_spellings_and_compression(tmp_path):
    arrays = fake_mnist(tmp_path / "a", "dash", compress=False)
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for i, (stem, array) in enumerate(arrays.items()):
        spelling, compress = [("dash", False), ("dot", True), ("dot", False), ("dash", True)][i]
        name = SPELLINGS[spelling][stem] + (".gz" if compress else "")
        write(mixed / name, idx_bytes(array, 0x08), compress)
    a = datasets.mnist(tmp_path / "a", verify=False, return_labels=True)
    b = datasets.mnist(mixed, verify=False, return_labels=True)
    for (xa, la), (xb, lb) in zip(a, b, strict=True):
        assert torch.equal(xa, xb) and torch.equal(la, lb)


def test_mnist_binarize_modes(tmp_path):
    arrays = fake_mnist(tmp_path)
    pixels = torch.from_numpy(arrays["train-images"].reshape(7, 12).astype(np.int64))
    thr, _ = datasets.mnist(tmp_path, binarize="threshold", verify=False)
    assert torch.equal(thr, (pixels >= 128).float())
    assert thr[0, :3].tolist() == [0.0, 1.0, 1.0] and thr[0, 3:5].tolist() == [0.0, 1.0]
    a, a_test = datasets.mnist(tmp_path, binarize="stochastic", seed=3, verify=False)
    b, b_test = datasets.mnist(tmp_path, binarize="stochastic", seed=3, verify=False)
    assert torch.equal(a, b) and torch.equal(a_test, b_test)
    assert set(torch.unique(torch.cat([a.flatten(), a_test.flatten()])).tolist()) <= {0.0, 1.0}
    assert torch.all(a[pixels == 0] == 0.0) and torch.all(a[pixels == 255] == 1.0)
    c, _ = datasets.mnist(tmp_path, binarize="stochastic", seed=4, verify=False)
    assert not torch.equal(a, c)
    with pytest.raises(ValueError, match="binarize"):
        datasets.mnist(tmp_path, binarize="threshhold", verify=False)


def test_mnist_stochastic_is_bernoulli_of_intensity(tmp_path):
    # one image of 2,000 pixels at intensity 51 (p = 0.2): the fraction of ones is within 5 SE
    grey = np.full((1, 40, 50), 51, np.uint8)
    write(tmp_path / "train-images-idx3-ubyte", idx_bytes(grey, 0x08), False)
    write(tmp_path / "train-labels-idx1-ubyte", idx_bytes(np.zeros(1, np.uint8), 0x08), False)
    write(tmp_path / "t10k-images-idx3-ubyte", idx_bytes(np.zeros_like(grey), 0x08), False)
    write(tmp_path / "t10k-labels-idx1-ubyte", idx_bytes(np.zeros(1, np.uint8), 0x08), False)
    train, test = datasets.mnist(tmp_path, binarize="stochastic", seed=0, verify=False)
    p, n = 51 / 255, train.numel()
    assert abs(float(train.mean()) - p) < 5 * math.sqrt(p * (1 - p) / n)
    assert float(test.sum()) == 0.0


@pytest.mark.parametrize("compress", [False, True])
def test_mnist_verify_rejects_fake_files(tmp_path, compress):
    fake_mnist(tmp_path, "dash", compress)
    with pytest.raises(ValueError, match="md5") as info:
        datasets.mnist(tmp_path)
    message = str(info.value)
    assert "train-images" in message
    assert datasets.MNIST_MD5["train-images"]["raw"] in message


@pytest.mark.parametrize("compress", [False, True])
def test_mnist_verify_accepts_matching_md5(tmp_path, monkeypatch, compress):
    arrays = fake_mnist(tmp_path, "dot", compress)
    table = {
        stem: {"gz": "0" * 32, "raw": hashlib.md5(idx_bytes(array, 0x08)).hexdigest()}
        for stem, array in arrays.items()
    }  # a gzip file passes on the md5 of its decompressed contents
    monkeypatch.setattr(datasets, "MNIST_MD5", table)
    train, test = datasets.mnist(tmp_path, verify=True)
    assert train.shape == (7, 12) and test.shape == (5, 12)
    table["t10k-labels"]["raw"] = "f" * 32
    with pytest.raises(ValueError, match="t10k-labels.*md5"):
        datasets.mnist(tmp_path, verify=True)


def test_mnist_missing_files(tmp_path):
    fake_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(FileNotFoundError) as info:
        datasets.mnist(tmp_path, verify=False)
    message = str(info.value)
    assert "t10k-labels-idx1-ubyte" in message and "t10k-labels.idx1-ubyte.gz" in message
    assert "train-images" not in message
    with pytest.raises(FileNotFoundError, match="nowhere"):
        datasets.mnist(tmp_path / "nowhere", verify=False)


def test_mnist_labels_must_match_images(tmp_path):
    fake_mnist(tmp_path)
    write(tmp_path / "t10k-labels-idx1-ubyte", idx_bytes(np.zeros(4, np.uint8), 0x08), False)
    with pytest.raises(ValueError, match="t10k-labels"):
        datasets.mnist(tmp_path, verify=False)


@pytest.mark.skipif(not REAL_MNIST.is_dir(), reason=f"real MNIST files not found at {REAL_MNIST}")
def test_mnist_real_files_verified():
    (train, train_labels), (test, test_labels) = datasets.mnist(
        REAL_MNIST, verify=True, return_labels=True
    )
    assert train.shape == (60000, 784) and test.shape == (10000, 784)
    assert train_labels.shape == (60000,) and test_labels.shape == (10000,)
    assert train_labels.min() == 0 and train_labels.max() == 9
    assert test_labels.min() == 0 and test_labels.max() == 9
    assert torch.bincount(train_labels).min() > 5000  # every class well represented
    assert torch.bincount(test_labels).min() > 800
    assert float(train.min()) == 0.0 and float(train.max()) == 1.0
    assert 0.12 < float(train.mean()) < 0.14  # MNIST's well-known mean intensity, about 0.1307


def test_image_patches_are_mean_removed_crops_of_the_block_averaged_photographs():
    """The first patch (photograph 0, position from the seeded generator) equals the crop of the
    photograph averaged over 2 x 2 blocks (torch's avg_pool2d), minus its mean; bad sizes fail."""
    from sklearn.datasets import load_sample_images

    patches = datasets.image_patches(3, size=6, seed=4, downsample=2)
    assert patches.shape == (3, 36) and patches.dtype == torch.float64
    assert patches.mean(1).abs().max() < 1e-12
    grey = torch.tensor(load_sample_images().images[0], dtype=torch.float64).mean(-1) / 255
    pooled = torch.nn.functional.avg_pool2d(grey[None, None], 2)[0, 0]
    g = torch.Generator().manual_seed(4)
    i = int(torch.randint(pooled.shape[0] - 6, (1,), generator=g))
    j = int(torch.randint(pooled.shape[1] - 6, (1,), generator=g))
    crop = pooled[i : i + 6, j : j + 6].flatten()
    assert torch.allclose(patches[0], crop - crop.mean(), atol=1e-12)
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="downsample"):
            datasets.image_patches(2, downsample=bad)


def test_pca_whitening_gives_identity_covariance():
    x = datasets.image_patches(2000, size=4, seed=1)
    white, mean = datasets.pca_whitening(x, drop=3)
    y = (x - mean) @ white
    assert white.shape == (16, 13)
    assert torch.allclose(torch.cov(y.T), torch.eye(13, dtype=torch.float64), atol=1e-8)
