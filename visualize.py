"""Pictures of a run: three-panel images (input | target | output), the HTML
gallery of the saved epochs, the loss curve, and the TensorBoard log.

Tensors arrive RGB in [-1, 1] (or grey, or RGBA); OpenCV's BGR appears only in
`encode_png`. Panels are RGB whatever the channels: grey is shown as grey, RGBA as
its RGB.
"""
import html
import io
from pathlib import Path
from urllib.parse import quote

import cv2
import numpy as np

from facades_dataset import to_uint8
from files import atomic_write
from pairs import numeric_key


def encode_png(image):
    """PNG bytes of an (H, W, C) image: grey (C = 1), RGB or RGBA; 16-bit for uint16."""
    conversion = {3: cv2.COLOR_RGB2BGR, 4: cv2.COLOR_RGBA2BGRA}.get(image.shape[2])
    ok, data = cv2.imencode('.png', image if conversion is None else cv2.cvtColor(image, conversion))
    if not ok:
        raise OSError('PNG encoding failed')
    return data.tobytes()


def as_rgb(images):
    """(..., C) uint8 pictures -> (..., 3) for viewing: grey repeated in R, G and B, RGBA
    without its alpha, RGB as it is."""
    if images.shape[-1] == 1:
        return np.repeat(images, 3, axis=-1)
    return images[..., :3] if images.shape[-1] == 4 else images


def viewable(image):
    """An (H, W, C) picture of either depth as RGB uint8: 16 bits rounded to 8."""
    if image.dtype == np.uint16:
        image = ((image.astype(np.uint32) + 128) // 257).astype(np.uint8)
    return as_rgb(image)


def make_panels(*columns):
    """Batches of shape (B, C, H, W) -> B RGB uint8 images, the columns side by side."""
    return list(np.concatenate([as_rgb(to_uint8(column)) for column in columns], axis=2))


def write_pngs(folder, names, images):
    """RGB uint8 images -> folder/name.png each; returns the paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f'{name}.png' for name in names]
    for path, image in zip(paths, images):
        atomic_write(path, encode_png(image))
    return paths


def save_panels(folder, names, *columns):
    """One PNG per image: the given columns side by side (e.g. input, target,
    output batches of shape (B, C, H, W)), named after `names`."""
    return write_pngs(folder, names, make_panels(*columns))


GALLERY_STYLE = """body { font: 14px sans-serif; margin: 16px; background: #fafafa; }
table { border-collapse: collapse; }
th { text-align: left; vertical-align: top; padding: 8px 16px 8px 0; white-space: nowrap; font-weight: normal; }
td { padding: 8px 0; border-top: 1px solid #ddd; }
figure { display: inline-block; margin: 0 8px 0 0; }
figure img { height: 160px; }
figcaption { color: #666; font-size: 12px; }"""


def write_gallery(results_dir, history, split):
    """<results_dir>/index.html: a row per saved epoch_N/ folder, newest first,
    its sample panels beside that epoch's L1. A static page with relative links
    and inline CSS only, so it opens from file:// and from a copied folder."""
    results_dir = Path(results_dir)
    metrics = {row['epoch']: row for row in history}
    epochs = sorted((int(folder.name[6:]) for folder in results_dir.glob('epoch_*')
                     if folder.name[6:].isdigit() and folder.is_dir()), reverse=True)
    rows = '\n'.join(gallery_row(results_dir, epoch, metrics.get(epoch, {})) for epoch in epochs)
    title = html.escape(f'{split} results')
    curve = '<h2>Losses</h2><img src="loss.png" alt="loss curve">' if (results_dir / 'loss.png').is_file() else ''
    page = (f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{title}</title>\n'
            f'<style>\n{GALLERY_STYLE}\n</style></head><body>\n<h1>{title}</h1>\n'
            f'<p>Newest epoch first. Each panel: input | target | output.</p>\n'
            f'<table>\n{rows}\n</table>\n{curve}\n</body></html>\n')
    atomic_write(results_dir / 'index.html', page)


def gallery_row(results_dir, epoch, metrics):
    figures = []
    for path in sorted((results_dir / f'epoch_{epoch}').glob('*.png'), key=numeric_key):
        link, name = html.escape(quote(f'epoch_{epoch}/{path.name}')), html.escape(path.stem)
        figures.append(f'<figure><a href="{link}"><img src="{link}" alt="{name}"></a>'
                       f'<figcaption>{name}</figcaption></figure>')
    l1 = {key: f'{metrics[key]:.4f}' if key in metrics else '&ndash;' for key in ('train_l1', 'val_l1')}
    return (f'<tr id="epoch_{epoch}"><th><b>epoch {epoch}</b><br>'
            f'train L1 <span class="train_l1">{l1["train_l1"]}</span><br>'
            f'val L1 <span class="val_l1">{l1["val_l1"]}</span></th><td>{"".join(figures)}</td></tr>')


def plot_losses(path, history):
    """A PNG of the history per epoch: L1 (train, and val where validated), then
    the GAN losses when the GAN is on, then the learning rate, one plot each."""
    # imported here: matplotlib takes about a second to import, which train start-up should not pay
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator
    plots = [('L1', ('train_l1', 'val_l1')), ('GAN loss', ('d_loss', 'g_gan')), ('learning rate', ('lr',))]
    plots = [(label, keys) for label, keys in plots if any(key in row for row in history for key in keys)]
    plots = plots or [('L1', ())]  # an empty history still gives a (blank) picture
    heights = [1 if label == 'learning rate' else 2 for label, _ in plots]
    figure = Figure(figsize=(8, 1 + 1.4 * sum(heights)), layout='constrained')
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(plots), 1, sharex=True, squeeze=False, height_ratios=heights)[:, 0]
    for axis, (label, keys) in zip(axes, plots):
        for key in keys:
            points = [(row['epoch'], row[key]) for row in history if key in row]
            if points:
                axis.plot(*zip(*points), marker='.' if len(points) <= 50 else None, label=key)
        if axis.lines:
            axis.legend()
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
    axes[-1].set_xlabel('epoch')
    axes[-1].xaxis.set_major_locator(MaxNLocator(integer=True))
    buffer = io.BytesIO()
    figure.savefig(buffer, format='png', dpi=100)
    atomic_write(path, buffer.getvalue())


def log_tensorboard(writer, row, panels):
    """One epoch into a SummaryWriter: every number of its history row as a
    scalar, and the sample panels ({split: {name: RGB uint8}}) as images."""
    epoch = row['epoch']
    for key, value in row.items():
        if key != 'epoch':
            writer.add_scalar(key, value, epoch)
    for split, samples in panels.items():
        for name, panel in samples.items():
            writer.add_image(f'{split}/{name}', panel, epoch, dataformats='HWC')
    writer.flush()  # so a run that is stopped still shows its last epoch
