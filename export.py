"""Turn a training checkpoint into a small file for using the network: the
generator's weights only (its weight average where the run kept one), with the
run's settings and history, loadable with torch.load(weights_only=True).

    python export.py checkpoints/latest.pth pretrained/my_model.pth

evaluate.py, predict.py and demo.py take the result like any checkpoint.
"""
import argparse
from pathlib import Path

import checkpoint
from errors import cli


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('checkpoint', help='a .pth file written by train.py')
    parser.add_argument('out', type=Path, help='the file to write')
    args = parser.parse_args()
    state = checkpoint.load(args.checkpoint)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    checkpoint.save(checkpoint.generator_only(state), args.out)
    weights = 'the weight average' if checkpoint.has_average(state) else 'the trained weights'
    print(f'wrote {args.out} ({args.out.stat().st_size / 2**20:.1f} MB): {checkpoint.describe(state["config"])}, '
          f'epoch {state["epoch"]}, {weights}')


if __name__ == '__main__':
    cli(main)
