"""Seconds per epoch and peak memory of short train.py runs, for image sizes
(`sizes`) or for the two layouts of the same pairs (`layouts`).

    python scripts/speed_shapes.py sizes      # fcn and unet256 at 256x256, 512x256, 512x512, fp32
    python scripts/speed_shapes.py layouts    # facades as left|right files vs split into A/ and B/

Each configuration is a real `python train.py --amp=off --num_epochs=N` in its
own process (fcn 5 epochs: 2 on patches, 3 whole; unet256 4), the
configurations taken in turn, round after round, so that load from other jobs
falls on all alike. An epoch's wall seconds are train.py's own (metrics.csv:
training plus validation), its CPU seconds the process's user + system time
between two rewrites of metrics.csv (less sensitive to other jobs than wall
time; 2 threads on 2 idle cores make about twice the wall time); the first
epoch (warm-up) and the last (saving) are left out, and the table gives the
best round. Peak RSS is the process's
(ru_maxrss, memory-mapped cache pages included); peak private is RssAnon,
sampled every 0.1 s. Every run records the load averages before it.
`layouts` writes facades' halves as A/ and B/ JPEGs (OpenCV's quality 95) into
/tmp/pix2pix_facades_ab first, and times the cache build of both layouts and,
after the runs, their data path alone (in one process, in turn), which is
steadier than whole epochs on a VM.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import cv2
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
import train  # noqa: E402
import training  # noqa: E402
from facades_dataset import FacadesDataset  # noqa: E402
from pairs import dataset_root, list_images, split_source  # noqa: E402

SIZES = ('256', '512x256', '512x512')
MODELS = {'fcn': 5, 'unet256': 4}  # model: epochs per run


def watch(pid, metrics, seen, stop):
    """Every 0.1 s until stop is set: the child's RssAnon, its largest in seen['private'],
    and its CPU seconds each time metrics (the CSV, rewritten after every epoch) grows."""
    ticks = os.sysconf('SC_CLK_TCK')
    while not stop.is_set():
        try:
            for line in Path(f'/proc/{pid}/status').read_text().splitlines():
                if line.startswith('RssAnon:'):
                    seen['private'] = max(seen['private'], int(line.split()[1]) / 1024)
            fields = Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()
            cpu = (int(fields[11]) + int(fields[12])) / ticks  # utime + stime
        except OSError:
            return
        rows = len(metrics.read_text().splitlines()) - 1 if metrics.exists() else 0
        if rows > len(seen['cpu_at_epoch_end']):
            seen['cpu_at_epoch_end'].append(cpu)
        stop.wait(0.1)


def run_train(settings, out):
    """One train.py run in out/; returns its epoch rows, peak memory and load."""
    load = os.getloadavg()
    args = [f'--{k}={v}' for k, v in dict(settings, amp='off', save_every=1000, checkpoint_dir=out / 'checkpoints',
                                           train_results_dir=out / 'train_results',
                                           val_results_dir=out / 'val_results').items()]
    started = time.time()
    child = subprocess.Popen([sys.executable, str(REPO / 'train.py'), *args], cwd=REPO, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    seen, stop = {'private': 0.0, 'cpu_at_epoch_end': []}, threading.Event()
    sampler = threading.Thread(target=watch, args=(child.pid, out / 'checkpoints' / 'metrics.csv', seen, stop),
                               daemon=True)
    sampler.start()
    stderr = child.stderr.read()
    _, status, usage = os.wait4(child.pid, 0)
    stop.set()
    sampler.join()
    if status:
        sys.exit(f'train.py {" ".join(args)} failed:\n{stderr}')
    lines = (out / 'checkpoints' / 'metrics.csv').read_text().splitlines()
    rows = [dict(zip(lines[0].split(','), line.split(','))) for line in lines[1:]]
    ends = seen['cpu_at_epoch_end']
    return {'epochs': [float(row['seconds']) for row in rows], 'wall_s': round(time.time() - started, 1),
            'cpu_epochs': [None] + [round(b - a, 2) for a, b in zip(ends, ends[1:])],
            'peak_rss_mb': round(usage.ru_maxrss / 1024), 'peak_private_mb': round(seen['private']),
            'load_before': load}


def epoch_kinds(run, model, epochs, patch_epochs=0.5):
    """{'patch': s, 'whole': s, 'patch_cpu': s, 'whole_cpu': s}: the mean wall and CPU
    seconds of the epochs of each kind, less the first and the last."""
    patches = epochs * patch_epochs if model == 'fcn' else 0
    kinds = {}
    for epoch in range(2, len(run['epochs'])):
        kind = 'patch' if epoch <= patches else 'whole'
        kinds.setdefault(kind, []).append(run['epochs'][epoch - 1])
        if epoch - 1 < len(run['cpu_epochs']):
            kinds.setdefault(f'{kind}_cpu', []).append(run['cpu_epochs'][epoch - 1])
    return {kind: round(statistics.mean(values), 2) for kind, values in kinds.items()}


def cell(runs, kind):
    """'wall s / CPU s' of an epoch kind, each the best round's; '-' where the runs have none."""
    if kind not in runs[0]:
        return '-'
    return f'{min(run[kind] for run in runs):.2f} / {min(run[kind + "_cpu"] for run in runs):.2f} s'


def loads(runs):
    return ', '.join(f'{run["load_before"][0]:.1f}' for run in runs)


def cpu_model():
    for line in subprocess.run(['lscpu'], capture_output=True, text=True).stdout.splitlines():
        if line.startswith('Model name'):
            return line.split(':', 1)[1].strip()
    return 'unknown'


def sizes(args, work):
    configurations = [(model, size) for size in SIZES for model in MODELS]
    results = {f'{model} {size}': [] for model, size in configurations}
    for round_ in range(args.rounds):
        for model, size in configurations:
            out = work / f'{model}_{size}_{round_}'
            run = run_train(dict(dataset=args.data, model=model, image_size=size, num_epochs=MODELS[model],
                                 cache_dir=work / 'cache'), out)
            run.update(epoch_kinds(run, model, MODELS[model]), round=round_)
            results[f'{model} {size}'].append(run)
            print(json.dumps({f'{model} {size}': run}), flush=True)
    print('\n| network | image_size | patch epoch, wall / CPU | whole epoch, wall / CPU | peak RSS | peak private | '
          'load (1 min) |')
    print('|---|---|---|---|---|---|---|')
    for (model, size) in configurations:
        runs = results[f'{model} {size}']
        later = runs[1:] or runs  # the first round also built the cache
        rss, private = (max(run[key] for run in later) for key in ('peak_rss_mb', 'peak_private_mb'))
        print(f'| {model} | {size} | {cell(runs, "patch")} | {cell(runs, "whole")} | {rss} MB | {private} MB | '
              f'{loads(runs)} |')
    return results


def write_ab(source, folder):
    """The left|right pairs of source (a folder) as folder/A and folder/B JPEGs."""
    for side in 'AB':
        (folder / side).mkdir(parents=True, exist_ok=True)
    for path in list_images(source):
        if not (folder / 'B' / f'{path.stem}.jpg').exists():
            image = cv2.imread(str(path))
            half = image.shape[1] // 2
            cv2.imwrite(str(folder / 'A' / f'{path.stem}.jpg'), image[:, :half])
            cv2.imwrite(str(folder / 'B' / f'{path.stem}.jpg'), image[:, half:])


def data_path_epochs(data, cache, repeats=7):
    """{layout: [seconds]}: train.py's data path alone on the CPU (`training.train_loader`,
    then `training.model_batches`: gather, random shift and mirror, to float,
    channels-last) over every training pair in batches of 8, the layouts taken in
    turn; the step that follows is the same for both, as the batches are equal."""
    cfg, device = dict(train.config, batch_size=8), torch.device('cpu')
    sets = {name: FacadesDataset(split_source(root, 'train'), augment=True, cache_dir=cache, progress=False)
            for name, root in data.items()}
    seconds = {name: [] for name in sets}
    for _ in range(repeats):
        for name, data_set in sets.items():
            loader = training.train_loader(data_set, cfg, device)
            generator = torch.Generator().manual_seed(0)
            started = time.perf_counter()
            for _ in training.model_batches(loader, data_set, cfg, device, generator):
                pass
            seconds[name].append(round(time.perf_counter() - started, 4))
    return seconds


def layouts(args, work):
    data = {'left|right': Path(args.data), 'A/ and B/': Path(tempfile.gettempdir()) / f'pix2pix_{Path(args.data).name}_ab'}
    for split in ('train', 'val'):
        write_ab(split_source(args.data, split), data['A/ and B/'] / split)
    results = {name: {'decode_s': [], 'runs': []} for name in data}
    for round_ in range(args.rounds):
        for name, root in data.items():  # a fresh cache: both splits decoded as train.py does
            with tempfile.TemporaryDirectory(dir=work) as cache:
                started = time.perf_counter()
                for split in ('train', 'val'):
                    FacadesDataset(split_source(root, split), augment=split == 'train', cache_dir=cache,
                                   progress=False)
                results[name]['decode_s'].append(round(time.perf_counter() - started, 2))
        for name, root in list(data.items())[::1 if round_ % 2 == 0 else -1]:  # either goes first in turn
            out = work / f'{name[0]}_{round_}'
            run = run_train(dict(dataset=root, num_epochs=MODELS['fcn'], cache_dir=work / 'cache'), out)
            run.update(epoch_kinds(run, 'fcn', MODELS['fcn']), round=round_)
            results[name]['runs'].append(run)
            print(json.dumps({name: run, 'decode_s': results[name]['decode_s'][-1]}), flush=True)
    data_path_s = data_path_epochs(data, work / 'cache')
    print('\n| layout | data path alone, an epoch | cache build (train + val) | patch epoch, wall / CPU | '
          'whole epoch, wall / CPU | peak RSS | load (1 min) |')
    print('|---|---|---|---|---|---|---|')
    for name, result in results.items():
        runs = result['runs']
        rss = max(run['peak_rss_mb'] for run in runs[1:] or runs)
        label = name.replace('|', '\\|')  # a | inside a table cell
        result['data_path_s'] = data_path_s[name]
        print(f'| {label} | {statistics.median(data_path_s[name]):.3f} s | {min(result["decode_s"]):.2f} s | '
              f'{cell(runs, "patch")} | {cell(runs, "whole")} | {rss} MB | {loads(runs)} |')
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('what', choices=('sizes', 'layouts'))
    parser.add_argument('--data', default='facades', help="train.py's dataset setting (default: %(default)s)")
    parser.add_argument('--rounds', type=int, default=2)
    parser.add_argument('--out', help='the JSON results (default: speed_WHAT.json in the work folder)')
    args = parser.parse_args()
    args.data = str(dataset_root(args.data).resolve())  # train.py runs in the repo folder
    with tempfile.TemporaryDirectory(prefix='speed_shapes_') as work:
        work = Path(work)
        header = {'cpu': cpu_model(), 'cpu_count': os.cpu_count(), 'load_before': os.getloadavg(),
                  'command': ' '.join(sys.argv)}
        print(json.dumps(header), flush=True)
        results = (sizes if args.what == 'sizes' else layouts)(args, work)
        header['load_after'] = os.getloadavg()
        print(f'CPU: {header["cpu"]}, {header["cpu_count"]} cores; load averages (1, 5, 15 min) before '
              f'{header["load_before"]}, after {header["load_after"]}')
        out = Path(args.out or f'/tmp/speed_{args.what}.json')
        out.write_text(json.dumps({**header, 'results': results}, indent=2) + '\n')


if __name__ == '__main__':
    main()
