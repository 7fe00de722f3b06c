"""Document corpora as count matrices: a bag-of-words file reader, the Reuters sample that ships
with the ``lda`` package (offline), the 20 Newsgroups "bydate" bag-of-words files and the RCV1-v2
token files from a directory where a user has them, a vocabulary cut to the most frequent words,
and synthetic corpora drawn from a mixture of unigrams whose exact log-likelihood is known.
Nothing is downloaded.

A corpus is a float tensor of counts (documents, vocabulary) with its vocabulary (a list of
words) and, where the files give them, labels; it is what ``ebm.models.replicated_softmax``
trains on as ``{"v": counts}``.
"""

from __future__ import annotations

import importlib.util
import math
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "Corpus",
    "read_ldac",
    "reuters_sample",
    "newsgroups_bydate",
    "rcv1_tokens",
    "most_frequent",
    "split",
    "unigram_mixture",
]


@dataclass
class Corpus:
    """Word counts (documents, vocabulary) as float32, the vocabulary's words, and one label
    per document where the source gives them (else None)."""

    counts: torch.Tensor
    vocabulary: list[str]
    labels: torch.Tensor | None = None
    extras: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.counts.dim() != 2 or self.counts.shape[1] != len(self.vocabulary):
            raise ValueError(
                f"counts of shape {tuple(self.counts.shape)} do not match a vocabulary of "
                f"{len(self.vocabulary)} words"
            )

    @property
    def lengths(self) -> torch.Tensor:
        """The number of words of each document (int64)."""
        return self.counts.sum(-1).round().to(torch.int64)

    def __len__(self) -> int:
        return self.counts.shape[0]


def read_ldac(path: str | PathLike[str], vocab_size: int | None = None) -> torch.Tensor:
    """Counts (documents, vocabulary) from a file in LDA-C format: one document per line,
    ``N id:count id:count ...`` with N the number of distinct words and ids from 0. The
    vocabulary size is ``vocab_size`` or the largest id + 1. A malformed line, a negative or
    fractional count, an id out of range or an N that does not match is refused naming the file
    and line."""
    path = Path(path)
    rows: list[list[tuple[int, int]]] = []
    with open(path) as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            rows.append(_ldac_line(line, path, number))
    largest = max((i for row in rows for i, _ in row), default=-1)
    size = largest + 1 if vocab_size is None else vocab_size
    if largest >= size:
        raise ValueError(f"{path}: word id {largest} is outside a vocabulary of {size}")
    counts = torch.zeros(len(rows), size)
    for d, row in enumerate(rows):
        for i, c in row:
            counts[d, i] += c
    return counts


def _ldac_line(line: str, path: Path, number: int) -> list[tuple[int, int]]:
    fields = line.split()
    try:
        n = int(fields[0])
        pairs = [tuple(int(x) for x in f.split(":")) for f in fields[1:]]
    except ValueError as err:
        raise ValueError(f"{path}, line {number}: not LDA-C ({err})") from err
    if any(len(p) != 2 for p in pairs) or n != len(pairs):
        raise ValueError(f"{path}, line {number}: {n} words announced, {len(pairs)} id:count pairs")
    if any(i < 0 or c < 0 for i, c in pairs):
        raise ValueError(f"{path}, line {number}: a negative word id or count")
    return pairs


def _lda_package_file(name: str) -> Path:
    spec = importlib.util.find_spec("lda")
    if spec is None or spec.origin is None:
        raise ValueError("the Reuters sample ships with the 'lda' package: pip install lda")
    path = Path(spec.origin).parent / "tests" / name
    if not path.exists():
        raise ValueError(f"the installed 'lda' package has no {name} (expected at {path})")
    return path


def reuters_sample() -> Corpus:
    """The 395 Reuters news stories (vocabulary of 4,258 words, stop words removed) that ship
    with the ``lda`` package (read from its files, not through its code), with their titles in
    ``extras["titles"]``. Offline: the files are part of the installed package."""
    vocabulary = _lda_package_file("reuters.tokens").read_text().split()
    counts = read_ldac(_lda_package_file("reuters.ldac"), vocab_size=len(vocabulary))
    titles = _lda_package_file("reuters.titles").read_text().splitlines()
    if len(titles) != len(counts):
        raise ValueError(f"{len(titles)} titles for {len(counts)} Reuters documents")
    return Corpus(counts, vocabulary, extras={"titles": titles})


def newsgroups_bydate(directory: str | PathLike[str]) -> tuple[Corpus, Corpus]:
    """(train, test) of the 20 Newsgroups "bydate" bag-of-words files in ``directory``:
    ``train.data`` and ``test.data`` (lines ``document word count``, numbered from 1),
    ``train.label`` and ``test.label`` (a newsgroup number per document) and ``vocabulary.txt``
    (one word per line). The files are checked: every id in range, counts positive integers, one
    label per document; a missing file is named."""
    directory = Path(directory)
    names = ["train.data", "train.label", "test.data", "test.label", "vocabulary.txt"]
    missing = [n for n in names if not (directory / n).exists()]
    if missing:
        raise ValueError(f"{directory} lacks the 20 Newsgroups file(s) {missing}")
    vocabulary = (directory / "vocabulary.txt").read_text().split()
    return tuple(_newsgroups_part(directory, part, vocabulary) for part in ("train", "test"))


def _newsgroups_part(directory: Path, part: str, vocabulary: list[str]) -> Corpus:
    data_path = directory / f"{part}.data"
    try:
        triples = np.loadtxt(data_path, dtype=np.int64, ndmin=2)
        labels = np.loadtxt(directory / f"{part}.label", dtype=np.int64, ndmin=1)
    except ValueError as err:
        raise ValueError(
            f"{data_path}: expected integer lines 'document word count' ({err})"
        ) from err
    if triples.shape[1] != 3:
        raise ValueError(f"{data_path}: expected 3 columns, got {triples.shape[1]}")
    docs, words, counts = triples.T
    if docs.min() < 1 or words.min() < 1 or words.max() > len(vocabulary) or counts.min() < 1:
        raise ValueError(
            f"{data_path}: document and word numbers start at 1, words end at the vocabulary's "
            f"{len(vocabulary)}, counts are >= 1"
        )
    if docs.max() != len(labels):
        raise ValueError(f"{data_path}: {docs.max()} documents but {len(labels)} labels")
    matrix = torch.zeros(len(labels), len(vocabulary))
    matrix.index_put_(
        (torch.from_numpy(docs - 1), torch.from_numpy(words - 1)),
        torch.from_numpy(counts).float(),
        accumulate=True,
    )
    return Corpus(matrix, list(vocabulary), labels=torch.from_numpy(labels))


def rcv1_tokens(
    directory: str | PathLike[str], vocab_size: int = 10_000, files: list[str] | None = None
) -> Corpus:
    """Reuters RCV1-v2 as the token files of Lewis et al. (2004), ``lyrl2004_tokens_*.dat`` in
    ``directory`` (plain or ``.gz``; by default every such file there, in name order): records
    ``.I <id>`` / ``.W`` / the document's stemmed tokens, separated by blank lines. The
    vocabulary is the ``vocab_size`` most frequent tokens over the files read (ties by first
    appearance); ``extras["ids"]`` holds the document ids. A record without ``.I`` and ``.W``,
    or a file not found, is refused by name."""
    directory = Path(directory)
    if files is None:
        paths = sorted(directory.glob("lyrl2004_tokens_*.dat*"))
        if not paths:
            raise ValueError(f"{directory} holds no lyrl2004_tokens_*.dat files")
    else:
        paths = [directory / f for f in files]
        missing = [str(p) for p in paths if not p.exists()]
        if missing:
            raise ValueError(f"RCV1 token file(s) not found: {missing}")
    ids, documents = [], []
    for path in paths:
        for doc_id, tokens in _rcv1_records(path):
            ids.append(doc_id)
            documents.append(tokens)
    frequency: dict[str, int] = {}
    for tokens in documents:
        for t in tokens:
            frequency[t] = frequency.get(t, 0) + 1
    ranked = sorted(frequency, key=lambda t: -frequency[t])[:vocab_size]
    index = {t: i for i, t in enumerate(ranked)}
    counts = torch.zeros(len(documents), len(ranked))
    for d, tokens in enumerate(documents):
        for t in tokens:
            i = index.get(t)
            if i is not None:
                counts[d, i] += 1
    return Corpus(counts, ranked, extras={"ids": ids})


def _rcv1_records(path: Path):
    """(id, tokens) of each record of one token file."""
    import gzip

    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as fh:
        text = fh.read()
    for number, record in enumerate(text.split("\n\n"), 1):
        lines = record.strip().splitlines()
        if not lines:
            continue
        if len(lines) < 2 or not lines[0].startswith(".I ") or lines[1].strip() != ".W":
            raise ValueError(f"{path}: record {number} does not start with '.I <id>' and '.W'")
        yield int(lines[0].split()[1]), " ".join(lines[2:]).split()


def most_frequent(train: Corpus, size: int, *others: Corpus) -> list[Corpus]:
    """The corpora cut to the ``size`` words most frequent in ``train`` (ties by word number),
    documents left without a word dropped: [train, *others] in the new vocabulary."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 2:
        raise ValueError(f"size must be an int >= 2, got {size!r}")
    totals = train.counts.sum(0)
    order = torch.argsort(-totals, stable=True)[: min(size, len(train.vocabulary))]
    keep = torch.sort(order).values
    out = []
    for corpus in (train, *others):
        if corpus.counts.shape[1] != train.counts.shape[1]:
            raise ValueError("the corpora must share train's vocabulary")
        counts = corpus.counts[:, keep]
        nonempty = counts.sum(-1) > 0
        labels = corpus.labels[nonempty] if corpus.labels is not None else None
        extras = dict(corpus.extras)
        extras["documents_kept"] = nonempty.nonzero().flatten()
        vocab = [corpus.vocabulary[i] for i in keep.tolist()]
        out.append(Corpus(counts[nonempty], vocab, labels, extras))
    return out


def split(corpus: Corpus, test_fraction: float = 0.2, seed: int = 0) -> tuple[Corpus, Corpus]:
    """(train, test): a seeded random split of the documents."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction!r}")
    n = len(corpus)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    cut = n - max(1, round(n * test_fraction))
    parts = []
    for index in (order[:cut], order[cut:]):
        labels = corpus.labels[index] if corpus.labels is not None else None
        parts.append(Corpus(corpus.counts[index], corpus.vocabulary, labels, {"index": index}))
    return parts[0], parts[1]


def unigram_mixture(
    num_documents: int,
    vocab_size: int = 50,
    num_topics: int = 5,
    mean_length: float = 30.0,
    concentration: float = 0.1,
    seed: int = 0,
) -> Corpus:
    """Documents from a known mixture of unigrams: each document picks a topic z uniformly of
    ``num_topics``, a length D ~ 1 + Poisson(mean_length - 1), and D words independently from
    the topic's word distribution phi_z ~ Dirichlet(concentration) (drawn once, seeded).
    ``extras``: ``topics`` (phi, float64), ``assignments`` and ``log_likelihood(counts)``,
    the exact log-probability of each document's word sequence under the generating model,
    log (1/T) sum_z prod_w phi_zw^v_w (a floor for the test perplexity of any model)."""
    for name, value in (
        ("num_documents", num_documents),
        ("vocab_size", vocab_size),
        ("num_topics", num_topics),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    if not (mean_length >= 1 and concentration > 0):
        raise ValueError("mean_length must be >= 1 and concentration > 0")
    rng = np.random.default_rng(seed)
    topics = rng.dirichlet(np.full(vocab_size, concentration), size=num_topics)
    topics = np.clip(topics, 1e-300, None)
    topics /= topics.sum(1, keepdims=True)
    z = rng.integers(num_topics, size=num_documents)
    lengths = 1 + rng.poisson(mean_length - 1, size=num_documents)
    counts = np.stack([rng.multinomial(d, topics[t]) for d, t in zip(lengths, z, strict=True)])
    log_topics = torch.from_numpy(np.log(topics))

    def log_likelihood(v: torch.Tensor) -> torch.Tensor:
        per_topic = v.double() @ log_topics.T
        return torch.logsumexp(per_topic, -1) - math.log(num_topics)

    vocabulary = [f"w{i}" for i in range(vocab_size)]
    return Corpus(
        torch.from_numpy(counts).float(),
        vocabulary,
        labels=torch.from_numpy(z),
        extras={"topics": torch.from_numpy(topics), "log_likelihood": log_likelihood},
    )
