"""The GAN phase alone, from one L1-trained checkpoint: a few epochs with given
settings (learning rates decaying linearly to 0, as in the recipe's GAN half),
then the FCN-score of the trained weights. Runs that share the starting point
and the epochs compare the levers (lambda_l1, the discriminator, lsgan or
vanilla, patches) at a fraction of a whole run's cost.

    python scripts/gan_probe.py l1_start.pth --epochs 24 --side 128 d_layers=2 lambda_l1=10
    python scripts/gan_probe.py l1_start.pth --epochs 6 gan=False          # L1 alone, the reference

l1_start.pth: a label map -> photo (BtoA) train.py checkpoint whose generator
matches the settings (e.g. `--num_epochs=240` stopped in its patch half).
Every setting not given is train.py's, with the GAN on, lsgan and d_width 16.
Prints a JSON row per scored epoch and appends it to sweeps/gan_probes.jsonl.
Quality per epoch does not depend on the machine, so probes may share the CPU.
"""
import argparse
import json
import sys
from pathlib import Path

import torch
from torch.optim.lr_scheduler import LambdaLR
from torch.utils.data import DistributedSampler

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
import checkpoint  # noqa: E402  (the repo root is on the path only now)
import metrics  # noqa: E402
import train  # noqa: E402
import training  # noqa: E402
from facades_dataset import to_float, to_uint8  # noqa: E402


def parse_setting(text):
    name, value = text.split('=', 1)
    default = train.config[name]
    return name, (value.lower() in ('1', 'true')) if isinstance(default, bool) else type(default)(value)


@torch.no_grad()
def fcn_score(generator, labeller, val_set, palette):
    """Val L1 and the labeller's scores on the generator's photos against the input label maps."""
    generator.eval()
    confusion, l1 = 0, 0.0
    for start in range(0, len(val_set), 20):
        indices = range(start, min(start + 20, len(val_set)))
        label_maps, photos = to_float(val_set.pair_batch(indices))
        output = generator(label_maps)
        l1 += metrics.l1(output, photos) * len(indices)
        confusion = confusion + metrics.label_confusion(to_uint8(labeller(output)), to_uint8(label_maps), palette)
    generator.train()
    return {'val_l1': round(l1 / len(val_set), 4),
            **{name: round(value, 4) for name, value in metrics.label_scores(confusion).items()}}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('start', help='the L1-trained checkpoint whose generator the probe starts from')
    parser.add_argument('settings', nargs='*', help="train.py settings as name=value")
    parser.add_argument('--epochs', type=int, default=6)
    parser.add_argument('--side', type=int, default=0, help='train on random crops of this side (0: whole images)')
    parser.add_argument('--labeller', default=str(REPO / 'pretrained' / 'facades_photo2labels.pth'))
    parser.add_argument('--score_every', type=int, default=0, help='epochs between scores (0: a third of them)')
    args = parser.parse_args()
    cfg = dict(train.config, direction='BtoA', gan=True, gan_loss='lsgan', d_width=16, gan_start=0.0, ema=0,
               num_epochs=args.epochs)
    cfg.update(dict(map(parse_setting, args.settings)))
    torch.set_num_threads(cfg['threads'] or torch.get_num_threads())
    torch.manual_seed(cfg['seed'])
    device = torch.device('cpu')
    train_set, val_set = (train.load_split(cfg, split, 0, 1) for split in ('train', 'val'))
    sampler = DistributedSampler(range(len(train_set)), num_replicas=1, rank=0, shuffle=True, seed=cfg['seed'])
    loader = training.train_loader(train_set, cfg, device, sampler)
    run = training.build_run(cfg, device, 1)
    run.model.load_state_dict(checkpoint.load(args.start)['model'])
    decay = [LambdaLR(optimizer, lambda epoch: 1 - epoch / args.epochs)
             for optimizer in (run.optimizer, run.optimizer_d) if optimizer]
    labeller, _ = checkpoint.load_generator(args.labeller)
    palette = metrics.PALETTES['facades']
    every = args.score_every or max(1, args.epochs // 3)
    name = ' '.join(args.settings) + (f' side={args.side}' if args.side else '')
    rows = REPO / 'sweeps' / 'gan_probes.jsonl'
    rows.parent.mkdir(exist_ok=True)
    for epoch in range(1, args.epochs + 1):
        sampler.set_epoch(epoch)
        augment_rng = torch.Generator().manual_seed(training.epoch_seed(cfg, epoch, 0))
        sums, steps = {}, 0
        for input_image, target_image in training.model_batches(loader, train_set, cfg, device, augment_rng,
                                                                 args.side or None):
            _, losses = training.train_step(run, input_image, target_image, epoch)
            for key, value in losses.items():
                sums[key] = sums.get(key, 0.0) + float(value)
            steps += 1
        for scheduler in decay:
            scheduler.step()
        row = {'probe': name, 'epoch': epoch, **{key: round(value / steps, 4) for key, value in sums.items()}}
        if epoch % every == 0 or epoch == args.epochs:
            row.update(fcn_score(run.model, labeller, val_set, palette))
            with rows.open('a') as out:
                out.write(json.dumps(row) + '\n')
        print(json.dumps(row), flush=True)


if __name__ == '__main__':
    main()
