"""Score a trained generator on a split of its dataset: metrics.json, and an
input | target | output panel for every image.

    python evaluate.py checkpoints/latest.pth                   # the val split of the run's dataset
    python evaluate.py checkpoints/latest.pth --split test
    python evaluate.py run.pth --data_dir my_pairs/ --out results/
    python evaluate.py run.pth --data_dir my_data/val            # a folder holding A/ and B/
    python evaluate.py labels2photo.pth --fcn_score photo2labels.pth

The checkpoint alone says which network, direction, image size and dataset it
was trained with. Every run gets l1 (on [-1, 1]), psnr and ssim, each a mean
over images. Photo -> label map runs (AtoB) on a dataset with known label
colours (facades, cityscapes) also get the Pix2Pix paper's pixel_acc, class_acc
and class_iou. For label map -> photo runs (BtoA), --fcn_score gives the paper's
FCN-score: a photo -> label map network trained with this repo labels the
generated photos, and its labels are scored against the input label maps;
fcn_score_real scores the same network on the real photos, as the bound.
--mirror adds the same scores of test-time mirroring as mirror_* keys.
The label scores and the FCN-score read RGB label maps: for a network with other
channels, a note in metrics.json (and printed) says the label scores do not apply,
and --fcn_score stops with one line. psnr and ssim are on the data's bit depth
(0..65535 for a split with 16-bit files). The panels are 8-bit RGB, grey shown as grey.

Images with sides of 64 px or more also get grid (the lattice that stride-2
transposed convolutions leave: 1 is a smooth spectrum, see docs/results.md),
grid_target (the same of the targets), and hf_log_ratio (the fine detail:
log10 of the outputs' power over the targets' in the upper half of the
frequencies; 0 is as much as the targets, negative is smoother).
"""
import argparse
import json
import math
from pathlib import Path

import torch
from tqdm import tqdm

import checkpoint
import metrics
import training
import visualize
from errors import UserError, cli
from facades_dataset import FacadesDataset, to_uint16, to_uint8
from files import atomic_write
from FCN_network import check_sides, mirrored_mean, pick_device
from pairs import split_source


def parse_args():
    parser = argparse.ArgumentParser(description='Score a checkpoint on a dataset split.')
    parser.add_argument('checkpoint', help='a .pth file written by train.py')
    parser.add_argument('--split', default='val', choices=('val', 'test', 'train'),
                        help="the split of the run's dataset to score (default: val)")
    parser.add_argument('--data_dir', help='a folder (or list file) of pairs instead of the split: left|right files, '
                                           'or A/ and B/ (every pair in them)')
    parser.add_argument('--out', help='output folder (default: eval_results/CHECKPOINT_SPLIT)')
    parser.add_argument('--palette', default='auto', choices=('auto', 'facades', 'cityscapes', 'none'),
                        help="label colours for the label-map scores (default: from the run's dataset name)")
    parser.add_argument('--fcn_score', metavar='PHOTO2LABEL_CHECKPOINT',
                        help='for label map -> photo runs: a photo -> label map checkpoint that scores the outputs')
    parser.add_argument('--batch_size', type=int, default=16)
    parser.add_argument('--mirror', action='store_true',
                        help='also score test-time mirroring (the mean of the output and the mirrored output of the '
                             'mirrored input) as mirror_* keys; the plain keys stay the single pass')
    parser.add_argument('--device', default='auto',
                        help="as train.py's device setting: auto (CUDA, else MPS, else the CPU), cpu, cuda, cuda:1, mps")
    return parser.parse_args()


def load_segmenter(path, config, palette, device):
    """The photo -> label map network of the FCN-score and its config, checked
    against the run it scores (before any image is decoded)."""
    if config['direction'] != 'BtoA':
        raise UserError('--fcn_score scores label map -> photo runs (direction BtoA); this checkpoint is AtoB')
    if palette is None:
        raise UserError('--fcn_score needs the label colours; add --palette facades or --palette cityscapes')
    if config['input_channels'] != 3:
        raise UserError(f'--fcn_score scores against RGB label maps; this network reads {config["input_channels"]}-'
                        'channel inputs, so the FCN-score does not apply')
    segmenter, state = checkpoint.load_generator(path, device)
    if state['config']['direction'] != 'AtoB':
        raise UserError(f'{path}: --fcn_score needs a photo -> label map (AtoB) checkpoint; this one is BtoA')
    reads, writes = state['config']['input_channels'], state['config']['output_channels']
    if (reads, writes) != (config['output_channels'], 3):
        raise UserError(f'{path}: --fcn_score needs a network from {config["output_channels"]}-channel photos (what '
                        f'this one writes) to RGB label maps; it maps {reads} to {writes} channels')
    return segmenter, state['config']


def main(args):
    device = pick_device(args.device)
    generator, state = checkpoint.load_generator(args.checkpoint, device)
    config = state['config']
    palette_name = metrics.palette_name(config['dataset']) if args.palette == 'auto' else args.palette
    palette = metrics.PALETTES.get(palette_name)
    segmenter, segmenter_config = load_segmenter(args.fcn_score, config, palette, device) if args.fcn_score \
        else (None, None)
    source = Path(args.data_dir) if args.data_dir else split_source(config['dataset'], args.split)
    # decoded into RAM: a single pass gains nothing from a cache, and the dataset folder stays untouched
    data = FacadesDataset(source, config['direction'], image_size=config['image_size'], cache_dir='',
                          channels=(config['input_channels'], config['output_channels']))
    check_sides(data.image_shape, config['model'], source, f'{args.checkpoint} was trained on other sizes')
    if segmenter is not None:
        check_sides(data.image_shape, segmenter_config['model'], source, f'{args.fcn_score} was trained on other sizes')
    score_labels = palette is not None and config['direction'] == 'AtoB' and config['output_channels'] == 3
    notes = []
    if palette is not None and config['direction'] == 'AtoB' and not score_labels:
        notes.append(f'the label scores (pixel_acc, class_acc, class_iou) need RGB label maps; this network writes '
                     f'{config["output_channels"]}-channel images, so they do not apply')
    pictures = to_uint16 if data.bits == 16 else to_uint8  # what psnr, ssim and the spectra read
    out = Path(args.out or Path('eval_results') /
               f'{Path(args.checkpoint).stem}_{Path(args.data_dir).name if args.data_dir else args.split}')
    out.mkdir(parents=True, exist_ok=True)

    # '' is the single pass, the number compared with other work; 'mirror_' the test-time mirrored one
    passes = ('', 'mirror_') if args.mirror else ('',)
    sums = {f'{prefix}{key}': 0.0 for prefix in passes for key in ('l1', 'psnr', 'ssim')}
    confusions = {}  # summed over batches: a dataset-wide confusion matrix, as in the paper's code
    grid_logs, powers = {}, {}  # summed over images: the grid's logs and the radial power spectra
    with torch.no_grad():
        batches = training.generated_batches(generator, data, args.batch_size, device)
        for indices, input_image, target_image, single in tqdm(batches, total=math.ceil(len(data) / args.batch_size),
                                                               desc='evaluating', unit='batch'):
            targets, label_maps = pictures(target_image), to_uint8(input_image)
            scored = {}
            visualize.save_panels(out, [Path(data.file_of(i)).stem for i in indices], input_image, target_image,
                                  single)
            generated = {'': single}
            if args.mirror:  # the single pass reused: only the mirrored input runs again
                generated['mirror_'] = mirrored_mean(generator, input_image, single)
            for prefix, output in generated.items():
                outputs = pictures(output)
                # over an image's pixels: over the images below, the split's L1 (images are one size)
                sums[f'{prefix}l1'] += metrics.abs_error(output, target_image) / target_image[0].numel()
                for output_pixels, target_pixels in zip(outputs, targets):
                    sums[f'{prefix}psnr'] += metrics.psnr(output_pixels, target_pixels)
                    sums[f'{prefix}ssim'] += metrics.ssim(output_pixels, target_pixels)
                add_spectra(grid_logs, powers, f'{prefix}grid', outputs)
                if score_labels:  # label colours are 8-bit
                    colours = (outputs, targets) if data.bits == 8 else (to_uint8(output), to_uint8(target_image))
                    scored[f'{prefix}labels'] = metrics.label_confusion(*colours, palette)
                if segmenter is not None:
                    scored[f'{prefix}fcn_score'] = training.labeller_confusion(segmenter, output, label_maps, palette)
            add_spectra(grid_logs, powers, 'grid_target', targets)
            if segmenter is not None:
                scored['fcn_score_real'] = training.labeller_confusion(segmenter, target_image, label_maps, palette)
            for key, confusion in scored.items():
                confusions[key] = confusions.get(key, 0) + confusion

    results = {'checkpoint': str(args.checkpoint), 'epoch': state.get('epoch'), 'data': str(source),
               'direction': config['direction'], 'palette': palette_name if palette else None, 'images': len(data),
               'weights': 'ema' if checkpoint.has_average(state) else 'trained',
               **{key: total / len(data) for key, total in sums.items()}, **({'notes': notes} if notes else {})}
    if grid_logs:
        results.update({key: math.exp(total / len(data)) for key, total in grid_logs.items()})
        results.update({f'{prefix}hf_log_ratio': metrics.high_frequency_log_ratio(powers[f'{prefix}grid'],
                                                                                  powers['grid_target'])
                        for prefix in passes})
    for prefix in passes:
        if f'{prefix}labels' in confusions:
            results.update({prefix + key: value for key, value in
                            metrics.label_scores(confusions.pop(f'{prefix}labels')).items()})
    results.update({key: metrics.label_scores(confusion) for key, confusion in confusions.items()})
    atomic_write(out / 'metrics.json', json.dumps(results, indent=2) + '\n')

    print(f'{len(data)} images of {source} ({config["direction"]}), panels and metrics.json in {out}')
    for note in notes:
        print(f'note: {note}')
    for key, value in results.items():
        if isinstance(value, dict):
            print(f'{key:<20}' + '  '.join(f'{name} {score:.4f}' for name, score in value.items()))
        elif isinstance(value, float):
            print(f'{key:<20}{value:.4f}')


def add_spectra(grid_logs, powers, key, images):
    """Adds a batch's grid logs and radial power spectrum under key (nothing for images
    too small for the grid)."""
    spectra = metrics.power_spectra(images)
    logs = metrics.grid_logs(spectra)
    if logs is not None:
        grid_logs[key] = grid_logs.get(key, 0.0) + logs.sum().item()
        powers[key] = powers.get(key, 0.0) + metrics.radial_power(spectra)


if __name__ == '__main__':
    cli(main, parse_args())
