"""A generator as an ONNX file, to run it outside PyTorch: written by export.py,
run in ONNX Runtime by predict.py (both need requirements-onnx.txt).

The file takes and gives what the PyTorch generator does: float32 (N, C, H, W)
in [-1, 1] (C: the run's input_channels in, output_channels out; 3 for RGB), any
batch and any sides the network can take (multiples of 16 for fcn, of 256 for
unet256). The run's settings that using it needs travel in its metadata as JSON
under the key 'pix2pix', as a checkpoint carries its config, so predict.py
resizes each image as it does for the .pth.
"""
import io
import json
from pathlib import Path

import torch

import checkpoint
from errors import UserError
from files import atomic_write
from FCN_network import GENERATORS, channels_of

SETTINGS_KEY = 'pix2pix'
INSTALL = 'pip install -r requirements-onnx.txt'
OPSET = 17  # every onnxruntime that requirements-onnx.txt allows runs it
DYNAMIC = {0: 'batch', 2: 'height', 3: 'width'}


def settings_of(config):
    """What using the network needs from a run's config, and what it is and was trained
    on (the data set by its name: a shared file need not show the folders it came from):
    what a .pth from export.py holds."""
    return checkpoint.inference_config(config)


def export(generator, config, epoch, path):
    """Write generator as ONNX at path: in eval mode (BatchNorm's running statistics,
    no dropout), batch, height and width dynamic, the settings in its metadata."""
    try:
        import onnx
    except ImportError:
        raise UserError(f'writing ONNX needs the onnx package: {INSTALL}') from None
    side = GENERATORS[config['model']].side_multiple
    channels = channels_of(config)
    buffer = io.BytesIO()
    # the TorchScript exporter: one self-contained file, in a fraction of a second, in every torch
    # that requirements-onnx.txt allows; torch.export's (dynamo=True, the default from 2.9) also
    # matches to 1e-7 but needs onnxscript, takes seconds and writes the weights to a second file
    torch.onnx.export(generator.eval(), (torch.zeros(1, channels[0], side, side),), buffer, dynamo=False,
                      opset_version=OPSET, input_names=['input'], output_names=['output'],
                      dynamic_axes={'input': DYNAMIC, 'output': DYNAMIC})
    model = onnx.load_from_string(buffer.getvalue())
    onnx.helper.set_model_props(model, {SETTINGS_KEY: json.dumps({'epoch': epoch, 'config': settings_of(config)})})
    model.doc_string = (f'pix2pix generator {config["model"]} ({config["direction"]}): input float32 '
                        f'(N, {channels[0]}, H, W), output (N, {channels[1]}, H, W), in [-1, 1], '
                        f'H and W multiples of {side}')
    atomic_write(path, model.SerializeToString())


class OnnxGenerator:
    """An ONNX file from `export` in ONNX Runtime on the CPU, called as the PyTorch
    generator is (a float batch in [-1, 1] in, the same out), so that
    translate.predict runs it unchanged: the same resizing and rounding as the .pth.
    .config and .epoch: the run's settings from the file's metadata."""

    def __init__(self, path, threads=0):
        try:
            import onnxruntime
        except ImportError:
            raise UserError(f'{path}: running an ONNX file needs onnxruntime: {INSTALL}') from None
        path = Path(path)
        if not path.is_file():
            raise UserError(f'{path}: no such ONNX file')
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads  # 0: ONNX Runtime's choice, one per physical core
        options.log_severity_level = 3  # errors only: its warnings are about graph optimisations
        try:
            self.session = onnxruntime.InferenceSession(str(path), options, providers=['CPUExecutionProvider'])
        except Exception as error:  # a damaged or foreign file fails in many ways inside ONNX Runtime
            message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise UserError(f'{path}: not a readable ONNX file ({message[:200]})') from None
        metadata = self.session.get_modelmeta().custom_metadata_map
        if SETTINGS_KEY not in metadata:
            raise UserError(f'{path}: an ONNX file without the settings of a run of this repo; '
                            f'write one with python export.py CHECKPOINT {path.name}')
        saved = json.loads(metadata[SETTINGS_KEY])
        # files written before the channel settings existed: RGB to RGB, 8 bits
        self.config, self.epoch = {**checkpoint.OLD_DEFAULTS, **saved['config']}, saved['epoch']

    def __call__(self, images):
        (output,) = self.session.run(None, {'input': images.detach().cpu().float().contiguous().numpy()})
        return torch.from_numpy(output)
