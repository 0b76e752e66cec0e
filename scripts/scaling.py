"""Does the data path scale? For growing subsets of synthetic 256x512 pairs: the
cache build time, one epoch of the data path, and the process's peak memory.
Time should grow linearly with the pairs and private memory stay flat.

    python scripts/scaling.py                    # 20000 pairs in /tmp/pix2pix_scaling: ~8 GB cache, long
    python scripts/scaling.py --count 2000       # a quick look

The epoch is the data path alone, as train.py runs it on CPU, with no network:
`training.train_loader` (gather) -> `training.model_batches` (cut_pairs: random
shift and mirror; to_float, channels-last), in batches of --batch_size. Each size runs
in a fresh process, so each peak is its own. Peak RSS also counts the cache's
pages that the memory map has touched: those are the kernel's page cache, which
it drops under pressure, so private memory (RssAnon) is what shows the footprint.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
import train  # noqa: E402  (the repo root is on the path only now)
import training  # noqa: E402
from facades_dataset import FacadesDataset  # noqa: E402

SIDE = 256
def make_pair(rng):
    """A SIDE x 2 SIDE image of flat random blocks (JPEG sizes like a facades pair's)."""
    blocks = rng.integers(0, 256, (8, 16, 3), dtype=np.uint8)
    return cv2.resize(blocks, (2 * SIDE, SIDE), interpolation=cv2.INTER_NEAREST)


def write_pairs(folder, count):
    """folder/1.jpg ... count.jpg; files already there are kept, so a bigger
    --count only adds the missing ones."""
    folder.mkdir(parents=True, exist_ok=True)

    def write(i):
        path = folder / f'{i}.jpg'
        if not path.exists():
            image = make_pair(np.random.default_rng(i))  # seeded per file: any order, same files
            cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        return path
    with ThreadPoolExecutor(os.cpu_count() or 1) as pool:  # cv2 encodes without the GIL
        return list(pool.map(write, range(1, count + 1)))


def private_mb():
    for line in Path('/proc/self/status').read_text().splitlines():
        if line.startswith('RssAnon:'):
            return int(line.split()[1]) / 1024
    return 0.0


class PeakSampler(threading.Thread):
    """Samples private memory every 20 ms; ru_maxrss has no private-only variant."""

    def __init__(self):
        super().__init__(daemon=True)
        self.peak, self.done = private_mb(), threading.Event()
        self.start()

    def run(self):
        while not self.done.wait(0.02):
            self.peak = max(self.peak, private_mb())

    def take(self):
        """The peak since the last take."""
        peak, self.peak = max(self.peak, private_mb()), private_mb()
        return peak

    def stop(self):
        self.done.set()
        self.join()
        return self.take()


def measure(list_file, cache_dir, batch_size):
    """One subset, in this process: build its cache, run one epoch, delete the cache."""
    torch.set_num_threads(os.cpu_count() or 1)
    sampler = PeakSampler()
    started = time.perf_counter()
    data = FacadesDataset(list_file, augment=True, image_size=SIDE, cache_dir=cache_dir, progress=False)
    build_seconds = time.perf_counter() - started
    build_private_mb = sampler.take()
    try:
        cfg, device = dict(train.config, batch_size=batch_size), torch.device('cpu')
        loader = training.train_loader(data, cfg, device)
        rng = torch.Generator().manual_seed(0)
        started = time.perf_counter()
        for _ in training.model_batches(loader, data, cfg, device, rng):
            pass
        epoch_seconds = time.perf_counter() - started
        cache_gb = data.cache_path.stat().st_size / 1e9
    finally:
        for path in (data.cache_path, data.cache_path.with_suffix('.index.npy')):
            path.unlink(missing_ok=True)  # the next size needs the disk
    return {'pairs': len(data), 'cache_gb': cache_gb, 'cache_build_seconds': build_seconds,
            'epoch_seconds': epoch_seconds, 'peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            'peak_private_build_mb': build_private_mb, 'peak_private_epoch_mb': sampler.stop()}


def table(rows):
    columns = ['pairs', 'cache GB', 'build s', 'build ms/pair', 'epoch s', 'epoch ms/pair', 'peak RSS MB',
               'private MB: build', 'epoch']
    cells = [columns] + [[str(r['pairs']), f'{r["cache_gb"]:.2f}', f'{r["cache_build_seconds"]:.1f}',
                          f'{1000 * r["cache_build_seconds"] / r["pairs"]:.2f}', f'{r["epoch_seconds"]:.1f}',
                          f'{1000 * r["epoch_seconds"] / r["pairs"]:.2f}', f'{r["peak_rss_mb"]:.0f}',
                          f'{r["peak_private_build_mb"]:.0f}', f'{r["peak_private_epoch_mb"]:.0f}'] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    return '\n'.join('  '.join(cell.rjust(width) for cell, width in zip(row, widths)) for row in cells)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--count', type=int, default=20000,
                        help='synthetic pairs, the largest subset (default: %(default)s)')
    parser.add_argument('--folder', type=Path, default=Path('/tmp/pix2pix_scaling'),
                        help='where the pairs, the caches and the JSON go (default: %(default)s)')
    parser.add_argument('--batch_size', type=int, default=16, help='batch of the data-path epoch (default: 16, as in docs/speed.md)')
    parser.add_argument('--out', type=Path, help='the JSON results (default: FOLDER/scaling.json)')
    parser.add_argument('--measure', type=Path, help=argparse.SUPPRESS)  # internal: one subset's list file
    args = parser.parse_args()
    cache_dir = args.folder / 'cache'
    if args.measure:
        print(json.dumps(measure(args.measure, cache_dir, args.batch_size)))
        return
    if args.count < 8:
        sys.exit('error: --count must be at least 8')
    started = time.perf_counter()
    paths = write_pairs(args.folder / 'pairs', args.count)
    print(f'{args.count} pairs in {args.folder / "pairs"} ({time.perf_counter() - started:.0f} s to make the missing)',
          flush=True)
    rows = []
    for size in (args.count // 8, args.count // 4, args.count // 2, args.count):
        list_file = args.folder / f'subset_{size}.txt'
        list_file.write_text(''.join(f'{path}\n' for path in paths[:size]))
        child = subprocess.run([sys.executable, __file__, '--measure', str(list_file), '--folder', str(args.folder),
                                '--batch_size', str(args.batch_size)], capture_output=True, text=True)
        if child.returncode:
            sys.exit(f'error: measuring {size} pairs failed:\n{child.stderr}')
        rows.append(json.loads(child.stdout.splitlines()[-1]))
        print(f'{size} pairs: build {rows[-1]["cache_build_seconds"]:.1f} s, epoch {rows[-1]["epoch_seconds"]:.1f} s',
              flush=True)
    out = args.out or args.folder / 'scaling.json'
    out.write_text(json.dumps({'batch_size': args.batch_size, 'threads': os.cpu_count(), 'torch': torch.__version__,
                               'epoch': 'data path only: gather + cut_pairs + to_float, no network',
                               'load_average': os.getloadavg(), 'sizes': rows}, indent=2) + '\n')
    print(table(rows))
    print(f'epoch: the data path alone (no network), batch {args.batch_size}; wrote {out}')


if __name__ == '__main__':
    main()
