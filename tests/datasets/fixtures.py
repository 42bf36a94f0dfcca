"""Tiny dataset trees in each benchmark's real on-disk layout, with real split files.

Every image is a small JPEG whose flat colour encodes (class, index), so a test can tell which
file it got. `images_per_class` is deliberately uneven across classes, so sizes computed from
the wrong rule come out wrong.
"""

import json
import random

from PIL import Image


def save_jpeg(path, class_id, index, size=(12, 10), colour=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    colour = colour or (class_id % 256, (37 * index) % 256, 90)
    Image.new("RGB", size, colour).save(path, format="JPEG")


def class_colour(class_id, index):
    """A colour far from every other class's, nearly the same for all images of a class."""
    return ((53 * class_id) % 256, (97 * class_id) % 256, (31 * class_id + 2 * index) % 256)


def count_of(class_id):
    """1 to 3 images, varying by class."""
    return 1 + class_id % 3


def make_cub(
    root, num_classes=200, shuffle=True, class_ids=None, images_per_class=None, colour=None
):
    """CUB_200_2011/ with images.txt, image_class_labels.txt, classes.txt and
    train_test_split.txt; images.txt in a shuffled order (the files agree line by line).
    Classes 1..num_classes (or `class_ids`), count_of(class) images each (or images_per_class),
    coloured by `colour(class, index)` when given."""
    base = root / "CUB_200_2011"
    rows = []
    image_id = 0
    class_ids = range(1, num_classes + 1) if class_ids is None else class_ids
    for class_id in class_ids:
        folder = f"{class_id:03d}.Bird_{class_id}"
        for index in range(images_per_class or count_of(class_id)):
            image_id += 1
            relative = f"{folder}/Bird_{class_id}_{index}.jpg"
            save_jpeg(
                base / "images" / relative,
                class_id,
                index,
                colour=colour(class_id, index) if colour else None,
            )
            rows.append((image_id, relative, class_id))
    if shuffle:
        random.Random(0).shuffle(rows)
    write_lines(base / "images.txt", [f"{i} {p}" for i, p, _ in rows])
    write_lines(base / "image_class_labels.txt", [f"{i} {c}" for i, _, c in rows])
    write_lines(base / "train_test_split.txt", [f"{i} {i % 2}" for i, _, _ in rows])
    write_lines(base / "classes.txt", [f"{c} {c:03d}.Bird_{c}" for c in class_ids])
    return root


def make_cars196(root, num_classes=196):
    """Kaggle's stanford-car-dataset-by-classes-folder: names.csv, anno_train.csv,
    anno_test.csv and car_data/car_data/{train,test}/<class name>/; one name has a '/'."""
    names = [f"Maker Model{c} 2012" for c in range(1, num_classes + 1)]
    names[5] = "Ram C/V Cargo Van Minivan 2012"
    write_lines(root / "names.csv", names)
    number = 0
    for part, per_class in (("train", 1), ("test", 2)):
        rows = []
        for class_id, name in enumerate(names, start=1):
            for index in range(per_class + (class_id % 2 if part == "test" else 0)):
                number += 1
                file_name = f"{number:05d}.jpg"
                folder = root / "car_data" / "car_data" / part / name.replace("/", "-")
                save_jpeg(folder / file_name, class_id, index)
                rows.append(f"{file_name},1,2,9,8,{class_id}")
        random.Random(part).shuffle(rows)
        write_lines(root / f"anno_{part}.csv", rows)
    return root


SOP_SUPER_CLASSES = ("bicycle", "cabinet", "chair", "coffee_maker")


def make_sop(root, num_train_classes=8, num_test_classes=6):
    """Stanford_Online_Products/ with Ebay_train.txt, Ebay_test.txt (header, then
    'image_id class_id super_class_id path') and <super>_final/ folders."""
    base = root / "Stanford_Online_Products"
    image_id = 0
    first_class = 1
    for part, num_classes in (("train", num_train_classes), ("test", num_test_classes)):
        lines = ["image_id class_id super_class_id path"]
        for class_id in range(first_class, first_class + num_classes):
            super_id = class_id % len(SOP_SUPER_CLASSES) + 1
            for index in range(count_of(class_id)):
                image_id += 1
                relative = f"{SOP_SUPER_CLASSES[super_id - 1]}_final/{1000 + class_id}_{index}.JPG"
                save_jpeg(base / relative, class_id, index)
                lines.append(f"{image_id} {class_id} {super_id} {relative}")
        first_class += num_classes
        write_lines(base / f"Ebay_{part}.txt", lines)
    return root


INAT_KINGDOMS = ("Plantae", "Animalia", "Fungi")


def make_inaturalist2018(root, num_species=10, num_train_species=6):
    """train_val2018/<kingdom>/<category id>/, train2018.json and val2018.json (COCO-style,
    with the taxonomy), and Inat_dataset_splits/Inaturalist_{train,test}_set1.txt listing image
    paths in a shuffled order."""
    categories, splits = [], {"train": [], "test": []}
    annotations = {"train2018.json": ([], []), "val2018.json": ([], [])}
    image_id = 0
    for species in range(num_species):
        kingdom = INAT_KINGDOMS[species % len(INAT_KINGDOMS)]
        categories.append(
            {
                "id": species,
                "name": f"species {species}",
                "supercategory": kingdom,
                "kingdom": kingdom,
                "genus": f"Genus{species // 2}",
            }
        )
        for index in range(count_of(species) + 1):
            image_id += 1
            relative = f"train_val2018/{kingdom}/{species}/img{image_id}.jpg"
            save_jpeg(root / relative, species, index)
            images, labels = annotations["val2018.json" if index == 0 else "train2018.json"]
            images.append({"id": image_id, "file_name": relative, "width": 12, "height": 10})
            labels.append({"id": image_id, "image_id": image_id, "category_id": species})
            splits["train" if species < num_train_species else "test"].append(relative)
    for name, (images, labels) in annotations.items():
        content = {"images": images, "annotations": labels, "categories": categories}
        (root / name).write_text(json.dumps(content))
    for part, paths in splits.items():
        random.Random(part).shuffle(paths)
        write_lines(root / "Inat_dataset_splits" / f"Inaturalist_{part}_set1.txt", paths)
    return root


def make_inshop(root, num_train_items=6, num_test_items=5):
    """img/<WOMEN|MEN>/<category>/id_<number>/ and Eval/list_eval_partition.txt: a count line,
    the header, then '<image> <item> <train|query|gallery>'. Each test item has one query and
    one or two gallery images."""
    rows = []
    for item in range(1, num_train_items + num_test_items + 1):
        is_train = item <= num_train_items
        statuses = ["train"] * 2 if is_train else ["query"] + ["gallery"] * (1 + item % 2)
        for index, status in enumerate(statuses):
            relative = f"img/WOMEN/Dresses/id_{item:08d}/{index:02d}_1_front.jpg"
            save_jpeg(root / relative, item, index)
            rows.append(f"{relative}  id_{item:08d}  {status}")
    random.Random(0).shuffle(rows)
    write_lines(
        root / "Eval" / "list_eval_partition.txt",
        [str(len(rows)), "image_name item_id evaluation_status", *rows],
    )
    return root


def write_lines(path, lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
