"""Reliability of the Python API: bad data, no network, bad arguments, atomic files, NaN.

Every failure must come as one exception of the package's own (``DataError``,
``ValueError``, ``TrainingDiverged``) whose message names the problem and the fix,
never as an error from deep inside TensorFlow. The command line's side of the same
promises is tested in ``test_cli.py``.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from cifar_tutorial import data, models, train
from tests.fixtures import first_image, make_image_folder

# --------------------------------------------------------------------------- bad data


def _fresh(tmp_path: Path) -> Path:
    return make_image_folder(tmp_path / "cifar", per_class_train=2, per_class_test=1)


def _rename_class(root: Path, old: str, new: str) -> Path:
    for split in data.SPLITS:
        (root / split / old).rename(root / split / new)
    return root


def _truncate(path: Path) -> None:
    """Keep the JPEG header (Pillow's header check passes) but cut the scan data."""
    raw = path.read_bytes()
    sos = raw.index(b"\xff\xda")  # start of scan: everything after it is pixels
    path.write_bytes(raw[: sos + 20])


def _write(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


def _save(path: Path, size: tuple[int, int], mode: str) -> None:
    from PIL import Image

    Image.new(mode, size).save(path, format="PNG" if path.suffix == ".png" else "JPEG")


def _rmtree(path: Path) -> None:
    import shutil

    shutil.rmtree(path)


def _empty(root: Path, hidden: bool = False) -> Path:
    folder = root.parent / "empty"
    folder.mkdir()
    if hidden:
        _write(folder / ".DS_Store", b"\0\0\0\1Bud1")
    return folder


def _no_classes(root: Path) -> Path:
    for folder in (root / "test").iterdir():
        _rmtree(folder)
    return root


def _empty_class(root: Path) -> Path:
    for path in (root / "test" / "dog").iterdir():
        path.unlink()
    return root


def _then(action: Callable[[Path], object]) -> Callable[[Path], Path]:
    """Run ``action(root)`` and hand back ``root`` as the data folder."""

    def run(root: Path) -> Path:
        action(root)
        return root

    return run


# case -> (how to break a fresh folder, returning the data_dir; what the message must hold)
BAD_FOLDERS: dict[str, tuple[Callable[[Path], Path], list[str]]] = {
    "missing": (lambda r: r / "nowhere", ["does not exist", "CIFAR10_DIR"]),
    "a file": (lambda r: _write(r / "a.txt", b"x"), ["is a file", "CIFAR10_DIR"]),
    "empty": (_empty, ["is empty", "CIFAR10_DIR"]),
    "only hidden files": (lambda r: _empty(r, hidden=True), ["is empty"]),
    "no train": (_then(lambda r: _rmtree(r / "train")), ["no 'train' folder", "train/<class>"]),
    "no test": (_then(lambda r: _rmtree(r / "test")), ["no 'test' folder", "test/<class>"]),
    "no classes": (_no_classes, ["holds no class folders"]),
    "classes differ between splits": (
        _then(lambda r: _rmtree(r / "test" / "cat")), ["differ between train and test", "['cat']"]),
    "not CIFAR-10's classes": (
        lambda r: _rename_class(r, "cat", "kitten"), ["kitten", "CIFAR-10 has", "Rename"]),
    "empty class folder": (_empty_class, ["dog", "holds no images"]),
    "not an image": (
        _then(lambda r: _write(r / "train" / "cat" / "notes.txt", b"hi")),
        ["notes.txt", "is not an image", "remove it"]),
    "folder in class folder": (
        _then(lambda r: (r / "train" / "cat" / "more").mkdir()), ["more", "remove it"]),
    "random bytes named .jpg": (
        _then(lambda r: _write(first_image(r), np.random.default_rng(0).bytes(700))),
        ["train/cat/0000.jpg", "cannot be", "replace it"]),
    "empty .jpg": (
        _then(lambda r: _write(first_image(r, "test", "ship"), b"")), ["ship/0000.jpg", "cannot"]),
    "truncated JPEG": (
        _then(lambda r: _truncate(first_image(r, "train", "frog"))),
        ["train/frog/0000.jpg", "cannot be decoded", "replace it"]),
    "64x64 image": (
        _then(lambda r: _save(first_image(r, "test", "deer"), (64, 64), "RGB")),
        ["test/deer/0000.jpg", "64x64", "32x32 RGB"]),
    "grayscale image": (
        _then(lambda r: _save(first_image(r), (32, 32), "L")), ["train/cat/0000.jpg", " L;", "32x32 RGB"]),
    "RGBA png": (
        _then(lambda r: _save(r / "train" / "cat" / "extra.png", (32, 32), "RGBA")), ["extra.png", "RGBA"]),
}


@pytest.mark.parametrize("case", BAD_FOLDERS)
def test_bad_folder_gives_one_clear_data_error(tmp_path: Path, case: str) -> None:
    breaker, fragments = BAD_FOLDERS[case]
    data_dir = breaker(_fresh(tmp_path))
    with pytest.raises(data.DataError) as info:
        data.load_cifar10(source="folder", data_dir=data_dir)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, f"{case}: {fragment!r} missing from {message!r}"
    # no chained error from inside Pillow or TensorFlow is shown under ours
    assert info.value.__cause__ is None
    assert info.value.__suppress_context__ or info.value.__context__ is None


def test_hidden_files_and_folders_are_ignored(tmp_path: Path) -> None:
    """``.DS_Store``, macOS ``._x.jpg`` copies and hidden folders neither fail nor shift labels."""
    clean = make_image_folder(tmp_path / "clean", 2, 1, fmt="png")
    messy = make_image_folder(tmp_path / "messy", 2, 1, fmt="png")
    (messy / ".DS_Store").write_bytes(b"junk")
    (messy / "train" / ".DS_Store").write_bytes(b"junk")
    (messy / "train" / "cat" / ".DS_Store").write_bytes(b"junk")
    (messy / "train" / "cat" / "._0000.png").write_bytes(b"\0\5\26\7 AppleDouble junk")
    for hidden in (messy / "train" / ".ipynb_checkpoints" / "x", messy / "test" / ".Trash" / "y"):
        hidden.mkdir(parents=True)
        (hidden / "0.png").write_bytes(b"not a png")
    a = data.load_cifar10("folder", clean, val_fraction=0)
    b = data.load_cifar10("folder", messy, val_fraction=0)
    for split in ("train", "test"):
        for x, y in zip(a.arrays(split), b.arrays(split)):
            np.testing.assert_array_equal(x, y)
    assert set(np.unique(b.y_train)) == set(range(10))


def test_reading_matches_tfds_image_folder(tmp_path: Path) -> None:
    """Same pixels, labels and order as ``tfds.ImageFolder`` (the book's stored results)."""
    import tensorflow_datasets as tfds

    root = make_image_folder(tmp_path / "cifar", 3, 2)
    (x_tr, y_tr), (x_te, y_te), _ = data.read_image_folder(root)
    builder = tfds.ImageFolder(str(root))
    for split, x, y in (("train", x_tr, y_tr), ("test", x_te, y_te)):
        ds = builder.as_dataset(split=split, as_supervised=True, shuffle_files=False)
        xs, ys = zip(*ds.as_numpy_iterator())
        np.testing.assert_array_equal(np.stack(xs), x)
        np.testing.assert_array_equal(np.array(ys), y)


# --------------------------------------------------------------------------- offline


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("host", ["closed port", "TEST-NET"])
def test_tfds_offline_fails_in_seconds(tmp_path: Path, monkeypatch, host: str) -> None:
    import tensorflow_datasets  # noqa: F401 - import time is not what we measure

    address = ("127.0.0.1", _closed_port()) if host == "closed port" else ("192.0.2.1", 443)
    monkeypatch.setattr(data, "TFDS_HOST", address)
    start = time.perf_counter()
    with pytest.raises(data.DataError) as info:
        data.load_cifar10(source="tfds", tfds_data_dir=tmp_path / "tfds", network_timeout=1.0)
    assert time.perf_counter() - start < 10
    message = str(info.value)
    assert address[0] in message and "cannot be reached" in message
    assert "CIFAR10_DIR" in message and "downloads/manual" in message  # how to get the data
    with pytest.raises(data.DataError, match="CIFAR10_DIR"):
        data.read_tfds(tmp_path / "tfds", network_timeout=1.0)


def test_network_probe_gives_up_on_a_hanging_lookup(monkeypatch) -> None:
    """A name lookup that hangs (offline DNS) costs the timeout, not the lookup's minutes."""
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: time.sleep(30))
    start = time.perf_counter()
    assert data.network_reachable(("cifar.invalid", 443), timeout=0.5) is False
    assert time.perf_counter() - start < 3


def test_hanging_probe_does_not_keep_the_process_alive() -> None:
    """The probe's thread must not be joined at exit (a thread pool's would be)."""
    code = (
        "import socket, time\n"
        "socket.create_connection = lambda *a, **k: time.sleep(60)\n"
        "from cifar_tutorial.data import network_reachable\n"
        "print(network_reachable(('cifar.invalid', 443), timeout=0.5))\n"
    )
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "False", done.stderr
    assert time.perf_counter() - start < 20


# --------------------------------------------------------------------------- bad arguments


@pytest.fixture(scope="module")
def small_data() -> data.CifarData:
    """40 training and 10 validation images built in memory (no files)."""
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(60, 32, 32, 3), dtype=np.uint8)
    y = np.arange(60, dtype=np.int32) % 10
    return data.CifarData(x[:40], y[:40], x[40:50], y[40:50], x[50:], y[50:], data.CLASS_NAMES, "memory")


def _compiled(lr: float = 1e-3):
    from cifar_tutorial import runtime

    runtime.set_seed(0)
    return train.compile_model(models.build_model("seed"), learning_rate=lr)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"epochs": 0}, "epochs must be a positive integer"),
        ({"epochs": -3}, "epochs must be a positive integer"),
        ({"epochs": 1.5}, "epochs must be a positive integer"),
        ({"epochs": 1, "batch_size": 0}, "batch_size must be a positive integer"),
        ({"epochs": 1, "batch_size": 41}, "larger than the training set (40 images)"),
        ({"epochs": 1, "loop": "magic"}, "loop must be 'fit' or 'custom'"),
    ],
)
def test_train_refuses_bad_arguments_before_training(
    small_data, tmp_path: Path, kwargs: dict, fragment: str
) -> None:
    model = _compiled()
    before = [w.copy() for w in model.get_weights()]
    with pytest.raises(ValueError) as info:
        train.train(model, small_data, out_dir=tmp_path / "out", verbose=0, **kwargs)
    assert fragment in str(info.value)
    assert not (tmp_path / "out" / train.CHECKPOINT_DIR).exists()
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_train_refuses_an_unwritable_output_folder_before_training(small_data, tmp_path: Path) -> None:
    (tmp_path / "file").write_text("a regular file")
    model = _compiled()
    before = [w.copy() for w in model.get_weights()]
    start = time.perf_counter()
    with pytest.raises(ValueError) as info:
        train.train(model, small_data, epochs=50, batch_size=8, out_dir=tmp_path / "file" / "out", verbose=0)
    assert "cannot write to output folder" in str(info.value) and "file" in str(info.value)
    assert time.perf_counter() - start < 5  # nothing trained
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    ("build", "fragment"),
    [
        (lambda: models.build_model("resnet1000"), "unknown model 'resnet1000'; choose one of seed"),
        (lambda: models.build_model("seed", head="sigmoid"), "unknown output head 'sigmoid'; choose one of"),
        (lambda: models.build_model("vgg_bn", head="nope"), "unknown output head 'nope'"),
        (lambda: models.build_model("fast", head="l2"), "takes no other head"),
        (lambda: train.compile_model(models.seed_cnn(), learning_rate=0), "learning_rate must be positive"),
        (lambda: train.compile_model(models.seed_cnn(), optimizer="adagrad"), "choose adam, adamw or sgd"),
        (lambda: data.load_cifar10("internet"), "source must be 'auto', 'folder' or 'tfds'"),
        (lambda: data.load_cifar10("folder", "x", val_fraction=1.0), "val_fraction must lie in [0, 1)"),
    ],
)
def test_public_functions_refuse_bad_arguments(build: Callable, fragment: str) -> None:
    with pytest.raises(ValueError) as info:
        build()
    assert fragment in str(info.value)


# --------------------------------------------------------------------------- atomic files


def _leftovers(folder: Path, keep: set[str]) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


@pytest.mark.parametrize("failure", [OSError("disk full"), KeyboardInterrupt()])
def test_atomic_write_text_keeps_the_old_file_when_writing_fails(tmp_path: Path, monkeypatch, failure) -> None:
    target = train.atomic_write_text(tmp_path / "history.json", '{"old": true}')

    def fail(fd: int) -> None:  # the text is written but not yet on disk
        raise failure

    monkeypatch.setattr(os, "fsync", fail)
    with pytest.raises(type(failure)):
        train.atomic_write_text(target, '{"new": true, "long": "' + "x" * 100_000 + '"}')
    assert target.read_text() == '{"old": true}'
    assert _leftovers(tmp_path, {"history.json"}) == []


def test_atomic_write_text_keeps_the_old_file_when_the_rename_fails(tmp_path: Path, monkeypatch) -> None:
    target = train.atomic_write_text(tmp_path / "metrics.json", "old")

    def fail(src, dst) -> None:
        raise PermissionError("no")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(PermissionError):
        train.atomic_write_text(target, "new")
    assert target.read_text() == "old"
    assert _leftovers(tmp_path, {"metrics.json"}) == []


def test_atomic_save_keeps_the_old_file_when_the_writer_fails_midway(tmp_path: Path) -> None:
    target = tmp_path / "model.keras"
    train.atomic_save(lambda p: Path(p).write_bytes(b"old model"), target)

    def half_then_fail(path: str) -> None:
        with open(path, "wb") as f:
            f.write(b"half a mod")
            raise OSError("writer crashed")

    with pytest.raises(OSError, match="writer crashed"):
        train.atomic_save(half_then_fail, target)
    assert target.read_bytes() == b"old model"
    assert _leftovers(tmp_path, {"model.keras"}) == []
    train.atomic_save(lambda p: Path(p).write_bytes(b"new model"), target)
    assert target.read_bytes() == b"new model"
    assert _leftovers(tmp_path, {"model.keras"}) == []


def test_atomic_save_of_a_real_keras_model(tmp_path: Path) -> None:
    import keras

    model = models.seed_cnn()
    path = train.atomic_save(model.save, tmp_path / "model.keras")
    again = keras.models.load_model(path)
    for a, b in zip(model.get_weights(), again.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert _leftovers(tmp_path, {"model.keras"}) == []


# --------------------------------------------------------------------------- NaN loss


@pytest.mark.parametrize("loop", ["fit", "custom"])
def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(small_data, tmp_path: Path, loop: str) -> None:
    import keras

    out = tmp_path / "out"
    model = _compiled(lr=1e-3)
    train.train(model, small_data, epochs=1, batch_size=8, loop=loop, out_dir=out, verbose=0)
    good = [w.copy() for w in model.get_weights()]

    train.compile_model(model, learning_rate=1e3)  # far too high: the loss explodes
    with pytest.raises(train.TrainingDiverged) as info:
        train.train(model, small_data, epochs=4, batch_size=8, loop=loop, out_dir=out, verbose=0)
    message = str(info.value)
    assert info.value.epoch == 2
    assert "epoch 2" in message and "learning rate (1000)" in message and "10x smaller" in message
    assert "epoch 1" in message and str(out / train.CHECKPOINT_DIR) in message

    state = json.loads((out / train.CHECKPOINT_DIR / "state.json").read_text())
    assert state["epochs_done"] == 1 and len(state["history"]["records"]) == 1
    for a, b in zip(good, model.get_weights()):  # the model holds the last good weights again
        np.testing.assert_array_equal(a, b)
    fresh = models.build_model("seed")
    fresh.load_weights(out / train.CHECKPOINT_DIR / state["weights"], skip_mismatch=True)
    for a, b in zip(good, fresh.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert all(np.isfinite(w).all() for w in fresh.get_weights())
    assert isinstance(fresh, keras.Model)


def test_nan_in_the_first_epoch_says_nothing_was_kept(small_data, tmp_path: Path) -> None:
    model = _compiled(lr=1e3)
    with pytest.raises(train.TrainingDiverged) as info:
        train.train(model, small_data, epochs=2, batch_size=8, out_dir=tmp_path / "out", verbose=0)
    assert info.value.epoch == 1
    assert "epoch 1" in str(info.value) and "No epoch had finished" in str(info.value)
    assert not (tmp_path / "out" / train.CHECKPOINT_DIR / "state.json").exists()
