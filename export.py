"""Turn a training checkpoint into a small file for using the network: the
generator's weights only (its weight average where the run kept one), with the
run's settings and history, loadable with torch.load(weights_only=True); or,
for an .onnx name, the same generator as ONNX (needs requirements-onnx.txt).

    python export.py checkpoints/latest.pth pretrained/my_model.pth
    python export.py checkpoints/latest.pth my_model.onnx

evaluate.py, predict.py and demo.py take a .pth like any checkpoint; predict.py
takes the .onnx too (docs/export.md).
"""
import argparse
from pathlib import Path

import checkpoint
import onnx_generator
from errors import cli


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('checkpoint', help='a .pth file written by train.py (or by export.py)')
    parser.add_argument('out', type=Path, help='the file to write: NAME.pth, or NAME.onnx for ONNX')
    args = parser.parse_args()
    onnx = args.out.suffix.lower() == '.onnx'
    if onnx:
        generator, state = checkpoint.load_generator(args.checkpoint)  # the weights generator_weights picks
    else:
        state = checkpoint.load(args.checkpoint)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if onnx:
        onnx_generator.export(generator, state['config'], state['epoch'], args.out)
    else:
        checkpoint.save(checkpoint.generator_only(state), args.out)
    weights = ('the weight average' if checkpoint.has_average(state) else
               'the trained weights' if 'optimizer' in state else 'the exported weights')
    print(f'wrote {args.out} ({args.out.stat().st_size / 2**20:.1f} MB): {checkpoint.describe(state["config"])}, '
          f'epoch {state["epoch"]}, {weights}')


if __name__ == '__main__':
    cli(main)
