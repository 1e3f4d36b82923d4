"""CIFAR-10 in memory and as tf.data pipelines (chapter 5): cifar_tutorial.data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cifar_tutorial import data, runtime
from tests.fixtures import make_image_folder


def test_folder_arrays(tiny_data) -> None:
    assert tiny_data.class_names == data.CLASS_NAMES
    assert tiny_data.sizes() == {"train": 90, "val": 30, "test": 40}
    for split in ("train", "val", "test"):
        x, y = tiny_data.arrays(split)
        assert x.shape[1:] == (32, 32, 3) and x.dtype == np.uint8
        assert y.dtype == np.int32 and set(np.unique(y)) <= set(range(10))
    assert "image folder" in tiny_data.source
    assert tiny_data.summary() == (
        f"CIFAR-10 from {tiny_data.source}:\ntrain 90, val 30, test 40"
    )
    with pytest.raises(ValueError, match="split must be"):
        tiny_data.arrays("holdout")


def test_labels_follow_folders(tiny_folder: Path) -> None:
    """Each class's synthetic colour must come back under its own label."""
    d = data.load_cifar10("folder", tiny_folder, val_fraction=0)
    colours = np.array([(np.arange(3) * 53 + c * 23) % 256 for c in range(10)])  # the fixture's
    for label in range(10):
        mean_of_class = d.x_train[d.y_train == label].reshape(-1, 3).mean(axis=0)
        nearest = np.argmin(np.abs(colours - mean_of_class).sum(axis=1))
        assert nearest == label


def test_validation_split_is_stratified_and_seeded() -> None:
    y = np.repeat(np.arange(10), 100)
    x = np.arange(1000)
    xt, yt, xv, yv = data.split_validation(x, y, 0.1, seed=3)
    np.testing.assert_array_equal(data.class_counts(yv), [10] * 10)
    np.testing.assert_array_equal(data.class_counts(yt), [90] * 10)
    assert set(xt).isdisjoint(xv) and len(xt) + len(xv) == 1000
    assert np.all(np.diff(xt) > 0) and np.all(np.diff(xv) > 0)  # original order kept
    again = data.split_validation(x, y, 0.1, seed=3)
    np.testing.assert_array_equal(again[2], xv)
    other = data.split_validation(x, y, 0.1, seed=4)
    assert not np.array_equal(other[2], xv)


def test_env_variable_selects_folder(tiny_folder: Path, monkeypatch) -> None:
    monkeypatch.setenv(data.ENV_DIR, str(tiny_folder))
    d = data.load_cifar10(val_fraction=0)
    assert d.sizes()["train"] == 120 and "image folder" in d.source


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match=r"source must be 'auto', 'folder' or 'tfds'"):
        data.load_cifar10("internet")
    with pytest.raises(ValueError, match=r"val_fraction must lie in \[0, 1\)"):
        data.load_cifar10("folder", "x", val_fraction=1.0)


def test_dataset_scales_and_batches(tiny_data) -> None:
    ds = tiny_data.dataset("train", batch_size=16, label_mode="onehot", seed=1)
    batches = list(ds.as_numpy_iterator())
    assert [len(b[1]) for b in batches] == [16] * 5 + [10]
    x, y = batches[0]
    assert x.dtype == np.float32 and 0.0 <= x.min() and x.max() <= 1.0
    assert y.shape == (16, 10) and np.all(y.sum(axis=1) == 1)
    # /255, not /256: the brightest uint8 value maps to exactly 1.0
    first = tiny_data.dataset("test", batch_size=40, shuffle=False)
    xs, ys = next(iter(first.as_numpy_iterator()))
    np.testing.assert_allclose(xs, tiny_data.x_test / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(ys, tiny_data.y_test)
    with pytest.raises(ValueError, match="label_mode"):
        tiny_data.dataset("train", label_mode="soft")


def test_shuffle_order_depends_on_seed_only(tiny_data) -> None:
    def labels(seed: int) -> np.ndarray:
        return np.concatenate([y for _, y in tiny_data.dataset("train", 32, seed=seed).as_numpy_iterator()])

    np.testing.assert_array_equal(labels(5), labels(5))
    assert not np.array_equal(labels(5), labels(6))


def test_augmentation_is_seeded_and_keeps_shape(tiny_data) -> None:
    aug = data.flip_and_translate(pad=4)
    a = next(iter(tiny_data.dataset("train", 8, seed=2, augment=aug).as_numpy_iterator()))[0]
    b = next(iter(tiny_data.dataset("train", 8, seed=2, augment=aug).as_numpy_iterator()))[0]
    plain = next(iter(tiny_data.dataset("train", 8, seed=2).as_numpy_iterator()))[0]
    assert a.shape == (8, 32, 32, 3)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, plain)


@pytest.mark.parametrize(
    ("smoke", "quick", "sizes"),
    [("1", "", {"train": 7, "val": 3, "test": 5}),
     ("", "1", {"train": 9, "val": 4, "test": 6}),
     ("", "", {"train": 90, "val": 30, "test": 40})],
)
def test_for_run_mode_keeps_the_sizes_of_the_mode(tiny_data, monkeypatch, smoke, quick, sizes) -> None:
    monkeypatch.setenv(runtime.SMOKE_ENV, smoke)
    monkeypatch.setenv(runtime.QUICK_ENV, quick)
    kept = tiny_data.for_run_mode(smoke=(7, 3, 5), quick=(9, 4, 6))
    assert kept.sizes() == sizes
    np.testing.assert_array_equal(kept.x_train, tiny_data.x_train[: sizes["train"]])
    if not smoke and not quick:
        assert kept is tiny_data


def test_class_counts() -> None:
    np.testing.assert_array_equal(data.class_counts([0, 0, 2], 4), [2, 0, 1, 0])
    np.testing.assert_array_equal(data.class_counts(np.array([0, 0, 2, 9])),
                                  [2, 0, 1, 0, 0, 0, 0, 0, 0, 1])


@pytest.mark.real_data
def test_real_cifar10(real_folder: Path) -> None:
    d = data.load_cifar10("folder", real_folder, val_fraction=0.1, seed=0)
    assert d.sizes() == {"train": 45_000, "val": 5_000, "test": 10_000}
    assert len(d.y_train) + len(d.y_val) == 50_000
    assert d.class_names == data.CLASS_NAMES
    assert d.x_train.shape == (45_000, 32, 32, 3) and d.x_train.dtype == np.uint8
    np.testing.assert_array_equal(data.class_counts(d.y_test), [1000] * 10)
    np.testing.assert_array_equal(data.class_counts(np.concatenate([d.y_train, d.y_val])), [5000] * 10)
    np.testing.assert_array_equal(data.class_counts(d.y_val), [500] * 10)
    assert d.x_test.min() == 0 and d.x_test.max() == 255
    x, y = next(iter(d.dataset("test", 256).as_numpy_iterator()))
    assert x.dtype == np.float32 and x.shape == (256, 32, 32, 3) and 0 <= x.min() and x.max() <= 1
    assert 0.4 < x.mean() < 0.55  # CIFAR-10's mean pixel is about 0.47


@pytest.mark.slow
def test_real_folder_decodes_to_the_original_pixels(real_folder: Path) -> None:
    d = data.load_cifar10("folder", real_folder, val_fraction=0)
    assert d.sizes() == {"train": 50_000, "val": 0, "test": 10_000}
    mean = d.x_train.reshape(-1, 3).mean(axis=0, dtype=np.float64)
    np.testing.assert_allclose(mean, (125.306918, 122.950394, 113.865383), rtol=0, atol=1e-5)
    assert data.is_original_release(d.x_train)
    assert d.source == "an image folder (the original images, PNG files)"
    # two grey levels more in 1% of the images shift the means by about 0.02:
    # far more than the check allows, as any lossy copy would
    shifted = d.x_train.copy()
    shifted[:500] = np.clip(shifted[:500].astype(int) + 2, 0, 255).astype(np.uint8)
    assert not data.is_original_release(shifted)
    assert not data.is_original_release(d.x_train[:1000])


@pytest.mark.slow
def test_real_subsets_and_validation_are_drawn_from_shuffled_data(real_folder: Path) -> None:
    """Within a class folder the files are in alphabetical order; what the package
    keeps of each split must nevertheless hold every class in about equal shares."""
    d = data.load_cifar10("folder", real_folder, val_fraction=0.1, seed=0)
    np.testing.assert_array_equal(data.class_counts(d.y_val), [500] * 10)
    for n in (256, 512, 1024, 5000):  # the smoke and quick subsets' sizes
        small = d.subset(train=n, val=min(n, 1000), test=n)
        for labels in (small.y_train, small.y_val, small.y_test):
            share = data.class_counts(labels) / len(labels)
            assert share.min() > 0.05 and share.max() < 0.15, share
    # the first images are not one class folder read in its own order
    assert len(np.unique(d.y_train[:20])) >= 5


def test_folder_reading_interleaves_classes(tiny_folder: Path) -> None:
    d = data.load_cifar10("folder", tiny_folder, val_fraction=0)
    assert np.any(np.diff(d.y_train) < 0)  # not grouped class by class
    assert len(np.unique(d.y_train[:12])) >= 4


def test_decoded_folder_is_cached_and_refreshed(tiny_folder: Path, tmp_path: Path,
                                                monkeypatch) -> None:
    import shutil

    monkeypatch.setenv(data.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(data, "CACHE_MIN_IMAGES", 1)
    first = data.read_image_folder_cached(tiny_folder)
    cached = list((tmp_path / "cache").glob("*.npz"))
    assert len(cached) == 1
    again = data.read_image_folder_cached(tiny_folder)
    for a, b in zip((*first[0], *first[1]), (*again[0], *again[1])):
        np.testing.assert_array_equal(a, b)
    assert again[2] == first[2]
    # a folder with one image fewer is read anew, under another key
    copy = tmp_path / "copy"
    shutil.copytree(tiny_folder, copy)
    next(iter(sorted((copy / "train" / "cat").iterdir()))).unlink()
    fewer = data.read_image_folder_cached(copy)
    assert len(fewer[0][1]) == len(first[0][1]) - 1
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 2
    # an empty value turns the cache off
    monkeypatch.setenv(data.CACHE_ENV, "")
    data.read_image_folder_cached(copy)
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 2


def test_source_names_the_kind_of_files(tiny_folder: Path, tmp_path: Path) -> None:
    assert data.describe_folder(tiny_folder) == "an image folder (PNG files, lossless)"
    jpeg = make_image_folder(tmp_path / "jpeg", 2, 1, fmt="jpg")
    assert data.describe_folder(jpeg) == "an image folder (JPEG files, a lossy copy)"
