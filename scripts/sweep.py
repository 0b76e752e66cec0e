"""Time to quality: one training run on train.py's data path and step, validating
the trained weights and several weight averages (EMA decays) side by side, so
that one run answers which decay is best at every epoch.

    python scripts/sweep.py --name w16 --width 16 --num_epochs 150
    python scripts/sweep.py --name unet --model unet256 --width 16 --num_epochs 100 --patch_size 0
    python scripts/sweep.py --name flip --augment shifts_off ...   # mirroring only, no shifts

Every option not listed is train.py's default. Writes sweeps/NAME.csv (a row
per epoch: wall seconds, train L1, val L1 of the weights and of each average)
and appends the run's last and best values to sweeps/runs.jsonl; the curves
worth keeping are copied to docs/sweeps/ with a row in its runs.csv. The
averages run from the first step (not from ema_start), which shows how each
decay lags early on. Quality per epoch does not depend on the machine, so these
runs may use bf16 (--amp auto) and share the CPU; their wall times are not
fp32 CPU times (docs/results.md times the candidates on their own).
"""
import argparse
import csv
import json
import sys
import time
from pathlib import Path

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
import train  # noqa: E402  (the repo root is on the path only now)
import training  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--name', required=True)
    for name in ('dataset', 'model', 'width', 'skips', 'num_epochs', 'batch_size', 'lr', 'patch_size',
                 'patch_epochs', 'amp', 'seed', 'cache_dir'):
        default = train.config[name]
        kind = (lambda text: text.lower() in ('1', 'true')) if isinstance(default, bool) else type(default)
        parser.add_argument(f'--{name}', type=kind, default=default)
    parser.add_argument('--augment', choices=('shifts', 'shifts_off'), default='shifts',
                        help='shifts_off: mirroring only')
    parser.add_argument('--decays', default='0.995,0.999', help='EMA decays validated beside the weights')
    parser.add_argument('--validate_every', type=int, default=5, help='for the averages; the weights every epoch')
    parser.add_argument('--out', type=Path, default=REPO / 'sweeps')
    args = parser.parse_args()
    cfg = dict(train.config, **{k: v for k, v in vars(args).items() if k in train.config and k != 'augment'})
    cfg['augment'] = args.augment == 'shifts'

    _, _, device = train.setup_processes(cfg)
    train_set, val_set = (train.load_split(cfg, split, 0, 1) for split in ('train', 'val'))
    loader = training.train_loader(train_set, cfg, device, torch.utils.data.RandomSampler(
        range(len(train_set)), generator=torch.Generator().manual_seed(cfg['seed'])))
    run = training.build_run(dict(cfg, ema=0.0), device, 1)
    averages = {decay: AveragedModel(run.model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
                for decay in map(float, args.decays.split(','))}
    flips = torch.Generator().manual_seed(cfg['seed'])
    args.out.mkdir(parents=True, exist_ok=True)
    columns = ['epoch', 'wall', 'train_l1', 'val_l1'] + [f'ema{decay}' for decay in averages]
    best, started = {}, time.time()
    with open(args.out / f'{args.name}.csv', 'w', newline='') as file:
        rows = csv.DictWriter(file, columns)
        rows.writeheader()
        for epoch in range(1, cfg['num_epochs'] + 1):
            batches = training.model_batches(loader, train_set, cfg, device, torch.Generator().manual_seed(epoch),
                                             training.patch_side(cfg, epoch))
            total, steps = 0.0, 0
            for input_image, target_image in batches:
                if not cfg['augment']:  # mirroring only
                    flip = torch.rand(len(input_image), generator=flips) < 0.5
                    input_image, target_image = (torch.where(flip[:, None, None, None], image.flip(-1), image)
                                                 for image in (input_image, target_image))
                losses = training.train_step(run, input_image, target_image, epoch)[1]
                for average in averages.values():
                    average.update_parameters(run.model)
                total, steps = total + losses['train_l1'].item(), steps + 1
            for scheduler in (run.scheduler, run.scheduler_d):
                if scheduler:
                    scheduler.step()
            row = {'epoch': epoch, 'train_l1': round(total / steps, 5),
                   'val_l1': round(training.validate(run.model, val_set, cfg, device, run.amp_dtype), 5)}
            if epoch % args.validate_every == 0 or epoch > cfg['num_epochs'] - 10:
                for decay, average in averages.items():
                    row[f'ema{decay}'] = round(training.validate(average.module, val_set, cfg, device, run.amp_dtype), 5)
            row['wall'] = round(time.time() - started, 1)
            for key, value in row.items():
                if key.startswith(('val', 'ema')):
                    best[key] = min(best.get(key, value), value)
            rows.writerow(row)
            file.flush()
            print(row, flush=True)
    with open(args.out / 'runs.jsonl', 'a') as file:
        file.write(json.dumps({'name': args.name, 'settings': vars(args) | {'out': str(args.out)},
                               'last': row, 'best': best}) + '\n')


if __name__ == '__main__':
    main()
