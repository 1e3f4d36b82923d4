"""Reading CIFAR-10 from an image folder or TFDS (chapter 5): cifar_tutorial.sources.

Every failure must come as one :class:`~cifar_tutorial.sources.DataError` whose
message names the problem and the fix, never as an error from deep inside Pillow or
TensorFlow, and offline TFDS must fail in seconds, not after minutes of retries.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cifar_tutorial import data, errors, sources
from tests.fixtures import BAD_FOLDERS, closed_port, fresh_folder, make_image_folder


@pytest.mark.parametrize("case", BAD_FOLDERS)
def test_bad_folder_gives_one_clear_data_error(tmp_path: Path, case: str) -> None:
    breaker, fragments = BAD_FOLDERS[case]
    data_dir = breaker(fresh_folder(tmp_path))
    with pytest.raises(errors.CifarTutorialError) as info:
        data.load_cifar10(source="folder", data_dir=data_dir)
    assert type(info.value) is sources.DataError is data.DataError is errors.DataError
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
    a = sources.read_image_folder(clean)
    b = sources.read_image_folder(messy)
    for (xa, ya), (xb, yb) in zip(a[:2], b[:2]):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    assert set(np.unique(b[0][1])) == set(range(10))


def test_reading_matches_tfds_image_folder(tmp_path: Path) -> None:
    """Same pixels, labels and order as ``tfds.ImageFolder`` (the book's stored results)."""
    import tensorflow_datasets as tfds

    root = make_image_folder(tmp_path / "cifar", 3, 2)
    (x_tr, y_tr), (x_te, y_te), names = sources.read_image_folder(root)
    assert tuple(names) == sources.CLASS_NAMES
    builder = tfds.ImageFolder(str(root))
    for split, x, y in (("train", x_tr, y_tr), ("test", x_te, y_te)):
        ds = builder.as_dataset(split=split, as_supervised=True, shuffle_files=False)
        xs, ys = zip(*ds.as_numpy_iterator())
        np.testing.assert_array_equal(np.stack(xs), x)
        np.testing.assert_array_equal(np.array(ys), y)


def test_check_image_folder_reads_headers_only_when_asked(tmp_path: Path) -> None:
    root = fresh_folder(tmp_path)
    (root / "train" / "cat" / "0000.jpg").write_bytes(b"not a jpeg")
    assert sources.check_image_folder(root) == sorted(sources.CLASS_NAMES)  # names only
    with pytest.raises(sources.DataError, match="cannot be read as an image"):
        sources.check_image_folder(root, headers=True)


def test_tfds_source_with_mock_data(tmp_path: Path) -> None:
    """The TFDS path, run on TFDS's own offline mock data."""
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=24):
        (x_tr, y_tr), (x_te, y_te), names = sources.read_tfds(tmp_path, download=False)
    assert x_tr.shape == (24, 32, 32, 3) and x_tr.dtype == np.uint8
    assert x_te.shape == (24, 32, 32, 3) and y_te.dtype == np.int32
    assert len(names) == 10


def test_tfds_not_prepared_without_download(tmp_path: Path) -> None:
    with pytest.raises(sources.DataError, match="not prepared"):
        data.load_cifar10("tfds", tfds_data_dir=tmp_path, download=False)


@pytest.mark.parametrize("host", ["closed port", "TEST-NET"])
def test_tfds_offline_fails_in_seconds(tmp_path: Path, monkeypatch, host: str) -> None:
    import tensorflow_datasets  # noqa: F401 - import time is not what we measure

    address = ("127.0.0.1", closed_port()) if host == "closed port" else ("192.0.2.1", 443)
    monkeypatch.setattr(sources, "TFDS_HOST", address)
    start = time.perf_counter()
    with pytest.raises(sources.DataError) as info:
        data.load_cifar10(source="tfds", tfds_data_dir=tmp_path / "tfds", network_timeout=1.0)
    assert time.perf_counter() - start < 10
    message = str(info.value)
    assert address[0] in message and "cannot be reached" in message
    assert "CIFAR10_DIR" in message and "downloads/manual" in message  # how to get the data
    with pytest.raises(sources.DataError, match="CIFAR10_DIR"):
        sources.read_tfds(tmp_path / "tfds", network_timeout=1.0)


def test_network_probe_gives_up_on_a_hanging_lookup(monkeypatch) -> None:
    """A name lookup that hangs (offline DNS) costs the timeout, not the lookup's minutes."""
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: time.sleep(30))
    start = time.perf_counter()
    assert sources.network_reachable(("cifar.invalid", 443), timeout=0.5) is False
    assert time.perf_counter() - start < 3


def test_network_probe_finds_a_listening_port() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        assert sources.network_reachable(server.getsockname(), timeout=2.0) is True
    assert sources.network_reachable(("127.0.0.1", closed_port()), timeout=2.0) is False


def test_hanging_probe_does_not_keep_the_process_alive() -> None:
    """The probe's thread must not be joined at exit (a thread pool's would be)."""
    code = (
        "import socket, time\n"
        "socket.create_connection = lambda *a, **k: time.sleep(60)\n"
        "from cifar_tutorial.sources import network_reachable\n"
        "print(network_reachable(('cifar.invalid', 443), timeout=0.5), time.time())\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=90)
    ended = time.time()
    answer, returned = done.stdout.split()
    assert answer == "False", done.stderr
    assert ended - float(returned) < 20  # the 60 s probe was left behind (TF's import not timed)


def _arrays(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8),
            rng.permutation(np.arange(n) % 10))


def test_write_image_folder_round_trips_pixels_and_labels(tmp_path: Path) -> None:
    (x_train, y_train), test = _arrays(30, 0), _arrays(10, 1)
    # Keras' load_data gives labels of shape (n, 1)
    root = sources.write_image_folder(tmp_path / "cifar10", (x_train, y_train[:, None]), test)
    assert root == tmp_path / "cifar10"
    assert not (tmp_path / "cifar10.partial").exists()
    (x_tr, y_tr), (x_te, y_te), names = sources.read_image_folder(root)
    assert list(names) == list(sources.CLASS_NAMES)
    for (x, y), (x_read, y_read) in [((x_train, y_train), (x_tr, y_tr)), (test, (x_te, y_te))]:
        written = sorted((image.tobytes(), int(label)) for image, label in zip(x, y))
        read = sorted((image.tobytes(), int(label)) for image, label in zip(x_read, y_read))
        assert written == read


def test_write_image_folder_starts_afresh_after_an_interrupted_run(tmp_path: Path) -> None:
    leftover = tmp_path / "cifar10.partial" / "train" / "cat" / "99999.png"
    leftover.parent.mkdir(parents=True)
    leftover.write_bytes(b"half a file")
    root = sources.write_image_folder(tmp_path / "cifar10", _arrays(10, 0), _arrays(10, 1))
    assert sum(1 for _ in root.glob("*/*/*.png")) == 20
    assert not (tmp_path / "cifar10.partial").exists()


def test_write_image_folder_keeps_an_existing_folder(tmp_path: Path) -> None:
    root = tmp_path / "cifar10"
    root.mkdir()
    (root / "notes.txt").write_text("mine")
    with pytest.raises(errors.DataError, match="exists already"):
        sources.write_image_folder(root, _arrays(10, 0), _arrays(10, 1))
    assert [p.name for p in root.iterdir()] == ["notes.txt"]


@pytest.mark.parametrize("bad", ["label", "shape"])
def test_write_image_folder_refuses_what_is_not_cifar10(tmp_path: Path, bad: str) -> None:
    x, y = _arrays(10, 0)
    if bad == "label":
        y = y + 1  # the largest label becomes 10
    else:
        x = x[:, :16]
    with pytest.raises(errors.DataError, match="labels must lie" if bad == "label" else "shape"):
        sources.write_image_folder(tmp_path / "cifar10", (x, y), _arrays(10, 1))
    assert list(tmp_path.iterdir()) == []
