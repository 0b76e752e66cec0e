"""The GAN phase alone, from one L1-trained checkpoint: a few epochs with given
settings (learning rates decaying linearly to 0, as in the recipe's GAN half),
then the FCN-score of the trained weights. Runs that share the starting point
and the epochs compare the levers (lambda_l1, the discriminator, lsgan or
vanilla, patches) at a fraction of a whole run's cost.

    python scripts/gan_probe.py l1_start.pth --side=128 --num_epochs=24 --d_layers=2 --lambda_l1=10
    python scripts/gan_probe.py l1_start.pth --gan=False          # L1 alone, the reference

l1_start.pth: a label map -> photo (BtoA) train.py checkpoint whose generator
matches the settings (e.g. `--num_epochs=240` stopped in its patch half).
train.py's settings are given as there, --setting=value, and checked by its
`validate`; each one not given is train.py's, but for the probe's defaults
(PROBE): 6 epochs, the GAN on, lsgan and d_width 16, no weight average. The
start checkpoint, --side, --labeller, --score_every and --out are the probe's
own. Prints a JSON row per epoch and appends the scored ones to
OUT/gan_probes.jsonl. Quality per epoch does not depend on the machine, so
probes may share the CPU.
"""
import argparse
import json
import sys
from pathlib import Path

from torch.optim.lr_scheduler import LambdaLR

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
import checkpoint  # noqa: E402  (the repo root is on the path only now)
import metrics  # noqa: E402
import train  # noqa: E402
import training  # noqa: E402
from errors import cli  # noqa: E402

PROBE = dict(direction='BtoA', gan=True, gan_loss='lsgan', d_width=16, gan_start=0.0, ema=0.0, num_epochs=6)


def parse_args(argv):
    """(the probe's options, the run's settings, the settings given)."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], allow_abbrev=False,
                                     epilog="and train.py's settings as --setting=value (python train.py --help)")
    parser.add_argument('start', help='the L1-trained checkpoint whose generator the probe starts from')
    parser.add_argument('--side', type=int, default=0, help='train on random crops of this side (0: whole images)')
    parser.add_argument('--labeller', help='the photo -> label map checkpoint that scores the photos '
                                           '(default: pretrained/DATASET_photo2labels.pth, facades for other sets)')
    parser.add_argument('--score_every', type=int, default=0, help='epochs between scores (0: a third of them)')
    parser.add_argument('--out', type=Path, default=REPO / 'sweeps', help='the folder of gan_probes.jsonl')
    return train.script_settings(parser, argv, PROBE)


def main(argv):
    args, cfg, overrides = parse_args(argv)
    _, _, device = train.setup_processes(cfg)
    train_set, val_set = (train.load_split(cfg, split, 0, 1) for split in ('train', 'val'))
    loader = training.train_loader(train_set, cfg, device)
    run = training.build_run(cfg, device, 1)
    run.model.load_state_dict(checkpoint.load(args.start)['model'])
    # the recipe's GAN half: linearly to 0 over the probe, whatever lr_schedule says (train_epoch steps these)
    run.scheduler, run.scheduler_d = (LambdaLR(optimizer, lambda epoch: 1 - epoch / cfg['num_epochs'])
                                      if optimizer else None for optimizer in (run.optimizer, run.optimizer_d))
    # the colours of the dataset's label maps; a set of another name is scored with facades' colours, as before
    palette_name = metrics.palette_name(cfg['dataset']) or 'facades'
    labeller, _ = checkpoint.load_generator(args.labeller or REPO / 'pretrained' / f'{palette_name}_photo2labels.pth',
                                            device)
    palette = metrics.PALETTES[palette_name]
    every = args.score_every or max(1, cfg['num_epochs'] // 3)
    name = ' '.join(f'{key}={value}' for key, value in overrides.items()) + (f' side={args.side}' if args.side else '')
    args.out.mkdir(parents=True, exist_ok=True)
    for epoch in range(1, cfg['num_epochs'] + 1):
        losses = training.train_epoch(run, loader, train_set, epoch, args.side or None)
        row = {'probe': name, 'epoch': epoch, **{key: round(value, 4) for key, value in losses.items()}}
        if epoch % every == 0 or epoch == cfg['num_epochs']:
            scores = training.score(run.model, val_set, 20, device, labeller=labeller, palette=palette)
            row.update(val_l1=round(scores['l1'], 4),
                       **{key: round(value, 4) for key, value in metrics.label_scores(scores['confusion']).items()})
            with (args.out / 'gan_probes.jsonl').open('a') as out:
                out.write(json.dumps(row) + '\n')
        print(json.dumps(row), flush=True)


if __name__ == '__main__':
    cli(main, sys.argv[1:])
