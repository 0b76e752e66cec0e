"""Tests for download_facades_dataset.sh, on tiny synthetic datasets only.

Nothing here touches the network: downloads go through fake curl/wget scripts
put first on PATH.
"""
import base64
import io
import os
import shutil
import signal
import subprocess
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "download_facades_dataset.sh"
BASH = shutil.which("bash")
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


def run(cwd, *args, env=None):
    full_env = {k: v for k, v in os.environ.items() if k != "DATASETS_DIR"}
    full_env.update(env or {})
    # a background job of a non-interactive shell (a CI runner, say) inherits SIGINT
    # ignored, and bash cannot trap a signal ignored at entry: give the script the
    # default, as a terminal would, so that its Ctrl-C handling is what is tested
    return subprocess.run([BASH, str(SCRIPT), *args], cwd=cwd, env=full_env, capture_output=True, text=True,
                          timeout=30, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


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

def test_from_tarball_with_top_level_folder(tmp_path):
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


def test_from_flat_tarball_into_datasets_dir(tmp_path):
    make_tree(tmp_path / "src")
    archive = make_targz(tmp_path / "maps.tar.gz", tmp_path / "src", ".")

    res = run(tmp_path, "maps", "--from", str(archive), env={"DATASETS_DIR": "data"})

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
def test_from_folder_copies(tmp_path, nested):
    src = tmp_path / "offline"
    make_tree(src / "facades" if nested else src, test=["1.jpg"])

    res = run(tmp_path, "facades", "--from", str(src))

    assert res.returncode == 0, res
    dest = tmp_path / "datasets" / "facades"
    assert read_list(dest / "train_list.txt") == [f"./datasets/facades/train/{f}" for f in TRAIN_ORDER]
    assert (dest / "test_list.txt").exists()
    # Copied, not moved.
    assert (src / "facades" if nested else src).joinpath("train", "1.jpg").is_file()


def test_rerun_is_a_noop(tmp_path):
    src = make_tree(tmp_path / "src")
    assert run(tmp_path, "--from", str(src)).returncode == 0
    train_list = tmp_path / "datasets" / "facades" / "train_list.txt"
    before = train_list.stat().st_mtime_ns

    res = run(tmp_path, "--from", str(tmp_path / "does-not-matter"))

    assert res.returncode == 0, res
    assert "already there" in res.stdout
    assert train_list.stat().st_mtime_ns == before
    assert sorted(os.listdir(tmp_path / "datasets")) == ["facades"]


def test_incomplete_destination_is_redone(tmp_path):
    stale = tmp_path / "datasets" / "facades" / "train"
    stale.mkdir(parents=True)
    (stale / "999.jpg").write_bytes(JPEG)  # half-unpacked: no list files
    src = make_tree(tmp_path / "src")

    res = run(tmp_path, "--from", str(src))

    assert res.returncode == 0, res
    assert "incomplete" in res.stdout
    assert not (stale / "999.jpg").exists()
    assert len(read_list(tmp_path / "datasets" / "facades" / "train_list.txt")) == len(TRAIN)


# --- usage errors --------------------------------------------------------------------

@pytest.mark.parametrize("args", [["pokemon"], ["--bogus"], ["--from"], ["facades", "maps"]])
def test_bad_arguments_print_usage(tmp_path, args):
    res = run(tmp_path, *args)

    assert res.returncode == 2, res
    assert "usage:" in res.stderr
    assert all(name in res.stderr for name in NAMES)
    assert not (tmp_path / "datasets").exists()


def test_missing_source_path(tmp_path):
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
}


@pytest.mark.parametrize("kind", CRAFTED)
def test_unsafe_archive_is_refused(tmp_path, kind):
    evil = tmp_path / "evil"
    archive = tmp_path / "bad.tar.gz"
    _crafted(archive, evil, CRAFTED[kind])

    res = run(tmp_path, "--from", str(archive))

    assert_failed_cleanly(res, tmp_path, "refusing")
    assert not evil.exists() and not (tmp_path / "datasets" / "evil").exists()


def test_corrupt_gzip_is_refused(tmp_path):
    make_tree(tmp_path / "src" / "facades")
    archive = make_targz(tmp_path / "facades.tar.gz", tmp_path / "src" / "facades", "facades")
    archive.write_bytes(archive.read_bytes()[:-40])  # truncated download

    res = run(tmp_path, "--from", str(archive))

    assert_failed_cleanly(res, tmp_path, "not a valid .tar.gz")


def test_empty_archive_is_refused(tmp_path):
    archive = tmp_path / "empty.tar.gz"
    tarfile.open(archive, "w:gz").close()

    res = run(tmp_path, "--from", str(archive))

    assert_failed_cleanly(res, tmp_path, "no train/ and val/")


def test_archive_without_images_is_refused(tmp_path):
    with tarfile.open(tmp_path / "noimg.tar.gz", "w:gz") as tar:
        _member(tar, "facades/train/readme.txt", b"hi")
        _member(tar, "facades/val/1.jpg")

    res = run(tmp_path, "--from", str(tmp_path / "noimg.tar.gz"))

    assert_failed_cleanly(res, tmp_path, "no .jpg/.png images in train/")


# --- downloading, with fake curl/wget ------------------------------------------------

def fake_tools(tmp_path, body, tools=("curl", "wget")):
    """A bin folder whose curl/wget run `body` (sh); put first on PATH."""
    bindir = tmp_path / "fakebin"
    bindir.mkdir()
    for tool in tools:
        (bindir / tool).write_text("#!/bin/sh\n" + body)
        (bindir / tool).chmod(0o755)
    return {"PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"}


# Finds the output file in curl's (-o) or wget's (-O) arguments.
FIND_OUT = 'while [ $# -gt 0 ]; do case $1 in -o|-O) out=$2; shift;; esac; shift; done\n'


def test_download_without_network_fails_cleanly(tmp_path):
    env = fake_tools(tmp_path, 'echo "curl: (7) Failed to connect to host" >&2\nexit 7\n')

    res = run(tmp_path, env=env)

    assert_failed_cleanly(res, tmp_path, "download failed: http://efrosgans.eecs.berkeley.edu"
                                         "/pix2pix/datasets/facades.tar.gz")
    assert "Failed to connect" in res.stderr  # the tool's reason, folded into the one line


def test_download_success_uses_a_temporary_name(tmp_path):
    make_tree(tmp_path / "src" / "night2day")
    archive = make_targz(tmp_path / "n.tar.gz", tmp_path / "src" / "night2day", "night2day")
    env = fake_tools(tmp_path, FIND_OUT + f'echo "$out" > "{tmp_path}/out"; cp "{archive}" "$out"\n')

    res = run(tmp_path, "night2day", env=env)

    assert res.returncode == 0, res
    assert "night2day ready: 5 train, 2 val" in res.stdout
    tmp_name = (tmp_path / "out").read_text().strip()
    assert not tmp_name.endswith(".tar.gz")
    assert not Path(tmp_path, tmp_name).exists()  # temp download removed
    assert sorted(os.listdir(tmp_path / "datasets")) == ["night2day"]


def test_truncated_download_is_refused(tmp_path):
    env = fake_tools(tmp_path, FIND_OUT + 'printf "\\037\\213\\010\\000" > "$out"\n')

    res = run(tmp_path, env=env)

    assert_failed_cleanly(res, tmp_path, "not a valid .tar.gz")


def test_no_curl_nor_wget(tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in ("mktemp", "chmod", "mkdir", "rm", "rmdir", "awk"):
        (bindir / tool).symlink_to(shutil.which(tool))

    res = run(tmp_path, env={"PATH": str(bindir)})

    assert_failed_cleanly(res, tmp_path, "neither curl nor wget")
    assert not (tmp_path / "datasets").exists()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["INT", "TERM"])
def test_interrupted_download_leaves_nothing(tmp_path, sig):
    # The fake curl writes part of the file, then signals the script and itself, as
    # Ctrl-C does (the whole foreground group). Were curl to exit normally, bash could
    # take the SIGINT as handled by curl and go on, which no real Ctrl-C produces.
    env = fake_tools(tmp_path, FIND_OUT + f'echo partial > "$out"\nkill -{sig.name[3:]} $PPID\nkill -{sig.name[3:]} $$\n')

    res = run(tmp_path, env=env)

    assert res.returncode == 128 + sig
    assert not (tmp_path / "datasets").exists()
