"""Corpora: the LDA-C reader, the offline Reuters sample, the 20 Newsgroups bydate reader (on
files written here), vocabulary cuts and the synthetic unigram mixture."""

import math

import pytest
import torch

from ebm import corpora


def test_read_ldac_counts_and_refusals(tmp_path):
    path = tmp_path / "c.ldac"
    path.write_text("2 0:3 4:1\n\n1 2:2\n")
    counts = corpora.read_ldac(path)
    assert counts.tolist() == [[3, 0, 0, 0, 1], [0, 0, 2, 0, 0]]
    assert corpora.read_ldac(path, vocab_size=7).shape == (2, 7)
    with pytest.raises(ValueError, match="outside a vocabulary of 3"):
        corpora.read_ldac(path, vocab_size=3)
    for bad, match in (
        ("3 0:1 1:1\n", "3 words announced"),
        ("1 0:1.5\n", "line 1: not LDA-C"),
        ("1 0:-2\n", "negative"),
        ("x\n", "not LDA-C"),
    ):
        path.write_text(bad)
        with pytest.raises(ValueError, match=match):
            corpora.read_ldac(path)


def test_reuters_sample_ships_with_the_lda_package():
    corpus = corpora.reuters_sample()
    assert corpus.counts.shape == (395, 4258) and len(corpus.extras["titles"]) == 395
    assert bool((corpus.lengths > 0).all())
    assert corpus.vocabulary[:2] == ["church", "pope"]


def _write_newsgroups(directory, train_rows, test_rows, vocabulary):
    for part, rows in (("train", train_rows), ("test", test_rows)):
        (directory / f"{part}.data").write_text("".join(f"{d} {w} {c}\n" for d, w, c in rows))
        docs = max(d for d, _, _ in rows)
        (directory / f"{part}.label").write_text("".join(f"{1 + i % 3}\n" for i in range(docs)))
    (directory / "vocabulary.txt").write_text("\n".join(vocabulary) + "\n")


def test_newsgroups_bydate_reads_the_files_and_checks_them(tmp_path):
    _write_newsgroups(tmp_path, [(1, 1, 2), (1, 3, 1), (2, 2, 4)], [(1, 3, 5)], ["a", "b", "c"])
    train, test = corpora.newsgroups_bydate(tmp_path)
    assert train.counts.tolist() == [[2, 0, 1], [0, 4, 0]] and train.labels.tolist() == [1, 2]
    assert test.counts.tolist() == [[0, 0, 5]] and test.vocabulary == ["a", "b", "c"]
    _write_newsgroups(tmp_path, [(1, 4, 2)], [(1, 3, 5)], ["a", "b", "c"])
    with pytest.raises(ValueError, match="train.data.*vocabulary's 3"):
        corpora.newsgroups_bydate(tmp_path)
    (tmp_path / "test.label").unlink()
    with pytest.raises(ValueError, match=r"lacks .*\['test.label'\]"):
        corpora.newsgroups_bydate(tmp_path)


def test_most_frequent_words_and_split():
    counts = torch.tensor([[5.0, 0, 1, 0], [0, 0, 2, 1], [0, 3, 0, 0]])
    train = corpora.Corpus(counts, ["a", "b", "c", "d"])
    test = corpora.Corpus(torch.tensor([[0.0, 0, 0, 7], [1, 1, 0, 0]]), train.vocabulary)
    cut_train, cut_test = corpora.most_frequent(train, 2, test)
    assert cut_train.vocabulary == ["a", "b"]
    assert cut_train.counts.tolist() == [[5, 0], [0, 3]]  # the second document had no kept word
    assert cut_test.counts.tolist() == [[1, 1]]
    first, second = corpora.split(corpora.unigram_mixture(50), 0.2, seed=1)
    assert len(first) == 40 and len(second) == 10
    assert not set(first.extras["index"].tolist()) & set(second.extras["index"].tolist())


def test_unigram_mixture_log_likelihood_is_exact():
    corpus = corpora.unigram_mixture(20, vocab_size=6, num_topics=3, mean_length=4, seed=2)
    phi = corpus.extras["topics"]
    v = corpus.counts[:3].double()
    want = torch.log(torch.exp(v @ phi.log().T).mean(-1))
    assert torch.allclose(corpus.extras["log_likelihood"](v), want)
    assert bool((corpus.lengths >= 1).all())
    assert torch.allclose(phi.sum(1), torch.ones(3, dtype=torch.float64))
    assert math.isclose(float(corpus.counts.sum()), float(corpus.lengths.sum()))


def test_rcv1_token_files_become_counts_over_the_most_frequent_tokens(tmp_path):
    import gzip

    (tmp_path / "lyrl2004_tokens_train.dat").write_text(
        ".I 2286\n.W\nsay bank bank rate\n\n.I 2287\n.W\nbank oil\nrate say\n\n"
    )
    with gzip.open(tmp_path / "lyrl2004_tokens_test_pt0.dat.gz", "wt") as fh:
        fh.write(".I 9\n.W\noil oil zinc\n")
    corpus = corpora.rcv1_tokens(tmp_path, vocab_size=3)
    # files in name order (the test part first); "oil" and "bank" tie, "oil" was seen first
    assert corpus.vocabulary == ["oil", "bank", "say"] and corpus.extras["ids"] == [9, 2286, 2287]
    assert corpus.counts.tolist() == [[2, 0, 0], [0, 2, 1], [1, 1, 1]]
    (tmp_path / "lyrl2004_tokens_bad.dat").write_text(".W\nno id\n")
    with pytest.raises(ValueError, match="record 1 does not start"):
        corpora.rcv1_tokens(tmp_path)
    with pytest.raises(ValueError, match="not found"):
        corpora.rcv1_tokens(tmp_path, files=["nope.dat"])
