"""One picture comparing runs on the same images, from evaluate.py's panels
(input | target | output per image): input, each run's output, then the target.

    python evaluate.py l1.pth --out eval_results/l1
    python evaluate.py cgan.pth --out eval_results/cgan
    python scripts/compare_panels.py docs/facades_BtoA_cpu.jpg eval_results/l1 eval_results/cgan --images 1 2 3
"""
import argparse
import sys
from pathlib import Path

import cv2
import numpy as np


def read_panel(folder, name):
    panel = cv2.imread(str(Path(folder) / f'{name}.png'))
    if panel is None:
        sys.exit(f'error: {Path(folder) / f"{name}.png"}: no such panel (run evaluate.py --out {folder} first)')
    return np.split(panel, 3, axis=1)  # input, target, output


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('out', type=Path, help='the picture to write (.jpg or .png)')
    parser.add_argument('runs', nargs='+', help="evaluate.py output folders, one column each, in order")
    parser.add_argument('--images', nargs='+', required=True, help='panel names (image stems), one row each')
    parser.add_argument('--gap', type=int, default=4, help='white pixels between images (default: 4)')
    args = parser.parse_args()
    rows = []
    for name in args.images:
        panels = [read_panel(run, name) for run in args.runs]
        cells = [panels[0][0]] + [output for _, _, output in panels] + [panels[0][1]]
        gap = np.full((cells[0].shape[0], args.gap, 3), 255, np.uint8)
        rows.append(np.concatenate([part for cell in cells for part in (cell, gap)][:-1], axis=1))
    gap = np.full((args.gap, rows[0].shape[1], 3), 255, np.uint8)
    picture = np.concatenate([part for row in rows for part in (row, gap)][:-1], axis=0)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), picture, [cv2.IMWRITE_JPEG_QUALITY, 85] if args.out.suffix.lower() in ('.jpg', '.jpeg') else [])
    print(f'wrote {args.out}: {len(rows)} images x (input, {len(args.runs)} runs, target)')


if __name__ == '__main__':
    main()
