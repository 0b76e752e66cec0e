"""Milliseconds per call of the generators in pretrained/ (or the .pth files given)
in PyTorch and in ONNX Runtime on the CPU, on the same number of threads: one
256x256 image, and a batch of 8 (at each model's image_size, 256x256 for the
shipped ones).

    python scripts/onnx_speed.py                         # pretrained/*.pth, 2 threads
    python scripts/onnx_speed.py run.pth --threads 4 --repeats 50

Each file is first exported to ONNX in a temporary folder, as export.py does.
A row gives the median of --repeats calls after --warmup calls, on random
inputs in [-1, 1]. Run it on a quiet machine: other jobs on the cores move
every number. Needs requirements-onnx.txt.
"""
import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
import checkpoint  # noqa: E402  (the repo root is on the path only now)
import onnx_generator  # noqa: E402
from errors import cli  # noqa: E402
from pairs import parse_image_size  # noqa: E402


def median_ms(call, images, warmup, repeats):
    for _ in range(warmup):
        call(images)
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        call(images)
        seconds.append(time.perf_counter() - start)
    return 1000 * statistics.median(seconds)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('files', nargs='*', type=Path, help='.pth files (default: pretrained/*.pth)')
    parser.add_argument('--threads', type=int, default=2, help='for PyTorch and ONNX Runtime alike (default 2)')
    parser.add_argument('--repeats', type=int, default=20, help='timed calls per row (default 20)')
    parser.add_argument('--warmup', type=int, default=3, help='untimed calls first (default 3)')
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)  # as ONNX Runtime's default sequential mode: one graph at a time
    print(f'torch {torch.__version__}, {args.threads} threads, median of {args.repeats} calls (ms)\n')
    print('| model | batch | PyTorch | ONNX Runtime | PyTorch / ONNX Runtime |\n|---|---|---|---|---|')
    with tempfile.TemporaryDirectory() as folder:
        for path in args.files or sorted((REPO / 'pretrained').glob('*.pth')):
            generator, state = checkpoint.load_generator(path)
            onnx_generator.export(generator, state['config'], state['epoch'], Path(folder) / 'model.onnx')
            runtime = onnx_generator.OnnxGenerator(Path(folder) / 'model.onnx', threads=args.threads)
            height, width = parse_image_size(state['config']['image_size']) or (256, 256)
            for batch in (1, 8):
                images = torch.rand(batch, 3, height, width) * 2 - 1
                with torch.inference_mode():
                    pytorch = median_ms(generator, images, args.warmup, args.repeats)
                onnx = median_ms(runtime, images, args.warmup, args.repeats)
                print(f'| {path.name} ({height}x{width}) | {batch} | {pytorch:.1f} | {onnx:.1f} | '
                      f'{pytorch / onnx:.2f} |', flush=True)


if __name__ == '__main__':
    cli(main)
