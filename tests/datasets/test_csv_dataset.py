"""CSVDataset: path,label[,split][,super_label] rows relative to a root."""

import pytest

from metric_runner.datasets import CSVDataset, DatasetError
from tests.datasets.fixtures import save_jpeg


@pytest.fixture
def root(tmp_path):
    rows = ["path,label,split,super_label"]
    for label in range(4):
        for index in range(2):
            save_jpeg(tmp_path / "images" / f"{label}_{index}.jpg", label, index)
            split = "train" if label < 2 else "validation"  # OML's name for the test part
            rows.append(f"images/{label}_{index}.jpg,{label},{split},{label // 2 + 10}")
    (tmp_path / "dataset.csv").write_text("\n".join(rows) + "\n")
    return tmp_path


def test_split_column_and_labels(root):
    train, test = CSVDataset(root, split="train"), CSVDataset(root, split="test")
    assert train.labels.tolist() == [0, 0, 1, 1] and test.labels.tolist() == [2, 2, 3, 3]
    assert train.paths[0] == str(root / "images" / "0_0.jpg")
    assert len(CSVDataset(root)) == 8


def test_super_labels_give_two_levels(root):
    dataset = CSVDataset(root, hierarchical=True)
    assert dataset.labels.tolist() == [[c, c // 2 + 10] for c in range(4) for _ in range(2)]


def test_without_a_split_column_the_file_is_one_split(root):
    lines = (root / "dataset.csv").read_text().splitlines()
    (root / "plain.csv").write_text("\n".join(line.rsplit(",", 2)[0] for line in lines))
    assert len(CSVDataset(root, csv_file="plain.csv")) == 8
    with pytest.raises(DatasetError, match="supported splits are: train\\+test"):
        CSVDataset(root, split="train", csv_file="plain.csv")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("file,label\na.jpg,1\n", "needs the columns path and label \\(missing path\\)"),
        ("path,label\na.jpg,cat\n", "the label column must hold integers, got 'cat'"),
        ("path,label,split\na.jpg,1,dev\n", "the split column holds 'dev'; use train, test"),
    ],
)
def test_bad_files_are_explained(tmp_path, content, message):
    (tmp_path / "dataset.csv").write_text(content)
    with pytest.raises(DatasetError, match=message):
        CSVDataset(tmp_path)


def test_missing_csv_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="dataset.csv is missing.*path,label"):
        CSVDataset(tmp_path)
