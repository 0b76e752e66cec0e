"""Time to quality: one training run on train.py's data path and step, validating
the trained weights and several weight averages (EMA decays) side by side, so
that one run answers which decay is best at every epoch.

    python scripts/sweep.py --name w16 --width=16 --num_epochs=150
    python scripts/sweep.py --name unet --model=unet256 --width=16 --num_epochs=100 --patch_size=0

train.py's settings are given as there, --setting=value, and checked by its
`validate`; each one not given is train.py's, but validate_every is 5 here: the
epochs between validations of the averages (the trained weights are validated
every epoch, the averages also in each of the last 10). ema does not apply: the
averages are the sweep's, and they run from the first step (not from
ema_start), which shows how each decay lags early on. --name, --decays and
--out are the sweep's own. Writes sweeps/NAME.csv (a row per epoch: wall
seconds, train L1, val L1 of the weights and of each average) and appends the
run's last and best values to sweeps/runs.jsonl; the curves worth keeping are
copied to docs/sweeps/ with a row in its runs.csv. Quality per epoch does not
depend on the machine, so these runs may use bf16 (--amp=auto) and share the
CPU; their wall times are not fp32 CPU times (docs/results.md times the
candidates on their own).
"""
import argparse
import csv
import json
import sys
import time
from pathlib import Path

from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
import train  # noqa: E402  (the repo root is on the path only now)
import training  # noqa: E402
from errors import cli  # noqa: E402

SWEEP = dict(validate_every=5)


def parse_args(argv):
    """(the sweep's options, the run's settings, the settings given)."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], allow_abbrev=False,
                                     epilog="and train.py's settings as --setting=value (python train.py --help)")
    parser.add_argument('--name', required=True, help='the run: its CSV is OUT/NAME.csv')
    parser.add_argument('--decays', default='0.995,0.999', help='EMA decays validated beside the weights')
    parser.add_argument('--out', type=Path, default=REPO / 'sweeps')
    return train.script_settings(parser, argv, SWEEP)


def main(argv):
    args, cfg, overrides = parse_args(argv)
    _, _, device = train.setup_processes(cfg)
    train_set, val_set = (train.load_split(cfg, split, 0, 1) for split in ('train', 'val'))
    loader = training.train_loader(train_set, cfg, device)
    run = training.build_run(dict(cfg, ema=0.0), device, 1)
    averages = {decay: AveragedModel(run.model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
                for decay in map(float, args.decays.split(','))}

    def update_averages():
        for average in averages.values():
            average.update_parameters(run.model)
    args.out.mkdir(parents=True, exist_ok=True)
    columns = ['epoch', 'wall', 'train_l1', 'val_l1'] + [f'ema{decay}' for decay in averages]
    best, started = {}, time.time()
    with open(args.out / f'{args.name}.csv', 'w', newline='') as file:
        rows = csv.DictWriter(file, columns)
        rows.writeheader()
        for epoch in range(1, cfg['num_epochs'] + 1):
            losses = training.train_epoch(run, loader, train_set, epoch, training.patch_side(cfg, epoch),
                                          after_step=update_averages)
            row = {'epoch': epoch, 'train_l1': round(losses['train_l1'], 5),
                   'val_l1': round(training.validate(run.model, val_set, cfg, device, run.amp_dtype), 5)}
            if epoch % cfg['validate_every'] == 0 or epoch > cfg['num_epochs'] - 10:
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
        settings = {**overrides, 'decays': args.decays, 'out': str(args.out)}
        file.write(json.dumps({'name': args.name, 'settings': settings, 'last': row, 'best': best}) + '\n')


if __name__ == '__main__':
    cli(main, sys.argv[1:])
