"""Small data sets for energy-based models: 8x8 digits, bars and stripes, MNIST from IDX files.

Nothing here downloads anything. ``digits`` uses the copy of the UCI 8x8 digits that ships with
scikit-learn; ``mnist`` reads the four standard IDX files from a directory you name (raw or
gzip-compressed) and checks their md5 sums; ``load_idx`` reads one IDX file.

Binarisation (``binarize`` argument of ``digits`` and ``mnist``), applied to grey levels x in
[0, 1]:

- ``None``: no binarisation, the grey levels themselves.
- ``"threshold"``: 1 where x > 0.5, else 0 (deterministic).
- ``"stochastic"``: each pixel drawn once as Bernoulli(x) with ``numpy.random.default_rng(seed)``:
  1 where u < x for u uniform on [0, 1). The same seed gives the same data; pixels with x = 0
  are always 0 and pixels with x = 1 always 1.
"""

from __future__ import annotations

import gzip
import hashlib
import zlib
from os import PathLike
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "bernoulli_draw",
    "image_patches",
    "pca_whitening",
    "lagged",
    "MNIST_MD5",
    "bars_and_stripes",
    "digits",
    "digits_labels",
    "load_idx",
    "mnist",
]

BINARIZE_MODES = (None, "threshold", "stochastic")
BARS_AND_STRIPES_MAX = 16  # 2^17 - 2 images of 256 pixels

_DIGITS_SPLIT_SEED = 0  # the train/test split never depends on the user's seed
_CHUNK = 1 << 20  # bytes per read when hashing
_ROWS_PER_DRAW = 4096  # rows per block of uniforms in stochastic binarisation

# md5 of the standard MNIST files (LeCun's distribution): "gz" for the .gz files as published,
# "raw" for their decompressed contents. A gzip file that was re-compressed (other header or
# compression level) has another gz md5 but the same raw md5; it is accepted on the raw md5.
MNIST_MD5: dict[str, dict[str, str]] = {
    "train-images": {
        "gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "raw": "6bbc9ace898e44ae57da46a324031adb",
    },
    "train-labels": {
        "gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "raw": "a25bea736e30d166cdddb491f175f624",
    },
    "t10k-images": {
        "gz": "9fb629c4189551a2d022fa330f9573f3",
        "raw": "2646ac647ad5339dbf082846283269ea",
    },
    "t10k-labels": {
        "gz": "ec29112dd5afa0611ce80d1b7f02629c",
        "raw": "27ae3e4e09519cfbb04c329615203637",
    },
}

# IDX type code -> big-endian numpy dtype
_IDX_DTYPES: dict[int, str] = {
    0x08: ">u1",  # unsigned byte
    0x09: ">i1",  # signed byte
    0x0B: ">i2",  # short
    0x0C: ">i4",  # int
    0x0D: ">f4",  # float
    0x0E: ">f8",  # double
}

_GZIP_MAGIC = b"\x1f\x8b"


# --------------------------------------------------------------------------------------------
# argument checks and binarisation


def _check_binarize(binarize: object) -> None:
    if not (binarize is None or (isinstance(binarize, str) and binarize in BINARIZE_MODES)):
        raise ValueError(
            f"binarize must be one of None, 'threshold', 'stochastic'; got {binarize!r}"
        )


def _check_dtype(dtype: object) -> None:
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating-point torch.dtype; got {dtype!r}")


def _check_seed(seed: object) -> None:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int; got {seed!r}")


def _check_test_fraction(test_fraction: object) -> float:
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float)):
        raise ValueError(f"test_fraction must be a number in [0, 1); got {test_fraction!r}")
    if not 0.0 <= float(test_fraction) < 1.0:
        raise ValueError(f"test_fraction must be in [0, 1); got {test_fraction!r}")
    return float(test_fraction)


def _to_tensor(
    values: np.ndarray,
    scale: float,
    binarize: str | None,
    rng: np.random.Generator | None,
    dtype: torch.dtype,
) -> torch.Tensor:
    """Integer pixel values (N, D) -> a (N, D) tensor of ``dtype``: grey levels values / scale in
    [0, 1], binarised as ``binarize`` says.

    Works on blocks of rows to bound the memory. ``Generator.random`` fills doubles sequentially,
    so the stochastic draws are the same as one call over the whole (N, D) array.
    """
    out = torch.empty(values.shape, dtype=dtype)
    for start in range(0, values.shape[0], _ROWS_PER_DRAW):
        grey = values[start : start + _ROWS_PER_DRAW].astype(np.float64) / scale
        if binarize == "threshold":
            grey = (grey > 0.5).astype(np.float64)
        elif binarize == "stochastic":
            assert rng is not None
            grey = (rng.random(grey.shape) < grey).astype(np.float64)
        out[start : start + _ROWS_PER_DRAW] = torch.from_numpy(grey).to(dtype)
    return out


# --------------------------------------------------------------------------------------------
# 8x8 digits


def _digits_split(test_fraction: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(images 0..16 as int64 (N, 64), labels int64 (N,), train index, test index)."""
    from sklearn.datasets import load_digits  # bundled with scikit-learn, never downloaded

    bunch = load_digits()
    images = np.asarray(bunch.data, dtype=np.int64)
    labels = np.asarray(bunch.target, dtype=np.int64)
    n = images.shape[0]
    perm = np.random.default_rng(_DIGITS_SPLIT_SEED).permutation(n)
    n_test = int(round(test_fraction * n))
    return images, labels, perm[n_test:], perm[:n_test]


def digits(
    binarize: str | None = "threshold",
    seed: int = 0,
    test_fraction: float = 0.2,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's bundled 8x8 handwritten digits (1,797 images) as (train, test).

    Returns two tensors of shape (N_train, 64) and (N_test, 64) and dtype ``dtype``, each row one
    image flattened row-major. Pixels (0..16 in the source) are scaled to [0, 1] by dividing by 16
    and then binarised:

    - ``binarize=None``: grey levels k/16 in [0, 1].
    - ``"threshold"``: 1.0 where the grey level is > 0.5 (source value >= 9), else 0.0.
    - ``"stochastic"``: each pixel drawn once as Bernoulli(grey level) with
      ``numpy.random.default_rng(seed)`` (draws made over all 1,797 images in scikit-learn's order,
      so they do not depend on ``test_fraction``); values in {0.0, 1.0}.

    The split is fixed: a permutation from ``numpy.random.default_rng(0)``, independent of
    ``seed``; its first ``round(test_fraction * 1797)`` images (359 for 0.2) are the test set,
    the rest the training set, both in permutation order. ``digits_labels`` gives the labels in
    the same order. ``seed`` only affects stochastic binarisation.

    Raises ValueError for a ``binarize`` other than None, "threshold", "stochastic", a
    ``test_fraction`` outside [0, 1), a negative or non-int ``seed`` or a non-float ``dtype``.
    """
    _check_binarize(binarize)
    _check_seed(seed)
    _check_dtype(dtype)
    frac = _check_test_fraction(test_fraction)
    images, _, train_idx, test_idx = _digits_split(frac)
    rng = np.random.default_rng(seed) if binarize == "stochastic" else None
    data = _to_tensor(images, 16.0, binarize, rng, dtype)
    return data[torch.from_numpy(train_idx)], data[torch.from_numpy(test_idx)]


def digits_labels(test_fraction: float = 0.2) -> tuple[torch.Tensor, torch.Tensor]:
    """Class labels (0..9) of ``digits(test_fraction=...)`` as (train_labels, test_labels).

    Returns two int64 tensors of shape (N_train,) and (N_test,), row for row in the order of the
    images ``digits`` returns for the same ``test_fraction`` (whatever its ``binarize`` and
    ``seed``). Raises ValueError for a ``test_fraction`` outside [0, 1).
    """
    frac = _check_test_fraction(test_fraction)
    _, labels, train_idx, test_idx = _digits_split(frac)
    return torch.from_numpy(labels[train_idx].copy()), torch.from_numpy(labels[test_idx].copy())


# --------------------------------------------------------------------------------------------
# bars and stripes


def bars_and_stripes(n: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Every distinct n x n bars-and-stripes image, one per row, flattened row-major.

    An image is "bars" when all its rows are equal (each column constant) and "stripes" when all
    its columns are equal (each row constant); the 2**n patterns of each kind share the all-zero
    and the all-one image, which appear once. Returns a tensor of shape (2**(n+1) - 2, n*n) and
    dtype ``dtype`` with values in {0.0, 1.0}, rows sorted lexicographically (no binarisation is
    involved: the images are binary by construction). ``n=1`` gives [[0.], [1.]].

    Raises ValueError unless ``n`` is an int from 1 to ``BARS_AND_STRIPES_MAX`` (16: 131,070
    images of 256 pixels; the count doubles with each step) and ``dtype`` a floating-point
    torch.dtype.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be an int >= 1; got {n!r}")
    if n > BARS_AND_STRIPES_MAX:
        raise ValueError(
            f"bars_and_stripes({n}) would hold 2^{n + 1} - 2 images of {n * n} pixels; "
            f"n is at most {BARS_AND_STRIPES_MAX}"
        )
    _check_dtype(dtype)
    n = int(n)
    codes = np.arange(2**n, dtype=np.int64)
    bits = ((codes[:, None] >> np.arange(n - 1, -1, -1)) & 1).astype(np.uint8)  # (2**n, n)
    bars = np.broadcast_to(bits[:, None, :], (2**n, n, n))  # image[i, j] = bits[j]
    stripes = np.broadcast_to(bits[:, :, None], (2**n, n, n))  # image[i, j] = bits[i]
    images = np.concatenate([bars, stripes]).reshape(2 ** (n + 1), n * n)
    images = np.unique(images, axis=0)  # sorted rows, all-zero and all-one kept once
    return torch.from_numpy(images).to(dtype)


# --------------------------------------------------------------------------------------------
# IDX files


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == _GZIP_MAGIC


def load_idx(path: str | PathLike[str]) -> np.ndarray:
    """Read one IDX file (the MNIST format), raw or gzip-compressed.

    Compression is detected from the gzip magic bytes (1f 8b), not from the file name. The header
    is two zero bytes, a type code, the number of dimensions d, then d big-endian uint32 sizes;
    the payload is the big-endian values in C order. Supported type codes: 0x08 unsigned byte,
    0x09 signed byte, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64.

    Returns a writable numpy array of the given shape in native byte order with dtype uint8, int8,
    int16, int32, float32 or float64 (values as stored; no scaling or binarisation).

    Raises FileNotFoundError when ``path`` does not exist, and ValueError naming the file when the
    magic number is wrong, the type code is unknown, the header or payload is truncated, there are
    bytes after the payload, or the gzip stream is corrupt.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"IDX file not found: {path}")
    try:
        if _is_gzip(path):
            with gzip.open(path, "rb") as fh:
                raw = fh.read()
        else:
            raw = path.read_bytes()
    except (gzip.BadGzipFile, EOFError, zlib.error) as err:
        raise ValueError(f"{path}: corrupt or truncated gzip stream ({err})") from err

    if len(raw) < 4:
        raise ValueError(
            f"{path}: not an IDX file: {len(raw)} bytes, shorter than the 4-byte magic"
        )
    if raw[0] != 0 or raw[1] != 0:
        raise ValueError(
            f"{path}: bad IDX magic number 0x{raw[:4].hex()}: the first two bytes must be zero"
        )
    code, ndim = raw[2], raw[3]
    if code not in _IDX_DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in _IDX_DTYPES)
        raise ValueError(
            f"{path}: bad IDX magic number 0x{raw[:4].hex()}: unknown type code 0x{code:02X} "
            f"(known: {known})"
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(
            f"{path}: truncated IDX header: {ndim} dimensions need {header} bytes, "
            f"file has {len(raw)}"
        )
    shape = tuple(int(s) for s in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[code])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    found = len(raw) - header
    if found < expected:
        raise ValueError(
            f"{path}: truncated IDX payload: shape {shape} of {dtype.name} needs {expected} "
            f"bytes, found {found}"
        )
    if found > expected:
        raise ValueError(
            f"{path}: IDX payload too long: shape {shape} of {dtype.name} needs {expected} "
            f"bytes, found {found} ({found - expected} trailing bytes)"
        )
    values = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return values.astype(dtype.newbyteorder("="))  # a native-order, writable copy


# --------------------------------------------------------------------------------------------
# MNIST


def _mnist_candidates(stem: str) -> list[str]:
    """Accepted file names for one MNIST file, e.g. stem "train-images" (raw names first)."""
    prefix, kind = stem.split("-")
    dims = 3 if kind == "images" else 1
    names = [f"{prefix}-{kind}-idx{dims}-ubyte", f"{prefix}-{kind}.idx{dims}-ubyte"]
    return names + [name + ".gz" for name in names]


def _md5(path: Path, decompress: bool = False) -> str:
    """md5 of a file (or of its decompressed gzip contents), read in chunks."""
    digest = hashlib.md5()
    opener = gzip.open if decompress else open
    try:
        with opener(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(_CHUNK), b""):
                digest.update(chunk)
    except (gzip.BadGzipFile, EOFError, zlib.error) as err:
        raise ValueError(f"{path}: corrupt or truncated gzip stream ({err})") from err
    return digest.hexdigest()


def _verify_md5(path: Path, stem: str) -> None:
    """ValueError naming the file, the expected and the found md5 unless ``path`` is the standard
    file: a gzip file matches on its own md5 or on the md5 of its decompressed contents."""
    known = MNIST_MD5[stem]
    if _is_gzip(path):
        found_gz = _md5(path)
        if found_gz == known["gz"]:
            return
        found_raw = _md5(path, decompress=True)
        if found_raw == known["raw"]:
            return
        raise ValueError(
            f"{path}: md5 mismatch for MNIST {stem}: expected {known['gz']} (gzip file) or "
            f"{known['raw']} (decompressed), found {found_gz} (gzip file) and {found_raw} "
            f"(decompressed). Pass verify=False to load non-standard files."
        )
    found = _md5(path)
    if found != known["raw"]:
        raise ValueError(
            f"{path}: md5 mismatch for MNIST {stem}: expected {known['raw']}, found {found}. "
            f"Pass verify=False to load non-standard files."
        )


def mnist(
    directory: str | PathLike[str],
    binarize: str | None = None,
    seed: int = 0,
    verify: bool = True,
    return_labels: bool = False,
    dtype: torch.dtype = torch.float32,
) -> (
    tuple[torch.Tensor, torch.Tensor]
    | tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
):
    """MNIST from the four standard IDX files in ``directory`` (nothing is downloaded).

    Looks in ``directory`` for train-images, train-labels, t10k-images and t10k-labels, each under
    either spelling ("train-images-idx3-ubyte" or "train-images.idx3-ubyte", labels with idx1),
    raw or with ".gz" (compression detected from the file's contents); when several spellings are
    present the first of: dash raw, dot raw, dash .gz, dot .gz is used.

    Returns (train, test): tensors of shape (60000, 784) and (10000, 784) for the standard files
    (generally (N, rows*cols)), dtype ``dtype``, each row an image flattened row-major with pixel
    intensities k/255 in [0, 1], then binarised:

    - ``binarize=None``: grey levels in [0, 1].
    - ``"threshold"``: 1.0 where k/255 > 0.5 (k >= 128), else 0.0.
    - ``"stochastic"``: each pixel drawn once as Bernoulli(k/255) with
      ``numpy.random.default_rng(seed)`` (training images first, then test); values in {0, 1}.

    With ``return_labels=True`` returns ((train, train_labels), (test, test_labels)), labels
    int64 tensors of shape (N,) with values 0..9 for the standard files.

    With ``verify=True`` (default) each file's md5 is checked against ``MNIST_MD5``: a raw file
    against the raw md5; a gzip file against the published .gz md5 or, failing that, its
    decompressed contents against the raw md5.

    Raises FileNotFoundError (listing the names looked for) when ``directory`` or a file is
    missing, ValueError naming the file, the expected and the found md5 on a mismatch, ValueError
    for a malformed file (see ``load_idx``) or images and labels that do not fit together, and
    ValueError for a bad ``binarize``, ``seed`` or ``dtype``.
    """
    _check_binarize(binarize)
    _check_seed(seed)
    _check_dtype(dtype)
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"MNIST directory not found: {directory}")

    paths: dict[str, Path] = {}
    missing: list[str] = []
    for stem in MNIST_MD5:
        candidates = _mnist_candidates(stem)
        found = next((directory / c for c in candidates if (directory / c).is_file()), None)
        if found is None:
            missing.append(f"{stem} (looked for {', '.join(candidates)})")
        else:
            paths[stem] = found
    if missing:
        raise FileNotFoundError(f"MNIST files missing in {directory}: " + "; ".join(missing))

    if verify:
        for stem, path in paths.items():
            _verify_md5(path, stem)

    rng = np.random.default_rng(seed) if binarize == "stochastic" else None
    splits = []
    for prefix in ("train", "t10k"):
        img_path, lab_path = paths[f"{prefix}-images"], paths[f"{prefix}-labels"]
        images = load_idx(img_path)
        labels = load_idx(lab_path)
        if images.dtype != np.uint8 or images.ndim != 3:
            raise ValueError(
                f"{img_path}: MNIST images must be unsigned bytes of shape (N, rows, cols); got "
                f"{images.dtype} of shape {images.shape}"
            )
        if labels.dtype != np.uint8 or labels.ndim != 1:
            raise ValueError(
                f"{lab_path}: MNIST labels must be unsigned bytes of shape (N,); got "
                f"{labels.dtype} of shape {labels.shape}"
            )
        if labels.shape[0] != images.shape[0]:
            raise ValueError(
                f"{lab_path}: {labels.shape[0]} labels for {images.shape[0]} images in {img_path}"
            )
        data = _to_tensor(images.reshape(images.shape[0], -1), 255.0, binarize, rng, dtype)
        splits.append((data, torch.from_numpy(labels.astype(np.int64))))

    (train, train_labels), (test, test_labels) = splits
    if return_labels:
        return (train, train_labels), (test, test_labels)
    return train, test


def bernoulli_draw(batch, generator: torch.Generator | None = None):
    """Binary states drawn afresh from probabilities: x ~ Bernoulli(p) elementwise, for a tensor
    ``batch`` of p in [0, 1] or a dict of them (each drawn). As ``fit(..., batch_transform=...)``
    it binarises grey-level images anew every time an example is used, as Salakhutdinov &
    Hinton's DBM code does, instead of once for all (``mnist(binarize="stochastic")``)."""
    if isinstance(batch, dict):
        return {b: bernoulli_draw(x, generator) for b, x in batch.items()}
    if not torch.is_tensor(batch) or not batch.is_floating_point():
        raise ValueError(f"bernoulli_draw needs a float tensor of probabilities, got {batch!r}")
    if batch.numel() and not bool(((batch >= 0) & (batch <= 1)).all()):
        raise ValueError("bernoulli_draw needs probabilities in [0, 1]")
    return torch.bernoulli(batch, generator=generator)


def lagged(sequences, order: int) -> dict[str, torch.Tensor]:
    """Training pairs for a conditional model of frame t given the ``order`` frames before it.

    ``sequences``: one tensor (T, D) or a list of them. Returns ``{"past": (N, order * D),
    "v": (N, D)}`` with past = [x_{t-order}, ..., x_{t-1}] (oldest first) and v = x_t, for every t
    >= order of every sequence (N = sum of T - order).
    """
    if isinstance(order, bool) or not isinstance(order, int) or order < 1:
        raise ValueError(f"order must be an int >= 1, got {order!r}")
    seqs = [sequences] if torch.is_tensor(sequences) else list(sequences)
    pasts, frames = [], []
    for i, seq in enumerate(seqs):
        seq = torch.as_tensor(seq)
        if seq.dim() != 2:
            raise ValueError(f"sequence {i} must be (T, D), got shape {tuple(seq.shape)}")
        if seq.shape[0] <= order:
            raise ValueError(f"sequence {i} has {seq.shape[0]} frames; order {order} needs more")
        windows = seq.unfold(0, order + 1, 1).transpose(1, 2)  # (T - order, order + 1, D)
        pasts.append(windows[:, :order].flatten(1))
        frames.append(windows[:, order])
    return {"past": torch.cat(pasts), "v": torch.cat(frames)}


def image_patches(
    n: int,
    size: int = 8,
    seed: int = 0,
    dtype: torch.dtype = torch.float64,
    downsample: int = 1,
) -> torch.Tensor:
    """n random size x size grey-level patches of scikit-learn's two bundled photographs (drawn in
    turn, positions uniform with ``seed``), intensities in [0, 1], each patch's mean removed:
    shape (n, size * size). Ships with scikit-learn, so no download.

    ``downsample``: each photograph is first reduced by averaging blocks of downsample x
    downsample pixels, which removes most of the JPEG block artefacts and sensor noise of the
    full-resolution images (the patches then span downsample times as much of the scene)."""
    from sklearn.datasets import load_sample_images

    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}")
    if isinstance(size, bool) or not isinstance(size, int) or size < 2:
        raise ValueError(f"size must be an int >= 2, got {size!r}")
    if isinstance(downsample, bool) or not isinstance(downsample, int) or downsample < 1:
        raise ValueError(f"downsample must be an int >= 1, got {downsample!r}")
    _check_seed(seed)
    g = torch.Generator().manual_seed(seed)
    images = []
    for img in load_sample_images().images:
        grey = torch.tensor(img, dtype=torch.float64).mean(-1) / 255
        h, w = grey.shape[0] // downsample, grey.shape[1] // downsample
        grey = grey[: h * downsample, : w * downsample]
        images.append(grey.reshape(h, downsample, w, downsample).mean((1, 3)))
    out = []
    for k in range(n):
        img = images[k % len(images)]
        i = int(torch.randint(img.shape[0] - size, (1,), generator=g))
        j = int(torch.randint(img.shape[1] - size, (1,), generator=g))
        out.append(img[i : i + size, j : j + size].flatten())
    x = torch.stack(out)
    return (x - x.mean(1, keepdim=True)).to(dtype)


def pca_whitening(train: torch.Tensor, drop: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """(W, mean) such that (x - mean) @ W has identity covariance on ``train``, dropping the
    ``drop`` directions of smallest variance (1 for mean-removed patches, whose mean direction has
    none): W has shape (D, D - drop). Its columns are eigenvectors of the covariance divided by the
    square roots of their eigenvalues."""
    mean = train.mean(0)
    values, vectors = torch.linalg.eigh(torch.cov((train - mean).T))
    values, vectors = values[drop:], vectors[:, drop:]
    return vectors / values.sqrt(), mean
