"""Speed table: this repo's training epoch vs the original assignment's pipeline vs the compute bound.

    python benchmark.py                          # facades, both networks -> benchmark.json
    python benchmark.py --data DIR --steps 20 --out FILE
    python benchmark.py --amp off                # fp32, as on a CPU without bf16 units
    python benchmark.py --quick --data DIR       # a smoke test: few steps, images at their stored size

For two networks, the assignment's FCN (width 8, no skips, fp32) and train.py's
default settings, it measures
  repo      train.py's path: bordered uint8 cache -> DataLoader(collate_fn=gather) -> random
            crop/flip (cut_pairs) -> to_float -> forward, backward, Adam; images/s, and the
            fastest of EPOCH_REPEATS full epochs with validation (the original's too)
  original  the assignment's path: a Dataset that cv2.imreads and converts every JPEG on every
            access, DataLoader(shuffle=True, num_workers=4), the same network in fp32 NCHW
  bound     the same step as `repo` on one batch already in memory: no data path at all
and writes speedup_vs_original (original epoch / repo epoch, same network and batch)
and fraction_of_compute_bound (repo images/s / bound images/s, the median over timings
that alternate between the two) per network. The img/s columns are each run's best timing.
"""
import argparse
import itertools
import json
import math
import os
import resource
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import cv2
import torch
from torch.utils.data import DataLoader, Dataset

import train
import training
from errors import UserError, cli
from FCN_network import build_generator
from facades_dataset import FacadesDataset
from pairs import SHARED_DATA, dataset_root, list_images, split_source

REPO = Path(__file__).resolve().parent
DEFAULT_DATA = (str(SHARED_DATA / 'facades'), 'datasets/facades')
ORIGINAL_BATCH = 100    # the assignment's DataLoader(batch_size=100, shuffle=True, num_workers=4)
ORIGINAL_WORKERS = 4
ORIGINAL_LR = 1e-3
WARMUP_STEPS = 3        # oneDNN/cuDNN pick and cache kernels on the first steps of each shape
WINDOW_IMAGES = 192     # each timing covers at least this many images: short windows are mostly noise
EPOCH_REPEATS = 2       # epochs timed per path, the fastest kept
REPEATS = 7             # img/s: the best of these (load only ever slows a run); repo/bound: their median ratio
# name -> (settings over train.config, batch of the original-path comparison; None: train.config's)
NETWORKS = {
    'fcn_baseline': (dict(model='fcn', width=8, skips=False, channels_last=False), ORIGINAL_BATCH),
    # the default network is compared at its own batch: at 100 it would need ~5 GB in fp32
    'default': ({}, None),
}


def sync(device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def peak_rss_mb(who=resource.RUSAGE_SELF):
    return resource.getrusage(who).ru_maxrss / 1024  # KiB on Linux


def memory(device):
    """The peaks so far: process RSS (monotonic over the run) and CUDA allocations
    (reset here, so each measurement reports its own)."""
    result = {'peak_rss_mb': round(peak_rss_mb(), 1)}
    if device.type == 'cuda':
        result['cuda_peak_mb'] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
        torch.cuda.reset_peak_memory_stats(device)
    return result


def device_name(device):
    if device.type == 'cuda':
        return torch.cuda.get_device_name(device)
    try:
        for line in Path('/proc/cpuinfo').read_text().splitlines():
            if line.startswith('model name'):
                return line.split(':', 1)[1].strip()
    except OSError:
        pass
    import platform
    return platform.processor() or platform.machine()


def log(text):
    print(text, file=sys.stderr, flush=True)


def find_data(path):
    """--data's folder (or a name under datasets/), else the first of DEFAULT_DATA found, each
    from the current folder, then the repo's."""
    candidates = None if path else [base / name for name in DEFAULT_DATA for base in (Path.cwd(), REPO)]
    return dataset_root(path or 'facades', candidates)


def make_step(cfg, device):
    """A fresh run as train.py builds it (the same initial weights) and a function
    doing one of its training steps (`training.train_step`, as in its first epoch);
    returns (generator, amp dtype, step), the step returning the loss."""
    run = training.build_run(cfg, device, 1)

    def step(input_image, target_image):
        return training.train_step(run, input_image, target_image, epoch=1)[0]
    return run.model, run.amp_dtype, step


def images_per_second(runs, steps, device):
    """The images/s of each (step, batches) run in each of REPEATS timings of
    `steps` steps, after WARMUP_STEPS untimed ones. The runs take turns, so that
    load from other processes on the machine falls on all of them alike."""
    for step, batches in runs:
        for _ in range(WARMUP_STEPS):
            step(*next(batches))
    speeds = [[] for _ in runs]
    for _ in range(REPEATS):
        for i, (step, batches) in enumerate(runs):
            sync(device)
            started, images = time.perf_counter(), 0
            for _ in range(steps):
                input_image, target_image = next(batches)
                step(input_image, target_image)
                images += len(input_image)
            sync(device)
            speeds[i].append(images / (time.perf_counter() - started))
    return speeds


def measure_repo_and_bound(cfg, train_set, val_set, device, steps):
    """(a) train.py's data path and step, and (c) the same step on one batch
    already on the device, its ceiling: images/s of both, then (a)'s full epoch
    with validation."""
    loader = training.train_loader(train_set, cfg, device)
    rng = torch.Generator().manual_seed(cfg['seed'])
    generator, amp_dtype, step = make_step(cfg, device)
    endless = (inputs for _ in itertools.count()
               for inputs in training.model_batches(loader, train_set, cfg, device, rng))
    one_batch = [train_set.gather([i % len(train_set) for i in range(cfg['batch_size'])])]
    in_memory = next(training.model_batches(one_batch, train_set, cfg, device, rng))
    _, _, bound_step = make_step(cfg, device)
    steps = steps or max(5, math.ceil(WINDOW_IMAGES / cfg['batch_size']))
    repo_speeds, bound_speeds = images_per_second([(step, endless), (bound_step, itertools.repeat(in_memory))],
                                                  steps, device)
    # this VM's speed drifts by up to 2x within a minute: compare each timing with the
    # bound's right after it, and take the median of those ratios
    fraction = statistics.median(repo / bound for repo, bound in zip(repo_speeds, bound_speeds))
    endless.close()  # leaves no half-read epoch in the loader's workers
    training.validate(generator, val_set, cfg, device, amp_dtype)  # warm, as in every epoch after the first
    memory(device)  # the CUDA peak from here on is the epoch's

    def train_pass():
        for inputs in training.model_batches(loader, train_set, cfg, device, rng):
            step(*inputs)
    epoch = fastest_epoch(train_pass, lambda: training.validate(generator, val_set, cfg, device, amp_dtype), device)
    repo = {'train_images_per_s': max(repo_speeds), 'fraction_of_bound': fraction, **epoch,
            'workers': loader.num_workers}
    return repo | memory(device), {'train_images_per_s': max(bound_speeds)}


def fastest_epoch(train_pass, val_pass, device):
    """Seconds of the fastest of EPOCH_REPEATS epochs (train pass, then validation)."""
    timings = []
    for _ in range(EPOCH_REPEATS):
        sync(device)
        started = time.perf_counter()
        train_pass()
        sync(device)
        trained = time.perf_counter()
        val_pass()
        sync(device)
        timings.append({'epoch_seconds': time.perf_counter() - started, 'epoch_train_seconds': trained - started,
                        'epoch_val_seconds': time.perf_counter() - trained})
    return min(timings, key=lambda timing: timing['epoch_seconds'])


class OriginalDataset(Dataset):
    """The assignment's dataset: every access reads and converts the JPEG again
    (BGR, the file's own size, no jitter)."""

    def __init__(self, paths):
        self.paths = paths

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        image = cv2.imread(str(self.paths[i]))
        image = torch.from_numpy(image).permute(2, 0, 1).float() / 255.0 * 2.0 - 1.0
        half = image.shape[2] // 2
        return image[:, :, :half], image[:, :, half:]


def measure_original(cfg, train_paths, val_paths, batch_size, device):
    """(b) one epoch of the assignment's loop (fp32, NCHW, Adam at its lr, the loss
    printed every step), 400 train + 100 val on facades."""
    generator, _, train_step = make_step(dict(cfg, lr=ORIGINAL_LR, beta1=0.5, beta2=0.999, amp='off', ema=0.0,
                                              channels_last=False, compile=False, gan=False), device)
    # 4 workers even where there are fewer cores: that is what the assignment ran
    warnings.filterwarnings('ignore', message='This DataLoader will create')
    train_loader = DataLoader(OriginalDataset(train_paths), batch_size=batch_size, shuffle=True,
                              num_workers=ORIGINAL_WORKERS)
    val_loader = DataLoader(OriginalDataset(val_paths), batch_size=batch_size, shuffle=False,
                            num_workers=ORIGINAL_WORKERS)

    def step(input_image, target_image):
        return train_step(input_image, target_image).item()  # the assignment printed it every step

    # warm-up on a batch of the epoch's shape, outside the timed epoch
    input_image, target_image = OriginalDataset(train_paths)[0]
    shape = (min(batch_size, len(train_paths)),) + tuple(input_image.shape)
    for _ in range(WARMUP_STEPS):
        step(torch.rand(shape, device=device), torch.rand(shape, device=device))
    with torch.no_grad():  # and its validation, as in every epoch after the first
        generator.eval()
        generator(torch.rand((min(batch_size, len(val_paths)),) + shape[1:], device=device))
    sync(device)
    # the assignment's loaders were not persistent: each epoch starts its workers, as timed here
    def train_pass():
        generator.train()
        for input_image, target_image in train_loader:
            step(input_image.to(device), target_image.to(device))

    @torch.no_grad()
    def val_pass():
        generator.eval()
        for input_image, target_image in val_loader:
            (generator(input_image.to(device)) - target_image.to(device)).abs().mean().item()
    epoch = fastest_epoch(train_pass, val_pass, device)
    return {'batch_size': batch_size, 'train_images_per_s': len(train_paths) / epoch['epoch_train_seconds'],
            **epoch, 'workers': ORIGINAL_WORKERS} | memory(device)


def benchmark_network(name, base, overrides, original_batch, data, device, steps):
    cfg = dict(base, **overrides)
    repo_batch = cfg['batch_size']
    original_batch = original_batch or repo_batch
    amp_dtype = training.resolve_amp(cfg['amp'], device)
    result = {'settings': {k: cfg[k] for k in ('model', 'width', 'skips', 'augment', 'amp', 'channels_last',
                                               'batch_size', 'image_size', 'num_workers')},
              'precision': {torch.bfloat16: 'bf16', torch.float16: 'fp16'}.get(amp_dtype, 'fp32'),
              'parameters': sum(p.numel() for p in build_generator(cfg).parameters()),
              'repo': {}, 'bound': {}}
    for batch_size in dict.fromkeys([repo_batch, original_batch]):
        batch_cfg = dict(cfg, batch_size=batch_size)
        log(f'{name}: batch {batch_size}, repo path and compute bound')
        result['repo'][str(batch_size)], result['bound'][str(batch_size)] = measure_repo_and_bound(
            batch_cfg, data['train_set'], data['val_set'], device, steps)
    log(f'{name}: batch {original_batch}, original path')
    result['original'] = measure_original(cfg, data['train_paths'], data['val_paths'], original_batch, device)
    result['speedup_vs_original'] = (result['original']['epoch_seconds'] /
                                     result['repo'][str(original_batch)]['epoch_seconds'])
    result['fraction_of_compute_bound'] = result['repo'][str(repo_batch)]['fraction_of_bound']
    return result


def table(results):
    columns = ['network', 'batch', 'precision', 'repo img/s', 'bound img/s', 'repo/bound', 'repo epoch s',
               'orig img/s', 'orig epoch s', 'speedup']
    rows = [columns]
    for name in NETWORKS:
        result, original = results[name], results[name]['original']
        for batch, repo in result['repo'].items():
            bound = result['bound'][batch]['train_images_per_s']
            row = [name, batch, result['precision'], f'{repo["train_images_per_s"]:.1f}', f'{bound:.1f}',
                   f'{repo["fraction_of_bound"]:.2f}', f'{repo["epoch_seconds"]:.2f}', '-', '-', '-']
            if int(batch) == original['batch_size']:
                row[7:] = [f'{original["train_images_per_s"]:.1f}', f'{original["epoch_seconds"]:.2f}',
                           f'{original["epoch_seconds"] / repo["epoch_seconds"]:.2f}x']
            rows.append(row)
    widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
    return '\n'.join('  '.join(cell.ljust(width) if i == 0 else cell.rjust(width)
                               for i, (cell, width) in enumerate(zip(row, widths))) for row in rows)


def load_data(root, base, cache_dir):
    """The splits' file paths (for the original path), their cached datasets (for
    the repo path) and the seconds the cache took to build."""
    sources = {split: split_source(str(root), split) for split in ('train', 'val')}
    data = {f'{split}_paths': list_images(source) for split, source in sources.items()}
    log(f'building the uint8 cache of {root} in {cache_dir}')
    started = time.perf_counter()
    for split, source in sources.items():
        data[f'{split}_set'] = FacadesDataset(source, base['direction'], augment=base['augment'] and split == 'train',
                                              image_size=base['image_size'],
                                              cache_dir=cache_dir, progress=False)
    return data, time.perf_counter() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--out', default='benchmark.json', help='the JSON results (default: %(default)s)')
    parser.add_argument('--data', help=f'a folder with train/ and val/ (default: {" or ".join(DEFAULT_DATA)})')
    parser.add_argument('--steps', type=int, default=0,
                        help=f'timed steps per images/s measurement, best of {REPEATS} '
                             f'(default: enough for {WINDOW_IMAGES} images, at least 5)')
    parser.add_argument('--quick', action='store_true', help='2 steps, images at their stored size: checks it runs')
    parser.add_argument('--amp', default='auto', choices=('auto', 'bf16', 'fp16', 'off'),
                        help="train.py's amp setting for the repo path and the bound; off: fp32, as on a CPU "
                             "without bf16 units (default: auto)")
    args = parser.parse_args()
    steps = 2 if args.quick else args.steps
    if steps < 0:
        raise UserError('--steps must be at least 1 (or 0 for the default)')
    load_before = os.getloadavg()
    base = dict(train.config, amp=args.amp, image_size=0 if args.quick else train.config['image_size'])
    _, _, device = train.setup_processes(base)  # the device and thread count train.py would use
    root = find_data(args.data)
    # a fresh cache each run, so its build is always measured, on the disk train.py caches to
    cache_root = Path(base['cache_dir'] or tempfile.gettempdir())
    cache_root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache_root, prefix='benchmark_') as cache_dir:
        data, cache_build_seconds = load_data(root, base, cache_dir)
        results = {'device': device_name(device), 'device_type': device.type, 'torch': torch.__version__,
                   'cpu_bf16_units': training.cpu_bf16_units(),
                   'threads': torch.get_num_threads(), 'cpu_count': os.cpu_count(), 'data': str(root.resolve()),
                   'train_images': len(data['train_set']), 'val_images': len(data['val_set']),
                   'image_side': data['train_set'].image_shape[0], 'steps': steps, 'repeats': REPEATS, 'epoch_repeats': EPOCH_REPEATS,
                   'warmup_steps': WARMUP_STEPS, 'quick': args.quick, 'cache_build_seconds': cache_build_seconds}
        for name, (overrides, original_batch) in NETWORKS.items():
            results[name] = benchmark_network(name, base, overrides, original_batch, data, device, steps)
        del data  # closes the memory maps before the folder goes
    results.update(peak_rss_mb=round(peak_rss_mb(), 1),
                   peak_rss_loader_workers_mb=round(peak_rss_mb(resource.RUSAGE_CHILDREN), 1),
                   load_average_before=load_before, load_average_after=os.getloadavg())
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + '\n')
    print(f'{results["device"]} ({device.type}), torch {results["torch"]}, {results["threads"]} threads, '
          f'{results["train_images"]}+{results["val_images"]} images of side {results["image_side"]}, '
          f'load {load_before[0]:.1f} -> {results["load_average_after"][0]:.1f}')
    print(f'CPU bf16 units: {", ".join(results["cpu_bf16_units"]) or "none"}; --amp {args.amp}')
    print(table(results))
    print(f'cache build (once, not in the epochs): {cache_build_seconds:.2f} s; peak RSS {results["peak_rss_mb"]:.0f} '
          f'MB; speedup: original epoch / repo epoch at the same batch; wrote {args.out}')


if __name__ == '__main__':
    cli(main)
