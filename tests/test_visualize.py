"""Tests for visualize.py: the results gallery, the loss curve and TensorBoard
logging after a tiny training run, and a real browser's look at the gallery."""
import csv
import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from urllib.parse import unquote

import cv2
import numpy as np
import pytest

from conftest import REPO, run_main, tiny_run_args, write_tiny_dataset

import visualize  # noqa: E402

CHROMIUM = shutil.which('chromium') or shutil.which('chromium-browser')  # Debian's name, Ubuntu's
CHROMIUM_FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
                  '--disable-background-networking', '--disable-component-update', '--disable-sync']


@pytest.fixture(scope='module')
def run(tmp_path_factory):
    """One 3-epoch GAN run with TensorBoard on, saving at epochs 2 and 3."""
    out = tmp_path_factory.mktemp('run')
    write_tiny_dataset(out / 'tiny')
    result = run_main('train.py', *tiny_run_args(out / 'tiny', out, num_epochs=3, save_every=2, gan=True,
                                                 tensorboard=True), cwd=out)
    return out, result


class ImageSources(HTMLParser):
    def __init__(self):
        super().__init__()
        self.sources = []

    def handle_starttag(self, tag, attrs):
        if tag == 'img':
            self.sources.append(dict(attrs)['src'])


def image_sources(page):
    parser = ImageSources()
    parser.feed(page.read_text())
    return parser.sources


def gallery_rows(page):
    """[(epoch, train L1 text, val L1 text)] in page order."""
    return [(int(epoch), train, val) for epoch, train, val in re.findall(
        r'<tr id="epoch_(\d+)">.*?class="train_l1">([^<]*)<.*?class="val_l1">([^<]*)<', page.read_text(), re.S)]


@pytest.mark.parametrize('split', ['train', 'val'])
def test_gallery_rows_match_metrics_csv(run, split):
    out, _ = run
    page = out / f'{split}_results' / 'index.html'
    with open(out / 'checkpoints' / 'metrics.csv') as file:
        metrics = {int(row['epoch']): row for row in csv.DictReader(file)}
    rows = gallery_rows(page)
    assert [epoch for epoch, _, _ in rows] == [3, 2]  # the saved epochs, newest first
    for epoch, train, val in rows:
        assert float(train) == pytest.approx(float(metrics[epoch]['train_l1']), abs=1e-4)
        assert float(val) == pytest.approx(float(metrics[epoch]['val_l1']), abs=1e-4)
    text = page.read_text()
    assert '<script' not in text and 'http' not in text  # static, nothing from the internet


@pytest.mark.parametrize('split', ['train', 'val'])
def test_gallery_images_exist_and_decode(run, split):
    out, _ = run
    folder = out / f'{split}_results'
    sources = image_sources(folder / 'index.html')
    panels = [source for source in sources if source.startswith('epoch_')]
    assert len(panels) == 2 * 2  # two saved epochs, two samples each
    for source in sources:
        assert not source.startswith('/') and '://' not in source  # relative: works from a copied folder
        image = cv2.imread(str(folder / unquote(source)))
        assert image is not None, source
    for source in panels:
        height, width = cv2.imread(str(folder / unquote(source))).shape[:2]
        assert (height, width) == (32, 3 * 32)  # input | target | output


def test_loss_png_is_valid(run):
    out, _ = run
    path = out / 'train_results' / 'loss.png'
    assert path.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    image = cv2.imread(str(path))
    assert image is not None
    assert image.shape[0] >= 300 and image.shape[1] >= 400
    assert image.std() > 10  # curves and text, not a blank canvas
    assert 'loss.png' in image_sources(out / 'train_results' / 'index.html')


def test_tensorboard_logs_or_says_it_is_missing(run):
    out, result = run
    try:
        import torch.utils.tensorboard  # noqa: F401
    except ImportError:
        lines = [line for line in result.stdout.splitlines() if 'tensorboard is not installed' in line]
        assert len(lines) == 1
        assert (out / 'checkpoints' / 'fcn_epoch_3.pth').is_file()  # training went on
    else:
        assert list((out / 'checkpoints' / 'tensorboard').glob('events.out.tfevents.*'))


def test_log_tensorboard_sends_every_number_and_the_panels():
    class Writer:  # records what a SummaryWriter would be given
        def __init__(self):
            self.calls = []

        def add_scalar(self, tag, value, step):
            self.calls.append(('scalar', tag, value, step))

        def add_image(self, tag, image, step, dataformats):
            self.calls.append(('image', tag, image.shape, image.dtype, dataformats, step))

        def flush(self):
            self.calls.append(('flush',))

    writer = Writer()
    row = {'epoch': 4, 'train_l1': 0.5, 'd_loss': 0.6, 'g_gan': 0.7, 'val_l1': 0.4, 'lr': 1e-4, 'seconds': 2.0}
    panel = np.zeros((32, 96, 3), np.uint8)
    visualize.log_tensorboard(writer, row, {'train': {'1': panel}, 'val': {'7': panel}})
    scalars = {call[1]: call[2] for call in writer.calls if call[0] == 'scalar'}
    assert scalars == {key: value for key, value in row.items() if key != 'epoch'}
    assert [call for call in writer.calls if call[0] == 'image'] == [
        ('image', 'train/1', (32, 96, 3), np.uint8, 'HWC', 4), ('image', 'val/7', (32, 96, 3), np.uint8, 'HWC', 4)]
    assert writer.calls[-1] == ('flush',)


def test_write_gallery_escapes_names_and_ignores_other_folders(tmp_path):
    names = ['a&b <c> "d"', 'x#y?z', '10', '2']
    for epoch in (1, 12):
        visualize.write_pngs(tmp_path / f'epoch_{epoch}', names, [np.zeros((4, 12, 3), np.uint8)] * len(names))
    (tmp_path / 'epoch_best').mkdir()
    visualize.write_gallery(tmp_path, [{'epoch': 1, 'train_l1': 0.5}], 'val <split>')
    page = tmp_path / 'index.html'
    text = page.read_text()
    assert '<c>' not in text and '<split>' not in text and 'val &lt;split&gt;' in text
    assert [(epoch, train) for epoch, train, _ in gallery_rows(page)] == [(12, '&ndash;'), (1, '0.5000')]
    sources = image_sources(page)
    in_order = ['2', '10', 'a&b <c> "d"', 'x#y?z']  # numbers numerically, then names
    assert [unquote(source) for source in sources[:4]] == [f'epoch_12/{name}.png' for name in in_order]
    assert all((tmp_path / unquote(source)).is_file() for source in sources)


def test_plot_losses_without_gan_and_with_gaps(tmp_path):
    history = [{'epoch': 1, 'train_l1': 0.5, 'lr': 2e-4}, {'epoch': 2, 'train_l1': 0.4, 'val_l1': 0.45, 'lr': 1e-4}]
    visualize.plot_losses(tmp_path / 'loss.png', history)
    assert cv2.imread(str(tmp_path / 'loss.png')) is not None
    visualize.plot_losses(tmp_path / 'empty.png', [])
    assert cv2.imread(str(tmp_path / 'empty.png')) is not None


@pytest.mark.slow  # a real browser
def test_gallery_in_a_real_browser(run, tmp_path):
    if CHROMIUM is None:
        if os.environ.get('CI') == 'true':  # .ci/run installs it: a missing browser there is a broken CI
            pytest.fail('chromium (or chromium-browser) is not installed, and CI must run the browser check')
        pytest.skip('chromium is not installed')
    out, _ = run
    # a copy elsewhere: relative links must survive it
    folder = shutil.copytree(out / 'train_results', tmp_path / 'copied results')
    shot = tmp_path / 'gallery.png'
    subprocess.run(['bash', str(REPO / 'scripts' / 'screenshot_gallery.sh'), str(folder), str(shot)], check=True,
                   capture_output=True, timeout=180)
    image = cv2.imread(str(shot))
    assert image.shape[:2] == (900, 1200)
    assert image.std() > 10  # not a blank page
    # the browser's own verdict on every <img>: a test-only copy of the page that reports, once loaded,
    # which images failed to decode (naturalWidth 0)
    probe = """<script>window.addEventListener('load', () => {
      const broken = [...document.images].filter(i => !i.complete || !i.naturalWidth).map(i => i.getAttribute('src'));
      const pre = document.createElement('pre'); pre.id = 'probe';
      pre.textContent = JSON.stringify({images: document.images.length, broken: broken});
      document.body.appendChild(pre); });</script></body>"""
    page = folder / 'probe.html'
    page.write_text((folder / 'index.html').read_text().replace('</body>', probe))
    dom = subprocess.run([CHROMIUM, *CHROMIUM_FLAGS, f'--user-data-dir={tmp_path / "profile"}',
                          '--virtual-time-budget=10000', '--dump-dom', page.as_uri()],
                         capture_output=True, text=True, timeout=180).stdout
    report = json.loads(re.search(r'<pre id="probe">(.*?)</pre>', dom).group(1))
    assert report == {'images': len(image_sources(folder / 'index.html')), 'broken': []}
