"""A trained generator applied to single images of any size: the one path
that predict.py and demo.py share, so the demo shows what predict.py writes."""
import torch

from FCN_network import GENERATORS, generate
from facades_dataset import to_float, to_uint16, to_uint8
from images import resize_image
from pairs import parse_image_size


def network_size(height, width, config):
    """(height, width) the network takes: the training image_size (a square or
    WIDTHxHEIGHT), or with image_size 0 (trained at native size) each side
    rounded to the nearest multiple that the network's downsampling needs."""
    if config['image_size']:
        return parse_image_size(config['image_size'])
    multiple = GENERATORS[config['model']].side_multiple
    return tuple(max(multiple, round(side / multiple) * multiple) for side in (height, width))


@torch.no_grad()
def predict(generator, image, config, device, mirror=False):
    """uint8 or uint16 (H, W, input channels) -> the generator's output (H, W, output
    channels): uint16 when the run's targets were 16-bit (output_bits), else uint8;
    mirror: averaged with the mirrored output of the mirrored input."""
    height, width = image.shape[:2]
    # resize, not reflect-pad: training resized every image to image_size (decode_pair), so
    # resizing shows the network the scale it learned; padding would keep a large photo far
    # bigger than anything it saw and add mirrored borders it never saw
    network_height, network_width = network_size(height, width, config)
    small = resize_image(image, network_width, network_height)
    # to_float, as training and evaluate.py convert their batches: the same floats to the bit
    (batch,) = to_float(torch.from_numpy(small).permute(2, 0, 1)[None, None].to(device))
    pixels = to_uint16 if config.get('output_bits', 8) == 16 else to_uint8
    output = pixels(generate(generator, batch, mirror))[0]
    return resize_image(output, width, height)
