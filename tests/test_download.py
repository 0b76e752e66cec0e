"""Tests for download_facades_dataset.py and its bash wrapper, on tiny synthetic
datasets only; most run through both entry points.

Nothing here touches the network: the downloader reads PIX2PIX_DATASETS_URL, which
the tests point at a file:// folder of fake archives (a named pipe where a test
needs the download to hang halfway), and the real URL is only ever tried through a
proxy on a local port that refuses connections.
"""
import base64
import errno
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "download_facades_dataset.py"
WRAPPER = REPO / "download_facades_dataset.sh"
BASH = shutil.which("bash")
ENTRY_POINTS = {"python": [sys.executable, str(SCRIPT)], "bash": [BASH, str(WRAPPER)]}
NAMES = ["facades", "cityscapes", "maps", "edges2shoes", "edges2handbags", "night2day"]

# A valid 1x1 JPEG, so the tests need neither PIL nor cv2.
JPEG = base64.b64decode(
    "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDABALDA4MChAODQ4SERATGCgaGBYWGDEjJR0oOjM9PDkz"
    "ODdASFxOQERXRTc4UG1RV19iZ2hnPk1xeXBkeFxlZ2P/2wBDARESEhgVGC8aGi9jQjhCY2NjY2Nj"
    "Y2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2P/wAARCAABAAED"
    "ASIAAhEBAxEB/8QAHwAAAQUBAQEBAQEAAAAAAAAAAAECAwQFBgcICQoL/8QAtRAAAgEDAwIEAwUF"
    "BAQAAAF9AQIDAAQRBRIhMUEGE1FhByJxFDKBkaEII0KxwRVS0fAkM2JyggkKFhcYGRolJicoKSo0"
    "NTY3ODk6Q0RFRkdISUpTVFVWV1hZWmNkZWZnaGlqc3R1dnd4eXqDhIWGh4iJipKTlJWWl5iZmqKj"
    "pKWmp6ipqrKztLW2t7i5usLDxMXGx8jJytLT1NXW19jZ2uHi4+Tl5ufo6erx8vP09fb3+Pn6/8QA"
    "HwEAAwEBAQEBAQEBAQAAAAAAAAECAwQFBgcICQoL/8QAtREAAgECBAQDBAcFBAQAAQJ3AAECAxEE"
    "BSExBhJBUQdhcRMiMoEIFEKRobHBCSMzUvAVYnLRChYkNOEl8RcYGRomJygpKjU2Nzg5OkNERUZH"
    "SElKU1RVVldYWVpjZGVmZ2hpanN0dXZ3eHl6goOEhYaHiImKkpOUlZaXmJmaoqOkpaanqKmqsrO0"
    "tba3uLm6wsPExcbHyMnK0tPU1dbX2Nna4uPk5ebn6Onq8vP09fb3+Pn6/9oADAMBAAIRAxEAPwDG"
    "oooriPQP/9k="
)
assert JPEG[:2] == b"\xff\xd8" and JPEG[-2:] == b"\xff\xd9"

TRAIN = ["10.jpg", "2.jpg", "1.jpg", "b.jpg", "a.png"]
TRAIN_ORDER = ["1.jpg", "2.jpg", "10.jpg", "a.png", "b.jpg"]
VAL = ["3.jpg", "20.jpg"]
VAL_ORDER = ["3.jpg", "20.jpg"]


def clean_env(env=None):
    full_env = {k: v for k, v in os.environ.items() if k not in ("DATASETS_DIR", "PIX2PIX_DATASETS_URL")}
    full_env.update(env or {})
    return full_env


def default_sigint():
    # a background job of a non-interactive shell (a CI runner, say) inherits SIGINT
    # ignored, and Python then leaves it ignored: give the script the default, as a
    # terminal would, so that its Ctrl-C handling is what is tested
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture(params=list(ENTRY_POINTS))
def entry(request):
    """The command line that starts the downloader: python or the bash wrapper."""
    return ENTRY_POINTS[request.param]


@pytest.fixture
def run(entry):
    """run(cwd, *args, env=None): the downloader to completion, output captured."""
    def run_(cwd, *args, env=None):
        return subprocess.run([*entry, *map(str, args)], cwd=cwd, env=clean_env(env), capture_output=True,
                              text=True, timeout=30, preexec_fn=default_sigint)
    return run_


@pytest.fixture
def start(entry):
    """start(cwd, *args, env=None): the downloader in the background; killed at teardown if still running."""
    procs = []

    def start_(cwd, *args, env=None):
        procs.append(subprocess.Popen([*entry, *map(str, args)], cwd=cwd, env=clean_env(env), stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint))
        return procs[-1]
    yield start_
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def make_tree(base, train=TRAIN, val=VAL, test=None):
    """base/{train,val[,test]}/ with tiny images; returns base."""
    for split, files in (("train", train), ("val", val), ("test", test)):
        if files is None:
            continue
        (base / split).mkdir(parents=True)
        for f in files:
            (base / split / f).write_bytes(JPEG)
    return base


def make_targz(path, src_dir, arcname):
    with tarfile.open(path, "w:gz") as tar:
        tar.add(src_dir, arcname=arcname)
    return path


def read_list(path):
    return path.read_text().splitlines()


def assert_failed_cleanly(res, tmp_path, needle=None):
    """Exit 1, exactly one 'error:' line on stderr, and no dataset or staging left."""
    assert res.returncode == 1, res
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    if needle:
        assert needle in lines[0]
    datasets = tmp_path / "datasets"
    assert not datasets.exists() or list(datasets.iterdir()) == []


# --- successful imports --------------------------------------------------------------

def test_from_tarball_with_top_level_folder(run, tmp_path):
    make_tree(tmp_path / "src" / "facades", test=["5.jpg", "4.jpg"])
    archive = make_targz(tmp_path / "facades.tar.gz", tmp_path / "src" / "facades", "facades")

    res = run(tmp_path, "--from", str(archive))

    assert res.returncode == 0, res
    assert res.stderr == ""
    dest = tmp_path / "datasets" / "facades"
    assert sorted(os.listdir(tmp_path / "datasets")) == ["facades"]  # no staging left over
    assert read_list(dest / "train_list.txt") == [f"./datasets/facades/train/{f}" for f in TRAIN_ORDER]
    assert read_list(dest / "val_list.txt") == [f"./datasets/facades/val/{f}" for f in VAL_ORDER]
    assert read_list(dest / "test_list.txt") == ["./datasets/facades/test/4.jpg",
                                                 "./datasets/facades/test/5.jpg"]
    assert (dest / "train" / "10.jpg").read_bytes() == JPEG
    assert "facades ready: 5 train, 2 val, 2 test images in datasets/facades" in res.stdout
    assert "python train.py" in res.stdout
    # Every listed path resolves from the directory the script ran in.
    assert all((tmp_path / p).is_file() for p in read_list(dest / "train_list.txt"))


def test_from_flat_tarball_into_datasets_dir(run, tmp_path):
    make_tree(tmp_path / "src")
    archive = make_targz(tmp_path / "maps.tar.gz", tmp_path / "src", ".")

    res = run(tmp_path, "maps", f"--from={archive}", env={"DATASETS_DIR": "data"})

    assert res.returncode == 0, res
    dest = tmp_path / "data" / "maps"
    assert not (tmp_path / "datasets").exists()
    assert read_list(dest / "train_list.txt")[0] == "./data/maps/train/1.jpg"
    assert not (dest / "test_list.txt").exists()
    assert "maps ready: 5 train, 2 val images" in res.stdout
    # Ordinary permissions, not the private 0700 of the mktemp staging folder.
    (tmp_path / "ref").mkdir()
    assert dest.stat().st_mode == (tmp_path / "ref").stat().st_mode


@pytest.mark.parametrize("nested", [False, True], ids=["splits-at-top", "NAME-folder"])
def test_from_folder_copies(run, tmp_path, nested):
    src = tmp_path / "offline"
    make_tree(src / "facades" if nested else src, test=["1.jpg"])

    res = run(tmp_path, "facades", "--from", str(src))

    assert res.returncode == 0, res
    dest = tmp_path / "datasets" / "facades"
    assert read_list(dest / "train_list.txt") == [f"./datasets/facades/train/{f}" for f in TRAIN_ORDER]
    assert (dest / "test_list.txt").exists()
    # Copied, not moved.
    assert (src / "facades" if nested else src).joinpath("train", "1.jpg").is_file()


def test_rerun_is_a_noop(run, tmp_path):
    src = make_tree(tmp_path / "src")
    assert run(tmp_path, "--from", str(src)).returncode == 0
    train_list = tmp_path / "datasets" / "facades" / "train_list.txt"
    before = train_list.stat().st_mtime_ns

    res = run(tmp_path, "--from", str(tmp_path / "does-not-matter"))

    assert res.returncode == 0, res
    assert "already there" in res.stdout
    assert train_list.stat().st_mtime_ns == before
    assert sorted(os.listdir(tmp_path / "datasets")) == ["facades"]


def test_incomplete_destination_is_redone(run, tmp_path):
    stale = tmp_path / "datasets" / "facades" / "train"
    stale.mkdir(parents=True)
    (stale / "999.jpg").write_bytes(JPEG)  # half-unpacked: no list files
    src = make_tree(tmp_path / "src")

    res = run(tmp_path, "--from", str(src))

    assert res.returncode == 0, res
    assert "incomplete" in res.stdout
    assert not (stale / "999.jpg").exists()
    assert len(read_list(tmp_path / "datasets" / "facades" / "train_list.txt")) == len(TRAIN)


def test_list_order_and_which_files_are_listed(run, tmp_path):
    # the order the shell version wrote: numeric stems by number (ties by name),
    # then the rest by their bytes; .jpg/.jpeg/.png in any case, top level only
    names = ["10.jpg", "02.png", "2.jpg", "1.jpg", "b.jpg", "a.png", "C.JPEG", "B.jpg", "007.jpeg", "7.jpg",
             ".jpg", "1.2.jpg", "x10.jpg", "notes.txt"]
    src = make_tree(tmp_path / "src", train=names, test=["notes.txt"])
    (src / "train" / "sub").mkdir()
    (src / "train" / "sub" / "3.jpg").write_bytes(JPEG)

    res = run(tmp_path, "--from", src)

    assert res.returncode == 0, res
    dest = tmp_path / "datasets" / "facades"
    assert read_list(dest / "train_list.txt") == [
        f"./datasets/facades/train/{f}" for f in ["1.jpg", "02.png", "2.jpg", "007.jpeg", "7.jpg", "10.jpg", ".jpg",
                                                  "1.2.jpg", "B.jpg", "C.JPEG", "a.png", "b.jpg", "x10.jpg"]]
    # a test/ without images is dropped, not fatal
    assert not (dest / "test_list.txt").exists()
    assert "facades ready: 13 train, 2 val images" in res.stdout


# --- usage errors --------------------------------------------------------------------

@pytest.mark.parametrize("args", [["pokemon"], ["--bogus"], ["--from"], ["facades", "maps"]])
def test_bad_arguments_print_usage(run, tmp_path, args):
    res = run(tmp_path, *args)

    assert res.returncode == 2, res
    assert "usage:" in res.stderr
    assert all(name in res.stderr for name in NAMES)
    assert not (tmp_path / "datasets").exists()


def test_missing_source_path(run, tmp_path):
    res = run(tmp_path, "--from", str(tmp_path / "nope.tar.gz"))

    assert_failed_cleanly(res, tmp_path, "nope.tar.gz")
    assert not (tmp_path / "datasets").exists()


# --- archives that must be refused -------------------------------------------------

def _member(tar, name, data=JPEG, **attrs):
    info = tarfile.TarInfo(name)
    info.size = len(data) if data is not None else 0
    for key, value in attrs.items():
        setattr(info, key, value)
    tar.addfile(info, io.BytesIO(data) if data is not None else None)


def _crafted(path, evil, extra):
    """An otherwise valid facades archive plus whatever `extra` adds."""
    with tarfile.open(path, "w:gz") as tar:
        for f in ("1.jpg", "2.jpg"):
            _member(tar, f"facades/train/{f}")
            _member(tar, f"facades/val/{f}")
        extra(tar, evil)


CRAFTED = {
    "dotdot": lambda tar, evil: _member(tar, "facades/../../evil"),
    "dotdot-top": lambda tar, evil: _member(tar, "../evil"),
    "absolute": lambda tar, evil: _member(tar, str(evil)),
    "symlink": lambda tar, evil: _member(tar, "facades/train/3.jpg", None,
                                         type=tarfile.SYMTYPE, linkname=str(evil)),
    "hardlink": lambda tar, evil: _member(tar, "facades/train/3.jpg", None,
                                          type=tarfile.LNKTYPE, linkname="facades/train/1.jpg"),
    "fifo": lambda tar, evil: _member(tar, "facades/train/3.jpg", None, type=tarfile.FIFOTYPE),
}


@pytest.mark.parametrize("kind", CRAFTED)
def test_unsafe_archive_is_refused(run, tmp_path, kind):
    evil = tmp_path / "evil"
    archive = tmp_path / "bad.tar.gz"
    _crafted(archive, evil, CRAFTED[kind])

    res = run(tmp_path, "--from", str(archive))

    assert_failed_cleanly(res, tmp_path, "refusing")
    assert not evil.exists() and not (tmp_path / "datasets" / "evil").exists()


def test_corrupt_gzip_is_refused(run, tmp_path):
    make_tree(tmp_path / "src" / "facades")
    archive = make_targz(tmp_path / "facades.tar.gz", tmp_path / "src" / "facades", "facades")
    archive.write_bytes(archive.read_bytes()[:-40])  # truncated download

    res = run(tmp_path, "--from", str(archive))

    assert_failed_cleanly(res, tmp_path, "not a valid .tar.gz")


def test_empty_archive_is_refused(run, tmp_path):
    archive = tmp_path / "empty.tar.gz"
    tarfile.open(archive, "w:gz").close()

    res = run(tmp_path, "--from", str(archive))

    assert_failed_cleanly(res, tmp_path, "no train/ and val/")


def test_archive_without_images_is_refused(run, tmp_path):
    with tarfile.open(tmp_path / "noimg.tar.gz", "w:gz") as tar:
        _member(tar, "facades/train/readme.txt", b"hi")
        _member(tar, "facades/val/1.jpg")

    res = run(tmp_path, "--from", str(tmp_path / "noimg.tar.gz"))

    assert_failed_cleanly(res, tmp_path, "no .jpg/.png images in train/")


# --- downloading, from a fake server -------------------------------------------------

def serve(tmp_path, files):
    """A fake download server: a folder of {name: bytes}; returns the env that points the downloader at it."""
    server = tmp_path / "server"
    server.mkdir()
    for name, data in files.items():
        (server / name).write_bytes(data)
    return {"PIX2PIX_DATASETS_URL": server.as_uri()}


def serve_hanging(tmp_path, name):
    """A fake server whose NAME.tar.gz is a named pipe: the download gets what the
    test writes into it, when the test writes it. Returns (env, pipe path)."""
    env = serve(tmp_path, {})
    fifo = tmp_path / "server" / f"{name}.tar.gz"
    os.mkfifo(fifo)
    return env, fifo


def open_writer(fifo, proc):
    """The writing end of fifo, once the downloader has opened it."""
    deadline = time.monotonic() + 20
    while True:
        try:
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)  # ENXIO until a reader is there
            os.set_blocking(fd, True)
            return os.fdopen(fd, "wb", buffering=0)
        except OSError as e:
            if e.errno != errno.ENXIO or proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the downloader never opened {fifo}") from e
        time.sleep(0.02)


def wait_for_partial(datasets, name, proc):
    """The temporary download file, once some bytes have arrived in it."""
    deadline = time.monotonic() + 20
    while proc.poll() is None and time.monotonic() < deadline:
        partial = [p for p in datasets.glob(f".{name}.download.*") if p.stat().st_size > 0]
        if partial:
            return partial[0]
        time.sleep(0.02)
    raise AssertionError(f"no partial download of {name} appeared in {datasets}")


def test_download_without_network_fails_cleanly(run, tmp_path):
    # The real URL, through a proxy that refuses every connection: no network used.
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))  # bound, never listening: connecting is refused at once
        proxy = f"http://127.0.0.1:{closed.getsockname()[1]}"
        res = run(tmp_path, env={"http_proxy": proxy, "HTTP_PROXY": proxy, "no_proxy": "", "NO_PROXY": ""})

    assert_failed_cleanly(res, tmp_path, "download failed: http://efrosgans.eecs.berkeley.edu"
                                         "/pix2pix/datasets/facades.tar.gz")
    assert "Connection refused" in res.stderr  # the reason, folded into the one line


def test_download_success_uses_a_temporary_name(start, tmp_path):
    make_tree(tmp_path / "src" / "night2day")
    data = make_targz(tmp_path / "n.tar.gz", tmp_path / "src" / "night2day", "night2day").read_bytes()
    env, fifo = serve_hanging(tmp_path, "night2day")

    proc = start(tmp_path, "night2day", env=env)
    with open_writer(fifo, proc) as pipe:
        pipe.write(data[:len(data) // 2])
        tmp_file = wait_for_partial(tmp_path / "datasets", "night2day", proc)  # seen halfway
        pipe.write(data[len(data) // 2:])
    out, err = proc.communicate(timeout=30)

    assert proc.returncode == 0, err
    assert "night2day ready: 5 train, 2 val" in out
    assert not tmp_file.name.endswith(".tar.gz")
    assert not tmp_file.exists()  # temp download removed
    assert sorted(os.listdir(tmp_path / "datasets")) == ["night2day"]


def test_truncated_download_is_refused(run, tmp_path):
    env = serve(tmp_path, {"facades.tar.gz": b"\037\213\010\000"})

    res = run(tmp_path, env=env)

    assert_failed_cleanly(res, tmp_path, "not a valid .tar.gz")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["INT", "TERM"])
def test_interrupted_download_leaves_nothing(start, tmp_path, sig):
    # Signalled while blocked halfway through the download, as Ctrl-C would find it.
    # Through the bash wrapper this also checks that bash execs Python: a bash
    # that waited instead would die of the signal and leave Python running.
    env, fifo = serve_hanging(tmp_path, "facades")

    proc = start(tmp_path, env=env)
    with open_writer(fifo, proc) as pipe:
        pipe.write(b"partial")
        wait_for_partial(tmp_path / "datasets", "facades", proc)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)

    assert proc.returncode == 128 + sig, err
    assert err == ""  # no traceback
    assert not (tmp_path / "datasets").exists()


# --- the bash wrapper and the module ------------------------------------------------

def bin_with(tmp_path, **links):
    """A folder holding only the given commands, {name: target}, to be the whole PATH."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for name, target in links.items():
        (bindir / name).symlink_to(target)
    return str(bindir)


def test_wrapper_falls_back_to_python(tmp_path):
    src = make_tree(tmp_path / "src")
    # a python3 that fails, as the Windows Store stub does, then a working python
    path = bin_with(tmp_path, dirname=shutil.which("dirname"), python3=shutil.which("false"), python=sys.executable)

    res = subprocess.run([BASH, WRAPPER, "--from", src], cwd=tmp_path, env=clean_env({"PATH": path}),
                         capture_output=True, text=True, timeout=30)

    assert res.returncode == 0, res
    assert "facades ready: 5 train, 2 val" in res.stdout


def test_wrapper_without_python(tmp_path):
    src = make_tree(tmp_path / "src")
    path = bin_with(tmp_path, dirname=shutil.which("dirname"))

    res = subprocess.run([BASH, WRAPPER, "--from", src], cwd=tmp_path, env=clean_env({"PATH": path}),
                         capture_output=True, text=True, timeout=30)

    assert_failed_cleanly(res, tmp_path, "python")
    assert not (tmp_path / "datasets").exists()


def test_module_imports_without_side_effects(tmp_path):
    env = clean_env({"PYTHONPATH": str(REPO), "PIX2PIX_DATASETS_URL": (tmp_path / "nowhere").as_uri()})

    res = subprocess.run([sys.executable, "-c", "import download_facades_dataset"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=30)

    assert res.returncode == 0 and res.stdout == res.stderr == "", res
    assert list(tmp_path.iterdir()) == []
