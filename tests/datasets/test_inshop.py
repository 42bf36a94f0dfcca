"""In-Shop: the official train / query / gallery partition."""

import pytest

from metric_runner.datasets import DatasetError, InShop
from tests.datasets.fixtures import make_inshop


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return make_inshop(tmp_path_factory.mktemp("inshop"))


def test_partition_sizes_and_items(root):
    train, query, gallery = (InShop(root, split=s) for s in ("train", "query", "gallery"))
    assert sorted(set(train.labels.tolist())) == list(range(1, 7))
    assert len(train) == 12
    assert sorted(query.labels.tolist()) == list(range(7, 12))  # one query per test item
    assert len(gallery) == sum(1 + item % 2 for item in range(7, 12))
    assert set(gallery.labels.tolist()) == set(query.labels.tolist())
    assert not set(query.paths) & set(gallery.paths)


def test_query_gallery_split_marks_the_queries_first(root):
    test = InShop(root, split="query+gallery")
    assert test.is_query.tolist() == [True] * 5 + [False] * (len(test) - 5)
    assert test.paths[:5] == InShop(root, split="query").paths


def test_bad_partition_line_and_missing_file(tmp_path):
    make_inshop(tmp_path, 1, 1)
    partition = tmp_path / "Eval" / "list_eval_partition.txt"
    partition.write_text(partition.read_text() + "img/x.jpg id_00000009 validation\n")
    with pytest.raises(DatasetError, match=r"list_eval_partition.txt, line \d+: expected"):
        InShop(tmp_path)
    partition.unlink()
    with pytest.raises(FileNotFoundError, match="neither Eval/list_eval_partition.txt nor"):
        InShop(tmp_path)
