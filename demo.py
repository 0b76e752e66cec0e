"""A page to draw facades and street scenes on: paint a label map with the
dataset's classes (the 12 CMP facade classes, the 19 Cityscapes train classes)
and see the labels -> photo network's photo of it after every stroke; another
tab turns an uploaded photo into a label map.

    pip install -r requirements-demo.txt
    python demo.py                                  # the pretrained models that are in pretrained/
    python demo.py checkpoints/latest.pth --port 7861

Each checkpoint gets a tab of its own, which its dataset and direction decide: a
network from a label map to a photo (BtoA on facades or cityscapes) gets a
drawing tab with that dataset's classes, any other an upload tab. The page runs
offline: no analytics, no share link, nothing fetched from the internet.
"""
import argparse
import base64
import os
import struct
import warnings
from pathlib import Path

import cv2
import numpy as np

# read when gradio is imported: no calls home, and no copy of every stroke in the browser's storage
os.environ.update(GRADIO_ANALYTICS_ENABLED='False', GRADIO_RUN_HISTORY='False')
try:
    import gradio as gr
    from PIL import Image  # gradio's own dependency; it reads an upload's size from the header alone
except ImportError:  # main() says how to install it, once the checkpoints are known to be there
    gr = None

import checkpoint
import metrics
import visualize
from errors import UserError, cli
from FCN_network import pick_device
from images import decode_pair, read_image, resize_image
from pairs import SHARED_DATA, DatasetError, list_images, split_source
from translate import predict

# What python demo.py serves: those of these that are there. With none, the first's
# missing-file error says how to pass a checkpoint instead.
PRETRAINED = tuple(f'pretrained/{dataset}_{kind}.pth' for dataset in ('facades', 'cityscapes')
                   for kind in ('labels2photo', 'photo2labels'))
MAX_PIXELS = 40_000_000  # a bigger upload is refused before it is decoded (it would take GBs of RAM)
MAX_FILE_SIZE = '50mb'
EXAMPLES = 4             # validation label maps offered as starting points, where the data is here

# What a blank drawing holds: (class, left, top, right, bottom) boxes in fractions of the
# side, painted in order. A facade fills the picture but for a strip of background (sky,
# neighbours) at the top and sides, and stands on the bottom edge, as in the CMP data.
BLANKS = {'facades': [('background', 0, 0, 1, 1), ('facade', 1 / 16, 1 / 16, 15 / 16, 1)],
          'cityscapes': [('sky', 0, 0, 1, 1), ('building', 0, 1 / 4, 1, 5 / 8), ('road', 0, 5 / 8, 1, 1)]}
PEN = {'facades': 'window', 'cityscapes': 'car'}  # the class chosen at first: what a blank most lacks


def tab_of(config):
    """(dataset, kind): the tab a run's network gets. kind is 'draw' for label maps to
    photos of a dataset with a palette, else 'upload'; dataset is the palette's name or
    the last part of the run's dataset path."""
    dataset = metrics.palette_name(config['dataset'])
    draws = config['direction'] == 'BtoA' and dataset is not None and config['input_channels'] == 3
    return dataset or Path(config['dataset']).name, 'draw' if draws else 'upload'


def class_colours(palette):
    """[(name, (r, g, b))] in class order: each class's colour (ignored colours are not drawn)."""
    colour_of = {}
    for colour, index in palette.colours.items():
        colour_of.setdefault(index, colour)
    return [(name, colour_of[index]) for index, name in enumerate(palette.classes)]


def snap(image, palette):
    """Every pixel to its nearest palette colour, so that a drawing holds classes only:
    JPEG label maps and resized ones hold blends between them."""
    colours = list(palette.colours)
    nearest = metrics.nearest_class(image[None], metrics.Palette((), {c: i for i, c in enumerate(colours)}))[0]
    return np.array(colours, np.uint8)[nearest.numpy()]


def blank_label_map(name, side):
    colour = dict(class_colours(metrics.PALETTES[name]))
    label_map = np.empty((side, side, 3), np.uint8)
    for label, left, top, right, bottom in BLANKS[name]:
        label_map[round(top * side):round(bottom * side), round(left * side):round(right * side)] = colour[label]
    return label_map


def example_label_maps(config, side):
    """{name: label map} of the first validation pairs' input halves, where the data is on
    this machine; none where it is not (the demo never ships or fetches them)."""
    dataset = Path(config['dataset'])
    for root in (dataset, SHARED_DATA / dataset.name):
        try:
            paths = list_images(split_source(root, 'val'))[:EXAMPLES]
        except DatasetError:
            continue
        palette = metrics.PALETTES[metrics.palette_name(config['dataset'])]
        examples = {}
        for path in paths:
            try:
                pair = decode_pair((path,), side)
            except DatasetError:
                continue
            half = pair[:, side:] if config['direction'] == 'BtoA' else pair[:, :side]
            examples[f'validation image {Path(path).stem}'] = snap(half, palette)
        return examples
    return {}


def data_url(image):
    return 'data:image/png;base64,' + base64.b64encode(visualize.encode_png(image)).decode()


def parse_drawing(url, side):
    """The RGB label map of the PNG data URL the drawing sends, or None when it is not a
    side x side PNG (checked in its header, before anything is decoded)."""
    try:
        data = base64.b64decode(url.split(',', 1)[1])
    except (AttributeError, IndexError, ValueError):
        return None
    if data[:8] != b'\x89PNG\r\n\x1a\n' or len(data) < 24 or struct.unpack('>II', data[16:24]) != (side, side):
        return None
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return None if image is None else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def load(paths, device):
    """{(dataset, kind): (generator, state, path)} from the checkpoints given (tab_of), in
    their order; one line and exit for a missing or bad file, or two for the same tab."""
    models = {}
    for path in paths:
        try:
            generator, state = checkpoint.load_generator(path, device)
        except checkpoint.CheckpointError as error:
            advice = ' (the pretrained models are not there yet); pass a checkpoint of your own: python demo.py ' \
                'CHECKPOINT, e.g. checkpoints/latest.pth of python train.py --direction=BtoA' \
                if path in PRETRAINED and not Path(path).exists() else ''
            raise UserError(f'{error}{advice}') from None
        tab = tab_of(state['config'])
        if tab in models:
            raise UserError(f'{models[tab][2]} and {path} are both for the {" ".join(tab)} tab; give one '
                            f'checkpoint per tab')
        models[tab] = generator, state, path
    return models


def describe(state, path):
    config = state['config']
    return f"`{path}`: {config['model']}, {config['dataset']} {config['direction']}, epoch {state['epoch']}"


def read_upload(path, channels=3):
    """An uploaded file as the network reads it (`read_image`: RGB by default), or
    gr.Error with one line for the page."""
    name = Path(path).name
    try:
        with warnings.catch_warnings(), Image.open(path) as image:  # reads the header only
            warnings.simplefilter('ignore', Image.DecompressionBombWarning)
            width, height = image.size
    except Image.DecompressionBombError:
        width = height = MAX_PIXELS
    except Exception:  # not a format Pillow knows; OpenCV may still read it, or say why not
        width = height = 0
    if width * height > MAX_PIXELS:
        raise gr.Error(f'{name} is {width}x{height} pixels; the demo takes up to '
                       f'{MAX_PIXELS / 1e6:.0f} megapixels', print_exception=False)
    try:
        return read_image(path, channels)
    except DatasetError as error:
        raise gr.Error(str(error).replace(str(path), name), print_exception=False) from None


def build(models, device):
    with gr.Blocks(title='Pix2Pix demo', analytics_enabled=False, delete_cache=(600, 600)) as page:
        gr.Markdown('# Pix2Pix\n' + '  \n'.join(describe(state, path) for _, state, path in models.values()))
        for (dataset, kind), (generator, state, _) in models.items():
            (draw_tab if kind == 'draw' else upload_tab)(generator, state, dataset, device)
    return page


def draw_tab(generator, state, name, device):
    config = state['config']
    palette = metrics.PALETTES[name]
    side = config['image_size'] or 256
    starts = {'blank': blank_label_map(name, side), **example_label_maps(config, side)}

    def photo(label_map):
        return visualize.viewable(predict(generator, label_map, config, device))

    def stroke(url):
        label_map = parse_drawing(url, side)
        if label_map is None:
            raise gr.Error(f'the drawing did not arrive as a {side}x{side} PNG; reload the page',
                           print_exception=False)
        return photo(snap(label_map, palette))

    def start(choice):
        label_map = starts[choice]
        return data_url(label_map), photo(label_map)

    def upload(file):
        label_map = snap(resize_image(visualize.viewable(read_upload(file)), side, side), palette)
        return data_url(label_map), photo(label_map)

    first = next(iter(starts))
    with gr.Tab(f'{name}: draw labels → photo'):
        with gr.Row():
            choice = gr.Dropdown(list(starts), value=first, label='start from', scale=2)
            with gr.Column(scale=1):
                restart = gr.Button('start over')
                upload_button = gr.UploadButton('upload a label map', file_types=['image'])
        with gr.Row(equal_height=False):
            with gr.Column():
                drawing = gr.HTML(data_url(starts[first]), html_template=PAINTER_HTML, css_template=PAINTER_CSS,
                                  js_on_load=PAINTER_JS, elem_id=f'{name}-drawing', side=side, group=name,
                                  classes=[{'name': label, 'colour': '#%02x%02x%02x' % colour,
                                            'checked': 'checked' if label == PEN[name] else ''}
                                           for label, colour in class_colours(palette)])
            output = gr.Image(photo(starts[first]), label='photo', format='png', interactive=False,
                              elem_id=f'{name}-photo', elem_classes='photo')
    # no queue and no spinner: the photo follows the pen; only the latest stroke counts
    drawing.input(stroke, drawing, output, queue=False, show_progress='hidden', trigger_mode='always_last')
    choice.input(start, choice, [drawing, output])
    restart.click(start, choice, [drawing, output])
    upload_button.upload(upload, upload_button, [drawing, output])


def upload_tab(generator, state, name, device):
    config = state['config']
    to_labels = config['direction'] == 'AtoB' and name in metrics.PALETTES
    title = f'{name}: photo → labels' if to_labels else f"{name}: {config['direction']}"

    def translate(file):
        image = read_upload(file, config['input_channels'])  # grey and 16-bit networks are shown as 8-bit RGB
        return visualize.viewable(image), visualize.viewable(predict(generator, image, config, device))

    with gr.Tab(title):
        upload_button = gr.UploadButton('upload a photo' if to_labels else 'upload an image', file_types=['image'])
        with gr.Row():
            given = gr.Image(label='input', format='png', interactive=False, elem_id=f'{name}-given')
            output = gr.Image(label='label map' if to_labels else 'output', format='png', interactive=False,
                              elem_id=f'{name}-translated')
    upload_button.upload(translate, upload_button, [given, output])


# The drawing: a canvas of the label map's own pixels, shown enlarged. Strokes set whole
# pixels to exact class colours (no anti-aliasing, whose blends would be no class), and the
# rectangle tool fills the box between where the pointer went down and where it came up.
# The server's label maps (a start, an upload) arrive as the hidden image's source. The
# choices are radio buttons, whose state survives the template's re-render on a new value;
# their group names carry the dataset, as all drawings' radio buttons share one document.
PAINTER_HTML = """
<div class="classes">{{#each classes}}<label><input type="radio" name="{{../group}}-class" value="{{colour}}"
  {{checked}}><span style="background: {{colour}}"></span>{{name}}</label>{{/each}}</div>
<div class="tools">
  <label><input type="radio" name="{{group}}-tool" value="brush" checked> brush</label>
  <label><input type="radio" name="{{group}}-tool" value="rectangle"> filled rectangle</label>
  <label>brush radius <input type="range" class="radius" min="1" max="24" value="4"></label>
  <button type="button" class="undo">undo</button>
</div>
<canvas width="{{side}}" height="{{side}}"></canvas>
<img class="source" src="${value}" alt="" hidden>
"""

PAGE_CSS = '.photo img { width: 512px; max-width: 100%; height: auto; object-fit: contain; }'  # as large as the drawing

PAINTER_CSS = """
.classes { display: flex; flex-wrap: wrap; gap: 4px; margin-bottom: 6px; }
.classes label { display: flex; align-items: center; gap: 4px; padding: 2px 6px; border: 2px solid transparent;
  border-radius: 4px; cursor: pointer; font-size: 13px; }
.classes label:has(input:checked) { border-color: currentColor; }
.classes input { position: absolute; opacity: 0; }
.classes span { width: 14px; height: 14px; border: 1px solid #0003; }
.tools { display: flex; flex-wrap: wrap; gap: 12px; align-items: center; margin-bottom: 6px; font-size: 13px; }
.tools button { padding: 2px 10px; font-size: 13px; }
canvas { width: 100%; max-width: 512px; aspect-ratio: 1; image-rendering: pixelated; touch-action: none;
  cursor: crosshair; display: block; }
"""

PAINTER_JS = """
const canvas = element.querySelector('canvas');
const context = canvas.getContext('2d', {willReadFrequently: true});
const source = element.querySelector('img.source');
const history = [];
let pixels = null, drawing = null, sent = null;

function chosen(kind) { return element.querySelector(`.${kind} input:checked`).value; }
function colour() { const hex = chosen('classes'); return [1, 3, 5].map(i => parseInt(hex.slice(i, i + 2), 16)); }
function show() {
  if (!source.complete || !source.naturalWidth || source.src === sent) return;
  context.drawImage(source, 0, 0);
  pixels = context.getImageData(0, 0, canvas.width, canvas.height);
}
function send() {
  context.putImageData(pixels, 0, 0);
  sent = canvas.toDataURL('image/png');
  props.value = sent;
  trigger('input');
}
function at(event) {  // the label map pixel under the pointer
  const box = canvas.getBoundingClientRect();
  const clamp = v => Math.min(canvas.width - 1, Math.max(0, Math.floor(v)));
  return [clamp((event.clientX - box.left) * canvas.width / box.width),
          clamp((event.clientY - box.top) * canvas.height / box.height)];
}
function fill(x0, y0, x1, y1, target) {
  const rgb = colour();
  for (let y = Math.min(y0, y1); y <= Math.max(y0, y1); y++)
    for (let x = Math.min(x0, x1); x <= Math.max(x0, x1); x++) target.data.set(rgb, 4 * (y * canvas.width + x));
}
function disc(cx, cy) {
  const r = Number(element.querySelector('.radius').value), rgb = colour();
  for (let y = Math.max(0, cy - r + 1); y <= Math.min(canvas.height - 1, cy + r - 1); y++)
    for (let x = Math.max(0, cx - r + 1); x <= Math.min(canvas.width - 1, cx + r - 1); x++)
      if ((x - cx) ** 2 + (y - cy) ** 2 < r * r) pixels.data.set(rgb, 4 * (y * canvas.width + x));
}
function line([x0, y0], [x1, y1]) {
  const steps = Math.max(Math.abs(x1 - x0), Math.abs(y1 - y0), 1);
  for (let i = 0; i <= steps; i++) disc(Math.round(x0 + (x1 - x0) * i / steps), Math.round(y0 + (y1 - y0) * i / steps));
}

element.querySelector('.undo').addEventListener('click', () => {
  if (history.length) { pixels = history.pop(); send(); }
});
canvas.addEventListener('pointerdown', event => {
  if (!pixels) return;
  canvas.setPointerCapture(event.pointerId);
  history.push(new ImageData(new Uint8ClampedArray(pixels.data), canvas.width, canvas.height));
  if (history.length > 50) history.shift();
  drawing = {start: at(event), last: at(event), before: history[history.length - 1]};
  if (chosen('tools') === 'brush') { disc(...drawing.start); context.putImageData(pixels, 0, 0); }
});
canvas.addEventListener('pointermove', event => {
  if (!drawing) return;
  const point = at(event);
  if (chosen('tools') === 'brush') { line(drawing.last, point); context.putImageData(pixels, 0, 0); }
  else {  // a preview of the box; the label map changes when the pointer comes up
    const preview = new ImageData(new Uint8ClampedArray(drawing.before.data), canvas.width, canvas.height);
    fill(...drawing.start, ...point, preview);
    context.putImageData(preview, 0, 0);
  }
  drawing.last = point;
});
function finish(event) {  // a cancelled touch keeps the box as far as it went
  if (!drawing) return;
  const end = event.type === 'pointerup' ? at(event) : drawing.last;
  if (chosen('tools') === 'rectangle') fill(...drawing.start, ...end, pixels);
  drawing = null;
  send();
}
canvas.addEventListener('pointerup', finish);
canvas.addEventListener('pointercancel', finish);
source.addEventListener('load', show);
show();
"""


def main():
    parser = argparse.ArgumentParser(description='A local page to draw label maps on and see the photo a '
                                                 'checkpoint makes of them, or to translate uploaded images.')
    parser.add_argument('checkpoints', nargs='*',
                        help='.pth files written by train.py, one per dataset and kind of tab: a label map -> '
                             'photo network gets a drawing tab with its dataset\'s classes, any other an upload tab '
                             '(default: those of pretrained/{facades,cityscapes}_{labels2photo,photo2labels}.pth '
                             'that are there)')
    parser.add_argument('--port', type=int, default=7860, help='port of the page (default: 7860)')
    parser.add_argument('--host', default='127.0.0.1',
                        help='address to serve on (default: 127.0.0.1, this machine only; 0.0.0.0 for your network)')
    parser.add_argument('--device', default='auto', help="as train.py's device setting: auto (CUDA, else MPS, "
                                                         "else the CPU), cpu, cuda, cuda:1, mps")
    args = parser.parse_args()
    paths = args.checkpoints or [path for path in PRETRAINED if Path(path).exists()] or PRETRAINED[:1]
    device = pick_device(args.device)
    models = load(paths, device)
    if gr is None:
        raise UserError('the demo needs gradio: pip install -r requirements-demo.txt')
    page = build(models, device)
    try:
        page.launch(server_name=args.host, server_port=args.port, share=False, inbrowser=False, quiet=True,
                    max_file_size=MAX_FILE_SIZE, show_error=True, css=PAGE_CSS, prevent_thread_lock=True)
    except OSError as error:  # gradio's own text names its settings, not this script's flags
        reason = 'the port is in use' if 'empty port' in str(error) else str(error).splitlines()[0]
        raise UserError(f'cannot serve on {args.host}:{args.port}: {reason}; choose another with --port') from None
    print(f'demo: open {page.local_url} (Ctrl-C stops it)', flush=True)
    page.block_thread()


if __name__ == '__main__':
    cli(main)
