"""Tests for demo.py: the page in a real headless Chromium, serving facades and
cityscapes checkpoints at once. Each drawing tab offers its dataset's classes in
their colours; a rectangle drawn on the blank facade, or the blank street, must
bring back the photo that translate.predict (predict.py's own path) makes of
that label map; bad uploads get a message and the server goes on serving; a
missing checkpoint is one line.

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
# The classes and colours the page must paint with, written out rather than read from
# metrics, so that a wrong palette fails here instead of moving the expectation along.
CLASSES = {
    'facades': {'background': (0, 0, 222), 'facade': (0, 48, 255), 'window': (0, 128, 255), 'door': (1, 207, 255),
                'cornice': (32, 255, 224), 'sill': (112, 254, 142), 'balcony': (192, 255, 63),
                'blind': (255, 240, 1), 'deco': (255, 159, 0), 'molding': (255, 80, 0), 'pillar': (254, 0, 0),
                'shop': (174, 0, 1)},
    # the 19 train classes of cityscapesScripts' helpers/labels.py, in trainId order
    'cityscapes': {'road': (128, 64, 128), 'sidewalk': (244, 35, 232), 'building': (70, 70, 70),
                   'wall': (102, 102, 156), 'fence': (190, 153, 153), 'pole': (153, 153, 153),
                   'traffic light': (250, 170, 30), 'traffic sign': (220, 220, 0), 'vegetation': (107, 142, 35),
                   'terrain': (152, 251, 152), 'sky': (70, 130, 180), 'person': (220, 20, 60),
                   'rider': (255, 0, 0), 'car': (0, 0, 142), 'truck': (0, 0, 70), 'bus': (0, 60, 100),
                   'train': (0, 80, 100), 'motorcycle': (0, 0, 230), 'bicycle': (119, 11, 32)}}
# What each test draws: a class, its colour 8 levels off (which must move the photo),
# and the rectangle's left, top, right, bottom pixels, inclusive.
STROKES = {'facades': ('window', (0, 120, 255), (70, 90, 180, 150)),
           'cityscapes': ('car', (0, 0, 134), (60, 140, 150, 190))}


def require(name, present):
    if not present:
        if os.environ.get('CI') == 'true':  # .ci/run installs it: missing there is a broken CI
            pytest.fail(f'{name} is not installed, and CI must run the demo test')
        pytest.skip(f'{name} is not installed (pip install -r requirements-demo.txt)')


def blank(dataset):
    """demo.py's blank drawing. A facade: background, with facade below a 16 px strip at
    the top and between 16 px strips at the sides. A street: sky, building from row 64,
    road from row 160."""
    colour = CLASSES[dataset]
    label_map = np.empty((SIDE, SIDE, 3), np.uint8)
    if dataset == 'facades':
        label_map[:] = colour['background']
        label_map[16:, 16:SIDE - 16] = colour['facade']
    else:
        label_map[:64], label_map[64:160], label_map[160:] = colour['sky'], colour['building'], colour['road']
    return label_map


def random_checkpoint(path, dataset, direction, seed):
    """A random fcn for 256x256 images of the dataset, its convolutions scaled up so that
    a colour a few levels off changes the photo by more than rounding."""
    torch.manual_seed(seed)
    config = dict(train.config, model='fcn', width=4, skips=True, image_size=SIDE, direction=direction,
                  dataset=dataset)
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
    """demo.py serving a labels -> photo and a photo -> labels checkpoint of facades and of
    cityscapes: (url, process, {(dataset, 'draw' or 'upload'): checkpoint})."""
    require('gradio', importlib.util.find_spec('gradio'))
    folder = tmp_path_factory.mktemp('demo')
    tabs = [(dataset, kind, direction) for dataset in CLASSES
            for kind, direction in (('draw', 'BtoA'), ('upload', 'AtoB'))]
    checkpoints = {(dataset, kind): random_checkpoint(folder / f'{dataset}_{kind}.pth', dataset, direction, seed)
                   for seed, (dataset, kind, direction) in enumerate(tabs)}
    port = free_port()
    log = open(folder / 'demo.log', 'w')
    process = subprocess.Popen([sys.executable, str(REPO / 'demo.py'), *checkpoints.values(),
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
def test_a_tab_for_each_checkpoint_and_each_drawing_paints_its_datasets_classes(page):
    page.get_by_role('tab').first.wait_for()
    assert page.get_by_role('tab').all_inner_texts() == [
        'facades: draw labels → photo', 'facades: photo → labels',
        'cityscapes: draw labels → photo', 'cityscapes: photo → labels']
    for dataset, classes in CLASSES.items():
        page.get_by_role('tab', name=f'{dataset}: draw labels → photo').click()
        offered = page.locator(f'#{dataset}-drawing .classes label').evaluate_all("""labels => labels.map(label =>
            [label.innerText.trim(), getComputedStyle(label.querySelector('span')).backgroundColor])""")
        assert offered == [[name, 'rgb(%d, %d, %d)' % colour] for name, colour in classes.items()], dataset


@pytest.mark.slow  # a real browser
@pytest.mark.parametrize('dataset', CLASSES)
def test_a_rectangle_on_the_blank_shows_predicts_photo(server, page, dataset):
    _, _, checkpoints = server
    pen, off_colour, (left, top, right, bottom) = STROKES[dataset]
    page.get_by_role('tab', name=f'{dataset}: draw labels → photo').click()
    drawing = page.locator(f'#{dataset}-drawing')
    canvas = drawing.locator('canvas')
    canvas.wait_for()
    page.wait_for_selector(f'#{dataset}-photo img')
    drawing.get_by_role('radio', name='filled rectangle').check()
    drawing.get_by_role('radio', name=pen, exact=True).check()
    box = canvas.bounding_box()
    scale = box['width'] / SIDE  # the canvas shows the label map enlarged

    def point(x, y):  # the centre of label map pixel (x, y) on the screen
        return box['x'] + (x + 0.5) * scale, box['y'] + (y + 0.5) * scale
    page.mouse.move(*point(left, top))
    page.mouse.down()
    page.mouse.move(*point(right, bottom), steps=5)
    started = time.time()
    with page.expect_response(lambda response: response.request.method == 'POST' and '/gradio_api/' in response.url
                              and '/upload' not in response.url, timeout=20_000) as answer:
        page.mouse.up()
    # the photo's file, which the page must then show (its name is a hash of its pixels)
    page.wait_for_function("""([selector, url]) => { const image = document.querySelector(selector);
        return image.src === url && image.complete && image.naturalWidth > 0; }""",
                           arg=[f'#{dataset}-photo img', answer.value.json()['data'][0]['url']], timeout=20_000)
    print(f'photo updated {time.time() - started:.2f} s after the stroke')

    drawn = blank(dataset)
    drawn[top:bottom + 1, left:right + 1] = CLASSES[dataset][pen]
    generator, state = checkpoint.load_generator(checkpoints[dataset, 'draw'])
    expected = predict(generator, drawn, state['config'], 'cpu').astype(int)
    # the test can tell: a missing rectangle, or the class's colour 8 levels off, moves the photo
    off = drawn.copy()
    off[top:bottom + 1, left:right + 1] = off_colour
    for other in (blank(dataset), off):
        assert np.abs(predict(generator, other, state['config'], 'cpu') - expected).max() > 1

    shown = shown_image(page, f'#{dataset}-photo img').astype(int)
    difference = np.abs(shown - expected).max() if shown.shape == expected.shape else 255
    on_canvas = np.array(canvas.evaluate("""canvas =>
        Array.from(canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data)"""),
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
    page.get_by_role('tab', name='facades: photo → labels').click()
    for name, message in (('notes.jpg', 'notes.jpg: not a readable image'),
                          ('huge.png', 'huge.png is 8000x8000 pixels; the demo takes up to')):
        upload(page, 'upload a photo', tmp_path / name)
        page.get_by_text(message).first.wait_for(timeout=20_000)
    upload(page, 'upload a photo', tmp_path / 'photo.png')
    wait_for_image(page, '#facades-translated img')
    generator, state = checkpoint.load_generator(checkpoints['facades', 'upload'])
    expected = predict(generator, photo, state['config'], 'cpu').astype(int)
    difference = np.abs(shown_image(page, '#facades-translated img').astype(int) - expected).max()
    assert difference <= 1, f"the page's label map is up to {difference} levels off predict's"
    assert process.poll() is None


@pytest.mark.slow  # gradio's import alone takes seconds
def test_a_missing_checkpoint_is_one_line(tmp_path):
    """With no argument the demo wants the pretrained models; where they are not,
    it says so and how to pass a checkpoint, in one line (gradio not needed)."""
    result = run_script('demo.py', cwd=tmp_path, check=False)
    assert result.returncode == 1
    assert result.stderr.startswith('error: pretrained/facades_labels2photo.pth: no such checkpoint file')
    assert len(result.stderr.strip().splitlines()) == 1 and 'python demo.py CHECKPOINT' in result.stderr
