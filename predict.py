"""Apply a trained generator to your own images: one file, or every image in a folder.

    python predict.py checkpoints/latest.pth photo.jpg
    python predict.py checkpoints/fcn_epoch_200.pth my_label_maps/ --out predictions --panels

The inputs are single images, not left|right pairs, of any size; each output is
written at its input's size as OUT/NAME.png (with --panels: input | output), with
the network's output channels (a grey PNG for 1) and, when it was trained on
16-bit targets, as a 16-bit PNG (panels are 8-bit RGB, for viewing). Each input is
read as training read it: at the network's input channels (colour to grey for 1).
A folder holding A/ and B/ (a dataset of your own) gives its inputs: A/ for a
checkpoint trained AtoB, B/ for BtoA.
The network's settings come from the checkpoint, so no flag repeats them.
An .onnx file from export.py runs instead in ONNX Runtime on the CPU, needing no
checkpoint (pip install -r requirements-onnx.txt): the same pictures.
"""
import argparse
import sys
from collections import Counter
from pathlib import Path

import numpy as np
from tqdm import tqdm

import checkpoint
import onnx_generator
import visualize
from errors import UserError, cli
from FCN_network import pick_device
from files import atomic_write
from images import read_image
from pairs import DatasetError, inputs_of, list_images
from translate import predict


def output_names(paths):
    """NAME.png per input; inputs that share a stem (a.jpg, a.png) keep their suffix (a.jpg.png)."""
    stems = Counter(path.stem for path in paths)
    return [f'{path.stem if stems[path.stem] == 1 else path.name}.png' for path in paths]


def main():
    parser = argparse.ArgumentParser(description='Apply a trained checkpoint to your own (unpaired) images.')
    parser.add_argument('checkpoint', type=Path,
                        help='a .pth file written by train.py or export.py, or an .onnx file written by export.py')
    parser.add_argument('input', type=Path, help='an image, or a folder of images')
    parser.add_argument('--out', type=Path, default=Path('predictions'), help='output folder (default: predictions)')
    parser.add_argument('--panels', action='store_true', help='write input | output side by side')
    parser.add_argument('--mirror', action='store_true',
                        help='test-time mirroring: average the output with the mirrored output of the mirrored input')
    parser.add_argument('--device', default='auto',
                        help="as train.py's device setting: auto (CUDA, else MPS, else the CPU), cpu, cuda, cuda:1, mps")
    args = parser.parse_args()

    if not args.input.exists():
        raise UserError(f'{args.input}: no such file or folder')
    if args.checkpoint.suffix.lower() == '.onnx':
        if args.device not in ('auto', 'cpu'):
            raise UserError(f'--device={args.device}: an .onnx file runs on the CPU in ONNX Runtime; '
                            'leave --device out, or use the .pth')
        generator = onnx_generator.OnnxGenerator(args.checkpoint)
        config, device = generator.config, pick_device('cpu')
    else:
        device = pick_device(args.device)
        generator, state = checkpoint.load_generator(args.checkpoint, device)
        config = state['config']
    # a folder holding A/ and B/: the inputs of the network's direction
    paths = list_images(inputs_of(args.input, config['direction'])) if args.input.is_dir() else [args.input]
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f'cannot write to {args.out}: {error.strerror or error}') from None

    written = 0
    for path, name in zip(tqdm(paths, desc='predicting', unit='image'), output_names(paths)):
        try:
            image = read_image(path, config['input_channels'])
        except DatasetError as error:
            tqdm.write(f'skipped {error}', file=sys.stderr)
            continue
        output = predict(generator, image, config, device, args.mirror)
        if args.panels:
            output = np.concatenate([visualize.viewable(image), visualize.viewable(output)], 1)
        atomic_write(args.out / name, visualize.encode_png(output))
        written += 1
    if not written:
        raise UserError(f'none of the {len(paths)} input file(s) could be read')
    print(f'wrote {written} of {len(paths)} image(s) to {args.out}')


if __name__ == '__main__':
    cli(main)
