"""Fetch a pix2pix dataset into datasets/NAME/ with train/val(/test) image lists.

    python download_facades_dataset.py [NAME] [--from PATH]

--from takes a local NAME.tar.gz or an unpacked folder, for offline machines.
DATASETS_DIR overrides the parent folder "datasets" and PIX2PIX_DATASETS_URL
the server (the tests use both; a file:// URL works). Standard library only,
so it runs anywhere Python does; download_facades_dataset.sh runs this file.
"""
import gzip
import os
import re
import shutil
import signal
import socket
import sys
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import zlib
from pathlib import PureWindowsPath

NAMES = ['facades', 'cityscapes', 'maps', 'edges2shoes', 'edges2handbags', 'night2day']
URL_BASE = 'http://efrosgans.eecs.berkeley.edu/pix2pix/datasets'
IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png')
CHUNK = 1 << 20


class Failure(Exception):
    """Printed as one line, 'error: ...', and the exit status is 1."""


def usage():
    print('usage: python download_facades_dataset.py [NAME] [--from PATH]'
          '  (or: bash download_facades_dataset.sh ...)', file=sys.stderr)
    print(f"  NAME: {' '.join(NAMES)} (default: facades)", file=sys.stderr)
    print('  --from PATH: use a local NAME.tar.gz or unpacked folder instead of downloading', file=sys.stderr)
    sys.exit(2)


def why(e):
    """The useful part of an exception, short enough for the one error line."""
    if isinstance(e, shutil.Error) and e.args and isinstance(e.args[0], list):
        text = str(e.args[0][0][2])  # copytree collects (src, dst, reason); the first says enough
    elif isinstance(e, urllib.error.HTTPError):
        text = f'HTTP {e.code} {e.reason}'
    elif isinstance(e, urllib.error.URLError):
        text = why(e.reason) if isinstance(e.reason, OSError) else str(e.reason)
    elif isinstance(e, OSError) and e.strerror:
        text = e.strerror
    else:
        text = str(e) or type(e).__name__
    return text[:200]


def parse_args(args):
    """Same rules as the shell version had: one NAME, --from PATH or --from=PATH."""
    name, src = '', ''
    while args:
        arg, args = args[0], args[1:]
        if arg == '--from':
            if not args:
                usage()
            src, args = args[0], args[1:]
        elif arg.startswith('--from='):
            src = arg[len('--from='):]
        elif arg.startswith('-') or name:
            usage()
        else:
            name = arg
    name = name or 'facades'
    # Exact match against the list: NAME becomes part of paths and a URL.
    if name not in NAMES:
        usage()
    return name, src


def data_dir(folder, name):
    """Where train/ and val/ are: the pix2pix archives wrap them in a NAME/ folder,
    hand-made ones may not."""
    for d in (folder, os.path.join(folder, name)):
        if os.path.isdir(os.path.join(d, 'train')) and os.path.isdir(os.path.join(d, 'val')):
            return d
    return None


def make_staging(root, name):
    # mkdtemp makes it private (0700); it may become the dataset folder itself,
    # so it gets the permissions an ordinary mkdir would give.
    staging = tempfile.mkdtemp(prefix=f'.{name}.partial.', dir=root)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(staging, 0o777 & ~umask)
    return staging


def transient(e):
    """Worth another try, as curl --retry would: timeouts and server-side errors."""
    if isinstance(e, urllib.error.HTTPError):
        return e.code >= 500 or e.code in (408, 429)
    if isinstance(e, urllib.error.URLError):
        e = e.reason
    return isinstance(e, (socket.timeout, TimeoutError, ConnectionResetError))


def progress_bar(total):
    """A bar on a terminal only: cityscapes and edges2shoes take minutes."""
    if not sys.stderr.isatty():
        return None
    try:
        from tqdm import tqdm
    except ImportError:  # the bar is a nicety; downloading works without it
        return None
    return tqdm(total=total, unit='B', unit_scale=True, unit_divisor=1024)


def download(url, path):
    for attempt in range(3):
        try:
            with urllib.request.urlopen(url, timeout=60) as response, open(path, 'wb') as out:
                bar = progress_bar(int(response.headers.get('Content-Length') or 0) or None)
                try:
                    # read1 and flush pass on whatever has arrived: the bar moves and
                    # the file grows on a slow link (the tests watch it grow)
                    while chunk := response.read1(CHUNK):
                        out.write(chunk)
                        out.flush()
                        if bar is not None:
                            bar.update(len(chunk))
                finally:
                    if bar is not None:
                        bar.close()
            return
        except (OSError, ValueError) as e:  # URLError and HTTPError are OSErrors; ValueError: a bad URL
            if attempt == 2 or not transient(e):
                raise Failure(f'download failed: {url} ({why(e)})')
            time.sleep(2 ** attempt)


def check_gzip(archive, origin):
    # A truncated download would otherwise fail halfway through extraction;
    # reading to the end checks every member's CRC and length, as gzip -t does.
    try:
        if os.path.getsize(archive) == 0:
            raise EOFError
        with gzip.open(archive) as f:
            while f.read(CHUNK):
                pass
    except EOFError:
        raise Failure(f'{origin} is not a valid .tar.gz (unexpected end of file)')
    except (OSError, zlib.error) as e:
        raise Failure(f'{origin} is not a valid .tar.gz ({why(e)})')


def unsafe_path(name):
    # Both separators and drive letters, since Windows reads them all as paths.
    parts = re.split(r'[\\/]', name)
    return name.startswith(('/', '\\')) or bool(PureWindowsPath(name).drive) or '..' in parts


def unpack(archive, origin, staging):
    try:
        tar = tarfile.open(archive, 'r:gz')
        members = tar.getmembers()
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise Failure(f'cannot read {origin} ({why(e)})')
    with tar:
        # Refuse the whole archive rather than trust tarfile's own guards, which
        # vary by Python version: only plain files and folders, and no name that
        # could land outside the staging folder.
        for m in members:
            if not (m.isreg() or m.isdir()):
                target = f' -> {m.linkname}' if m.linkname else ''
                raise Failure(f'refusing {origin}: link or special file: {m.name}{target}')
            if unsafe_path(m.name):
                raise Failure(f'refusing {origin}: unsafe path: {m.name}')
        # filter='data' (Python 3.12, backported to 3.8.17+) also drops owners and
        # odd mode bits, like tar --no-same-owner.
        extra = {'filter': 'data'} if hasattr(tarfile, 'data_filter') else {}
        try:
            tar.extractall(staging, members, **extra)
        except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
            raise Failure(f'cannot unpack {origin} ({why(e)})')


def numeric_first(filename):
    """1, 2, 10 by the number of the stem, so runs and machines agree on the order;
    non-numeric names follow, by their bytes."""
    stem = filename.rsplit('.', 1)[0]
    if re.fullmatch('[0-9]+', stem):
        return 0, int(stem), filename
    return 1, 0, filename


def write_list(data, split, prefix):
    """data/SPLIT_list.txt, one path per line; returns how many images it lists."""
    with os.scandir(os.path.join(data, split)) as entries:
        files = [e.name for e in entries
                 if e.is_file(follow_symlinks=False) and e.name.lower().endswith(IMAGE_SUFFIXES)]
    files.sort(key=numeric_first)
    # Bytes, '/' and '\n' on every system: the same file the shell version wrote.
    lines = b''.join(os.fsencode(f'{prefix}/{split}/{f}') + b'\n' for f in files)
    with open(os.path.join(data, f'{split}_list.txt'), 'wb') as out:
        out.write(lines)
    return len(files)


def remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    elif os.path.lexists(path):
        os.remove(path)


def prepare(name, src, root, staging, temps):
    """The finished dataset in a folder under staging; returns that folder and the place it came from."""
    if os.path.isdir(src):
        data = data_dir(src, name)
        if data is None:
            raise Failure(f'{src} has no train/ and val/ folders (nor {name}/train, {name}/val)')
        # Copy only the splits, never the user's copy itself: it stays usable.
        for split in ('train', 'val', 'test'):
            if os.path.isdir(os.path.join(data, split)):
                try:
                    # links stay links, as cp -R made them; only regular files get listed
                    shutil.copytree(os.path.join(data, split), os.path.join(staging, split), symlinks=True)
                except (OSError, shutil.Error) as e:
                    raise Failure(f'cannot copy {data}/{split} ({why(e)})')
        return staging, src
    archive = origin = src
    if not archive:
        url = (os.environ.get('PIX2PIX_DATASETS_URL') or URL_BASE).rstrip('/') + f'/{name}.tar.gz'
        origin = f'the download from {url}'
        try:
            fd, archive = tempfile.mkstemp(prefix=f'.{name}.download.', dir=root)
        except OSError as e:
            raise Failure(f'cannot write in {root} ({why(e)})')
        os.close(fd)
        temps.append(archive)
        print(f'downloading {url} ...', flush=True)
        download(url, archive)
    check_gzip(archive, origin)
    unpack(archive, origin, staging)
    data = data_dir(staging, name)
    if data is None:
        raise Failure(f'{origin} has no train/ and val/ folders (nor {name}/train, {name}/val)')
    return data, src or url


def fetch(name, src):
    root = os.environ.get('DATASETS_DIR') or 'datasets'
    dest = f'{root}/{name}'
    # List entries are written relative to the repo root, as the data loader expects.
    prefix = dest if os.path.isabs(root) else './' + re.sub('^[.]/', '', dest)

    # Both list files are written last, so together they mean "finished".
    if os.path.isfile(f'{dest}/train_list.txt') and os.path.isfile(f'{dest}/val_list.txt'):
        print(f'{name} is already there in {dest} (delete it to fetch again)')
        return
    if os.path.lexists(dest):
        print(f'{dest} exists but is incomplete; redoing it')
    if src and not os.path.exists(src):
        raise Failure(f'no such file or folder: {src}')

    # Everything temporary lives next to the destination (same filesystem, so the
    # final rename is atomic, and multi-GB archives don't fill a small temp folder),
    # under hidden names that can't be mistaken for a finished dataset. The finally
    # removes it all on any exit, including Ctrl-C.
    made_root = False
    temps = []
    try:
        if not os.path.isdir(root):
            try:
                os.makedirs(root)
            except OSError as e:
                raise Failure(f'cannot create {root} ({why(e)})')
            made_root = True
        try:
            staging = make_staging(root, name)
        except OSError as e:
            raise Failure(f'cannot write in {root} ({why(e)})')
        temps.append(staging)
        data, origin = prepare(name, src, root, staging, temps)

        n_train = write_list(data, 'train', prefix)
        if n_train == 0:
            raise Failure(f'no .jpg/.png images in train/ of {origin}')
        n_val = write_list(data, 'val', prefix)
        if n_val == 0:
            raise Failure(f'no .jpg/.png images in val/ of {origin}')
        summary = f'{n_train} train, {n_val} val'
        if os.path.isdir(os.path.join(data, 'test')):
            # test/ is optional, so an image-less one is dropped rather than fatal.
            n_test = write_list(data, 'test', prefix)
            if n_test > 0:
                summary += f', {n_test} test'
            else:
                os.remove(os.path.join(data, 'test_list.txt'))

        # Only a fully checked folder takes the final name; an incomplete old one goes first.
        try:
            remove(dest)
            os.rename(data, dest)
        except OSError as e:
            raise Failure(f'cannot move the dataset into {dest} ({why(e)})')
    finally:
        for path in temps:
            remove(path)
        if made_root:
            try:
                os.rmdir(root)  # only if empty: the dataset may be in it now
            except OSError:
                pass
    print(f'{name} ready: {summary} images in {dest}')
    print('next: python train.py')


def main():
    # SIGTERM (kill, a CI timeout) cleans up as Ctrl-C does: through the finally in fetch.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    name, src = parse_args(sys.argv[1:])
    try:
        fetch(name, src)
    except Failure as e:
        print(f'error: {e}', file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    except OSError as e:  # anything unforeseen still gets one line, not a traceback
        print(f'error: {e}', file=sys.stderr)
        sys.exit(1)


if __name__ == '__main__':
    main()
