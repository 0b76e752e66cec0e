"""One pair's files decoded into one left | right array, whatever the layout.

Each side is read at its own channel count (`read_image`): 1 (grey), 3 (RGB) or
4 (RGBA); channels are RGB everywhere, OpenCV's BGR is converted here. A side
with fewer channels than the other gets zero channels added, so both halves
share one array. 16-bit PNG and TIFF files are read at full depth: a pair with
a 16-bit file is uint16 (its 8-bit side x 257, exactly the same levels), any
other uint8. Each half is resized to image_size (`resize_image`, the one rule
for training data and single images alike), then, for a training set, given a
mirrored border (the room facades_dataset's random crops shift in).
"""
import cv2
import numpy as np

from pairs import DatasetError, parse_image_size


def read_image(path, channels=3):
    """Any image file -> uint8 (H, W, channels), or uint16 for a 16-bit file, RGB(A) or grey:
    3: grey becomes R = G = B, alpha is dropped, CMYK converted; 1: colour becomes grey
    (ITU-R 601 luma); 4: RGBA, and a file without alpha is an error. Raises DatasetError
    naming the file and the problem."""
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as error:
        raise DatasetError(f'{path}: cannot read ({error.strerror or error})') from None
    if data.size == 0:
        raise DatasetError(f'{path}: empty file')
    # OpenCV silently fills the missing part of a cut-off JPEG with grey
    if data[:2].tobytes() == b'\xff\xd8' and not data.tobytes().rstrip(b'\0\r\n ').endswith(b'\xff\xd9'):
        raise DatasetError(f'{path}: truncated JPEG')
    # ANYDEPTH: a 16-bit file stays 16-bit; an 8-bit one decodes exactly as with IMREAD_COLOR alone
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED if channels == 4 else cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH)
    if image is None:
        raise DatasetError(f'{path}: not a readable image')
    if image.dtype not in (np.uint8, np.uint16):
        raise DatasetError(f'{path}: {image.dtype} pixels; 8- and 16-bit images are read')
    if channels == 4:
        found = image.shape[2] if image.ndim == 3 else 1
        if found != 4:
            raise DatasetError(f'{path}: {found} channel{"s" * (found > 1)}, no alpha; a 4-channel side needs '
                               'RGBA files (PNG or TIFF with transparency)')
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA)
    if channels == 1:
        return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)[..., None]
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def to_16_bits(image):
    """uint8 -> uint16 on the same scale: 255 -> 65535, v -> 257 v, exactly."""
    return image.astype(np.uint16) * 257


def resize_image(image, width, height):
    """An (H, W, C) image resized to width x height: INTER_AREA when either side
    shrinks (it averages the pixels it drops instead of aliasing), INTER_LINEAR
    otherwise. Training data and single images (translate.py) go through this one rule."""
    if image.shape[:2] == (height, width):
        return image
    shrinking = width < image.shape[1] or height < image.shape[0]
    resized = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    return resized.reshape(height, width, -1)  # OpenCV drops the axis of a single channel


def decode_pair(files, image_size, pad=0, channels=(3, 3)):
    """A pair's files, (left|right file,) or (A file, B file) -> uint8 (uint16 if either
    is 16-bit) (H + 2 pad, 2 (W + 2 pad), C), the input half left: each half read at its
    count of channels (left, right: see `read_image`), resized to image_size (see
    `parse_image_size`; the native size when 0, which A and B must then share), then
    given a mirrored border of pad pixels. C is the larger count; the other half gets
    zero channels added. Raises DatasetError."""
    if len(files) == 1:
        images = {count: read_image(files[0], count) for count in channels}  # read once when both are equal
        image = images[channels[0]]
        height, width = image.shape[:2]
        if width % 2 or width < 2:
            raise DatasetError(f'{files[0]}: {width}x{height} is not two equal halves side by side (odd width)')
        halves = [image[:, :width // 2], images[channels[1]][:, width // 2:]]
    else:
        image, halves = None, [read_image(path, count) for path, count in zip(files, channels)]
    shape = parse_image_size(image_size)
    for path, side in zip(files[1:], halves[1:]):
        if side.shape[:2] != halves[0].shape[:2] and shape is None:
            raise DatasetError(f'{path}: {side.shape[1]}x{side.shape[0]} differs from {halves[0].shape[1]}x'
                               f'{halves[0].shape[0]} of {files[0]} (set image_size to resize both)')
    shape, resized = shape or halves[0].shape[:2], False
    for i, side in enumerate(halves):
        if side.shape[:2] != shape:
            halves[i], resized = resize_image(side, shape[1], shape[0]), True
    if halves[0].dtype != halves[1].dtype:  # A/ or B/ 16-bit, the other 8-bit: the pair is 16-bit
        halves = [to_16_bits(side) if side.dtype == np.uint8 else side for side in halves]
    if channels[0] != channels[1]:
        halves = [np.pad(side, ((0, 0), (0, 0), (0, max(channels) - side.shape[2]))) for side in halves]
    if pad:
        halves = [cv2.copyMakeBorder(side, pad, pad, pad, pad, cv2.BORDER_REFLECT_101).reshape(
            side.shape[0] + 2 * pad, side.shape[1] + 2 * pad, -1) for side in halves]  # keeps a single channel's axis
    if image is not None and not (pad or resized or channels[0] != channels[1]):
        return image
    return np.concatenate(halves, axis=1)
