"""Val L1 against wall-clock minutes, one curve per training run, drawn from the
runs' metrics.csv files (train.py writes them; their minutes column counts from
launch, start-up included).

    python scripts/time_to_quality.py --out docs/time_to_quality.png \\
        "new default=runs/default/checkpoints/metrics.csv" \\
        "U-Net recipe=runs/recipe/checkpoints/metrics.csv"

Each run is LABEL=PATH. A metrics.csv from before the minutes column is drawn
against its summed epoch seconds, and its label says so. Compare only runs
timed one after another on the same machine.
"""
import argparse
import csv
import sys
from pathlib import Path

ASSIGNMENT_L1 = 0.3823  # the assignment's facades result after 1000 GPU epochs


def read_curve(path):
    """(minutes, val_l1) of each validated epoch, and whether the minutes are
    summed epoch seconds (no minutes column) rather than the wall clock."""
    with open(path, newline='') as file:
        rows = list(csv.DictReader(file))
    if not rows or not {'val_l1', 'seconds'} <= set(rows[0]):
        raise ValueError(f'{path}: no val_l1 and seconds columns; is it a train.py metrics.csv?')
    summed = 'minutes' not in rows[0]
    minutes, total = [], 0.0
    for row in rows:
        total += float(row['seconds']) / 60
        minutes.append(total if summed else float(row['minutes']))
    points = [(m, float(row['val_l1'])) for m, row in zip(minutes, rows) if row['val_l1']]
    return points, summed


def plot(path, curves, title, assignment_l1=ASSIGNMENT_L1):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    figure = Figure(figsize=(8, 5), layout='constrained')
    FigureCanvasAgg(figure)
    axis = figure.subplots()
    for label, (points, summed) in curves.items():
        best = min(l1 for _, l1 in points)
        suffix = ' (epoch seconds summed)' if summed else ''
        axis.plot(*zip(*points), label=f'{label}: best {best:.4f}{suffix}')
    axis.axhline(assignment_l1, color='grey', linestyle='--', label=f"the assignment's 1000 GPU epochs: {assignment_l1}")
    axis.set_xlabel('wall-clock minutes from launch')
    axis.set_ylabel('facades val L1 (lower is better)')
    low = min(l1 for points, _ in curves.values() for _, l1 in points)
    axis.set_ylim(low - 0.01, max(assignment_l1 + 0.06, low + 0.1))
    axis.set_title(title, fontsize=10)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    figure.savefig(path, dpi=100)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('runs', nargs='+', metavar='LABEL=PATH', help="a run's label and its metrics.csv")
    parser.add_argument('--out', default='time_to_quality.png', help='the PNG (default: %(default)s)')
    parser.add_argument('--title', default='', help='say here which CPU and precision the runs used')
    args = parser.parse_args()
    curves = {}
    for run in args.runs:
        label, _, path = run.rpartition('=')
        if not label or not Path(path).is_file():
            sys.exit(f'error: {run!r}: expected LABEL=PATH to a metrics.csv')
        try:
            curves[label] = read_curve(path)
        except ValueError as error:
            sys.exit(f'error: {error}')
        if not curves[label][0]:
            sys.exit(f'error: {path}: no validated epoch yet')
    plot(args.out, curves, args.title)
    print(f'wrote {args.out}')


if __name__ == '__main__':
    main()
