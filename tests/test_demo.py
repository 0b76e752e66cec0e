"""Tests for demo.py: the page in a real headless Chromium. A rectangle drawn on
the blank facade must bring back the photo that translate.predict (predict.py's
own path) makes of that label map; bad uploads get a message and the server
goes on serving; a missing checkpoint is one line.

Needs gradio and playwright (requirements-demo.txt) and a system Chromium; each
test skips without them, except under CI=true, where .ci/run installs them."""
import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import cv2
import numpy as np
import pytest
import torch

import checkpoint
import train
from conftest import REPO, run_script, save_generator
from FCN_network import build_generator
from translate import predict

CHROMIUM = shutil.which('chromium') or shutil.which('chromium-browser')  # Debian's name, Ubuntu's
SIDE = 256
# The colours the page must paint with, written out rather than read from metrics.FACADES,
# so that a wrong palette fails here instead of moving the expectation along with it.
BACKGROUND, FACADE, WINDOW = (0, 0, 222), (0, 48, 255), (0, 128, 255)
RECTANGLE = (70, 90, 180, 150)  # left, top, right, bottom pixels, inclusive


def require(name, present):
    if not present:
        if os.environ.get('CI') == 'true':  # .ci/run installs it: missing there is a broken CI
            pytest.fail(f'{name} is not installed, and CI must run the demo test')
        pytest.skip(f'{name} is not installed (pip install -r requirements-demo.txt)')


def blank():
    """demo.py's blank facade: background, with facade below a 16 px strip at the top
    and between 16 px strips at the sides."""
    label_map = np.empty((SIDE, SIDE, 3), np.uint8)
    label_map[:] = BACKGROUND
    label_map[16:, 16:SIDE - 16] = FACADE
    return label_map


def random_checkpoint(path, direction, seed):
    """A random fcn for 256x256 facades, its convolutions scaled up so that a colour a few
    levels off changes the photo by more than rounding."""
    torch.manual_seed(seed)
    config = dict(train.config, model='fcn', width=4, skips=True, image_size=SIDE, direction=direction,
                  dataset='facades')
    generator = build_generator(config)
    with torch.no_grad():
        for weight in generator.parameters():
            if weight.dim() == 4:
                weight.mul_(2)
    return save_generator(path, config, generator)


def free_port():
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        return probe.getsockname()[1]


@pytest.fixture(scope='module')
def server(tmp_path_factory):
    """demo.py serving a labels -> photo and a photo -> labels checkpoint: (url, process, checkpoints)."""
    require('gradio', importlib.util.find_spec('gradio'))
    folder = tmp_path_factory.mktemp('demo')
    checkpoints = {'draw': random_checkpoint(folder / 'labels2photo.pth', 'BtoA', 0),
                   'upload': random_checkpoint(folder / 'photo2labels.pth', 'AtoB', 1)}
    port = free_port()
    log = open(folder / 'demo.log', 'w')
    process = subprocess.Popen([sys.executable, str(REPO / 'demo.py'), checkpoints['draw'], checkpoints['upload'],
                                '--port', str(port), '--device', 'cpu'], cwd=folder, stdout=log,
                               stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONUNBUFFERED='1'))
    url = f'http://127.0.0.1:{port}/'
    deadline = time.time() + 120
    while True:
        try:
            urllib.request.urlopen(url, timeout=5).close()
            break
        except OSError:
            if process.poll() is not None or time.time() > deadline:
                process.kill()
                pytest.fail(f'demo.py did not start:\n{(folder / "demo.log").read_text()}')
            time.sleep(0.5)
    yield url, process, checkpoints
    process.terminate()
    process.wait(timeout=30)
    log.close()


@pytest.fixture(scope='module')
def browser(server):
    require('playwright', importlib.util.find_spec('playwright'))
    require('chromium (or chromium-browser)', CHROMIUM)
    from playwright.sync_api import sync_playwright
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=[
            '--no-sandbox', '--disable-background-networking', '--disable-component-update'])
        yield chromium
        chromium.close()


@pytest.fixture
def page(server, browser):
    """A fresh page of the demo; fails the test if it asks for anything off this machine."""
    url = server[0]
    page = browser.new_page(viewport={'width': 1300, 'height': 1000})
    outside = []
    page.on('request', lambda request: request.url.startswith((url, 'data:', 'blob:')) or outside.append(request.url))
    page.goto(url)
    yield page
    page.close()
    assert not outside, f'the page fetched from outside this machine: {outside}'


def shown_image(page, selector):
    """The RGB image an <img> on the page shows, as the server sent it."""
    data = page.request.get(page.locator(selector).get_attribute('src')).body()
    return cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def wait_for_image(page, selector):
    page.wait_for_function("""selector => { const image = document.querySelector(selector);
        return image && image.complete && image.naturalWidth > 0; }""", arg=selector, timeout=20_000)


def upload(page, button, path):
    with page.expect_file_chooser() as chooser:
        page.get_by_role('button', name=button).click()
    chooser.value.set_files(str(path))


@pytest.mark.slow  # a real browser
def test_a_rectangle_on_the_blank_facade_shows_predicts_photo(server, page):
    _, _, checkpoints = server
    canvas = page.locator('#drawing canvas')
    canvas.wait_for()
    page.wait_for_selector('#photo img')
    page.get_by_role('radio', name='filled rectangle').check()
    page.get_by_role('radio', name='window', exact=True).check()
    box = canvas.bounding_box()
    scale = box['width'] / SIDE  # the canvas shows the label map enlarged

    def point(x, y):  # the centre of label map pixel (x, y) on the screen
        return box['x'] + (x + 0.5) * scale, box['y'] + (y + 0.5) * scale
    left, top, right, bottom = RECTANGLE
    page.mouse.move(*point(left, top))
    page.mouse.down()
    page.mouse.move(*point(right, bottom), steps=5)
    started = time.time()
    with page.expect_response(lambda response: response.request.method == 'POST' and '/gradio_api/' in response.url
                              and '/upload' not in response.url, timeout=20_000) as answer:
        page.mouse.up()
    # the photo's file, which the page must then show (its name is a hash of its pixels)
    page.wait_for_function("""url => { const image = document.querySelector('#photo img');
        return image.src === url && image.complete && image.naturalWidth > 0; }""",
                           arg=answer.value.json()['data'][0]['url'], timeout=20_000)
    print(f'photo updated {time.time() - started:.2f} s after the stroke')

    drawn = blank()
    drawn[top:bottom + 1, left:right + 1] = WINDOW
    generator, state = checkpoint.load_generator(checkpoints['draw'])
    expected = predict(generator, drawn, state['config'], 'cpu').astype(int)
    # the test can tell: a missing rectangle, or a window colour 8 levels off, moves the photo
    off = drawn.copy()
    off[top:bottom + 1, left:right + 1] = (0, 120, 255)
    for other in (blank(), off):
        assert np.abs(predict(generator, other, state['config'], 'cpu') - expected).max() > 1

    shown = shown_image(page, '#photo img').astype(int)
    difference = np.abs(shown - expected).max() if shown.shape == expected.shape else 255
    on_canvas = np.array(page.evaluate("""() => { const canvas = document.querySelector('#drawing canvas');
        return Array.from(canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data); }"""),
                         np.uint8).reshape(SIDE, SIDE, 4)[..., :3]
    canvas_right = np.array_equal(on_canvas, drawn)
    assert difference <= 1, f"the page's photo is up to {difference} levels off predict's photo of the drawn " \
                            f"label map (the canvas {'holds' if canvas_right else 'does not hold'} that label map)"
    assert canvas_right, 'the canvas does not hold the drawn label map'


@pytest.mark.slow  # a real browser
def test_bad_uploads_get_a_message_and_the_server_goes_on(server, page, tmp_path):
    _, process, checkpoints = server
    (tmp_path / 'notes.jpg').write_text('not an image')
    cv2.imwrite(str(tmp_path / 'huge.png'), np.zeros((8000, 8000), np.uint8))  # 64 megapixels, 0.2 MB
    photo = np.random.default_rng(0).integers(0, 256, (96, 160, 3), np.uint8)
    cv2.imwrite(str(tmp_path / 'photo.png'), cv2.cvtColor(photo, cv2.COLOR_RGB2BGR))
    page.get_by_role('tab', name='Photo → labels').click()
    for name, message in (('notes.jpg', 'notes.jpg: not a readable image'),
                          ('huge.png', 'huge.png is 8000x8000 pixels; the demo takes up to')):
        upload(page, 'upload a photo', tmp_path / name)
        page.get_by_text(message).first.wait_for(timeout=20_000)
    upload(page, 'upload a photo', tmp_path / 'photo.png')
    wait_for_image(page, '#translated img')
    generator, state = checkpoint.load_generator(checkpoints['upload'])
    expected = predict(generator, photo, state['config'], 'cpu').astype(int)
    difference = np.abs(shown_image(page, '#translated img').astype(int) - expected).max()
    assert difference <= 1, f"the page's label map is up to {difference} levels off predict's"
    assert process.poll() is None


def test_a_missing_checkpoint_is_one_line(tmp_path):
    """With no argument the demo wants the pretrained models; where they are not,
    it says so and how to pass a checkpoint, in one line (gradio not needed)."""
    result = run_script('demo.py', cwd=tmp_path, check=False)
    assert result.returncode == 1
    assert result.stderr.startswith('error: pretrained/facades_labels2photo.pth: no such checkpoint file')
    assert len(result.stderr.strip().splitlines()) == 1 and 'python demo.py CHECKPOINT' in result.stderr
