"""From whatever the caller holds to the network's 224x224 input, and back (docs/method.md §2 and §8).

The authors' evaluation code resizes the shorter side to 256, center-crops
224 and feeds RGB with ImageNet mean/std. This module does the same on
OpenCV: `load_image` turns arrays, paths and encoded bytes into one BGR
uint8 image, `resize_and_crop` makes the network input and a
`CropTransform` that maps patch boxes back onto the caller's image, and
`normalize` makes the float tensor. Every bad input raises `InputError`.

The pipeline's own path skips the RGB copy: `crop_bgr` leaves the crop a view
of the caller's BGR pixels where no resize is needed, and `normalize(...,
bgr=True)` reads its channels in reverse while it writes the floats. Right
after a model run every fresh allocation and copy costs several times what
it costs warm, and the RGB copy, the stacked batch and the transposed copy
were three of them (docs/decisions/024-one-patch-preset.md measures the
saving).
"""

import os
from collections.abc import Sequence
from typing import NamedTuple

import cv2
import numpy as np

from anchor_edge.checks import positive_int
from anchor_edge.errors import InputError

ImageLike = np.ndarray | str | os.PathLike[str] | bytes

# Encoded images that declare more pixels than this are refused before decoding, so
# a decompression bomb (a small file declaring a huge image) cannot exhaust memory.
# Same bound as Pillow's DecompressionBombError (2 x Image.MAX_IMAGE_PIXELS).
MAX_DECODED_PIXELS = 178_956_970

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_SOI = b"\xff\xd8"
# JPEG marker codes (the byte after 0xFF): end of image, start of scan, start-of-frame
# (carries the size; C4, C8 and CC are other segments), and those without a length field.
_JPEG_EOI, _JPEG_SOS = 0xD9, 0xDA
_JPEG_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_STANDALONE_MARKERS = frozenset(range(0xD0, 0xD9)) | {0x01}


def load_image(image: ImageLike) -> np.ndarray:
    """Read an image into an H x W x 3 uint8 BGR array (OpenCV channel order).

    Accepted:
        * numpy arrays in OpenCV channel order: H x W x 3 uint8 BGR is
          returned as is (not copied when already contiguous); H x W or
          H x W x 1 grey is replicated to BGR; H x W x 4 BGRA loses its alpha
          channel (the pixels are kept as stored, not blended onto a
          background). uint16 arrays become uint8 by rounding value / 257,
          which maps 0..65535 exactly onto 0..255.
        * a path (str or os.PathLike) to an image file, or the file's bytes:
          decoded by OpenCV with IMREAD_UNCHANGED (so 16-bit, grey and BGRA
          PNGs work), then converted as above. EXIF orientation is not
          applied, as with PIL's Image.open in the authors' code.

    Refused with InputError: any other dtype (float, bool, int64: convert to
    uint8 first), empty arrays, arrays that are not 2-D or 3-D with 1, 3 or 4
    channels, missing or unreadable files, empty bytes, bytes OpenCV cannot
    decode, PNG or JPEG data declaring more than MAX_DECODED_PIXELS pixels,
    and truncated JPEG data (it ends before its end-of-image marker: OpenCV
    4 would return the image with the missing part grey, OpenCV 5 refuses
    it; we refuse it on both, as Pillow does by default).

    Example:
        >>> load_image(np.zeros((2, 3), np.uint8)).shape
        (2, 3, 3)
    """
    if isinstance(image, np.ndarray):
        return _to_bgr_uint8(image, "image array")
    if isinstance(image, (str, os.PathLike)):
        path = os.fspath(image)
        try:
            with open(path, "rb") as file:
                data = file.read()
        except OSError as error:
            raise InputError(f"cannot read image file {path!r}: {error.strerror or error}") from error
        return _decode(data, f"image file {path!r}")
    if isinstance(image, bytes):
        return _decode(image, "image bytes")
    raise InputError(
        f"cannot read an image from a {type(image).__name__}; pass a numpy array "
        "(H x W x 3 uint8 BGR), a file path, or the encoded file's bytes"
    )


class CropTransform(NamedTuple):
    """Maps network-input (crop) pixel coordinates back to the caller's image.

    A pixel edge x in the crop lies at x * scale + offset_x in the original
    image, and y at y * scale + offset_y (edges, not pixel centres: crop
    pixel 0 spans [0, 1) and maps to [offset_x, offset_x + scale)).
    """

    scale: float  # original pixels per crop pixel: m / resize_short, m = min(H, W)
    offset_x: float  # original x of the crop's left edge
    offset_y: float  # original y of the crop's top edge
    image_width: int  # the original image's size, for clipping
    image_height: int

    def to_original(self, boxes: np.ndarray) -> np.ndarray:
        """Map (n, 4) crop boxes [x0, y0, x1, y1) to float boxes in original pixels, clipped to the image."""
        crop_boxes = np.asarray(boxes, dtype=np.float64)
        if crop_boxes.ndim != 2 or crop_boxes.shape[1] != 4:
            raise InputError(f"boxes must have shape (n, 4) as [x0, y0, x1, y1], got {crop_boxes.shape}")
        original = crop_boxes * self.scale + [self.offset_x, self.offset_y, self.offset_x, self.offset_y]
        limits = [self.image_width, self.image_height, self.image_width, self.image_height]
        return np.clip(original, 0.0, limits)


def resize_and_crop(
    image_bgr: np.ndarray, resize_short: int = 256, crop: int = 224
) -> tuple[np.ndarray, CropTransform]:
    """Make the network input: shorter side to `resize_short`, centre crop `crop`, RGB.

    `crop_bgr` then BGR to RGB: a new contiguous crop x crop x 3 array.

    Returns:
        (crop x crop x 3 uint8 RGB array, CropTransform back to image_bgr).

    Example:
        >>> rgb, back = resize_and_crop(np.zeros((512, 1024, 3), np.uint8))
        >>> rgb.shape, back.scale, back.offset_x, back.offset_y
        ((224, 224, 3), 2.0, 288.0, 32.0)
    """
    bgr, transform = crop_bgr(image_bgr, resize_short, crop)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), transform


def crop_bgr(image_bgr: np.ndarray, resize_short: int = 256, crop: int = 224) -> tuple[np.ndarray, CropTransform]:
    """The network input's pixels in BGR: shorter side to `resize_short`, centre crop `crop`.

    How (docs/method.md §8): take the central m x m square of the
    image, m = min(H, W), at offset ((W - m) // 2, (H - m) // 2); resize it
    to resize_short x resize_short (cv2.INTER_AREA when shrinking, which
    approximates the anti-aliased bilinear resize of PIL in the authors'
    code; cv2.INTER_LINEAR when enlarging); cut the central crop x crop
    square at offset (resize_short - crop) // 2; the pixels stay BGR
    (`resize_and_crop` converts them to RGB).

    Why: this equals "resize the shorter side to 256, centre-crop 224" up to
    sub-pixel rounding of the long side, because the long side's far ends
    are cropped away anyway. Resizing only the square allocates nothing
    beyond one resize_short x resize_short x 3 square, whatever the aspect
    ratio, so a 1 x 1 image and a 10000 x 10 strip both work.

    Args:
        image_bgr: H x W x 3 uint8 BGR image (see `load_image`).
        resize_short: side of the resized square (256 in the paper).
        crop: side of the network input (224), at most resize_short.

    Returns:
        (crop x crop x 3 uint8 BGR array, CropTransform back to image_bgr). The
        array is a view of `image_bgr` when its square needed no resize: read it,
        do not write to it.

    Example:
        >>> image = np.zeros((256, 300, 3), np.uint8)
        >>> bgr, back = crop_bgr(image)
        >>> bgr.shape, np.shares_memory(bgr, image), back.offset_x
        ((224, 224, 3), True, 38.0)
    """
    if not isinstance(image_bgr, np.ndarray):
        raise InputError(f"the image to crop must be a numpy array, got a {type(image_bgr).__name__}; use load_image")
    if image_bgr.dtype != np.uint8 or image_bgr.ndim != 3 or image_bgr.shape[2] != 3 or image_bgr.size == 0:
        raise InputError(
            f"the image to crop must be a non-empty H x W x 3 uint8 BGR array, got shape {image_bgr.shape} "
            f"dtype {image_bgr.dtype}; use load_image"
        )
    positive_int("resize_short", resize_short)
    positive_int("crop", crop)
    if crop > resize_short:
        raise InputError(f"crop ({crop}) must not exceed resize_short ({resize_short})")

    height, width = image_bgr.shape[:2]
    side = min(height, width)
    square_x, square_y = (width - side) // 2, (height - side) // 2
    square = image_bgr[square_y : square_y + side, square_x : square_x + side]
    if side != resize_short:
        interpolation = cv2.INTER_AREA if side > resize_short else cv2.INTER_LINEAR
        square = cv2.resize(square, (resize_short, resize_short), interpolation=interpolation)
    start = (resize_short - crop) // 2
    bgr = square[start : start + crop, start : start + crop]

    scale = side / resize_short
    transform = CropTransform(
        scale=scale,
        offset_x=square_x + start * scale,
        offset_y=square_y + start * scale,
        image_width=width,
        image_height=height,
    )
    return bgr, transform


def normalize(
    images: np.ndarray | Sequence[np.ndarray], mean: Sequence[float], std: Sequence[float], *, bgr: bool = False
) -> np.ndarray:
    """Make the network's float input: (pixel - mean) / std per channel, channels first.

    Each channel plane is converted, shifted and scaled where it lies in the
    output, so the pixels are read once and the only array made is the
    result (module docstring); the arithmetic is float32 (pixel - mean) /
    std, one element at a time, whatever the layout.

    Args:
        images: (N, H, W, 3) or (H, W, 3) uint8, or a sequence of (H, W, 3)
            uint8 arrays of one size (views of the callers' images welcome);
            RGB, or BGR with `bgr=True`.
        mean, std: three per-channel values in RGB order and 0-255 pixel
            units (ImageNet: mean 123.675, 116.28, 103.53; std 58.395,
            57.12, 57.375).
        bgr: the images' channels are in BGR order; the output is RGB all the same.

    Returns:
        (N, 3, H, W) float32 RGB, contiguous (N = 1 for a single image).

    Example:
        >>> normalize(np.full((1, 1, 3), 10, np.uint8), [0, 5, 10], [2, 5, 1])[:, :, 0, 0]
        array([[5., 1., 0.]], dtype=float32)
    """
    batch = images[np.newaxis] if isinstance(images, np.ndarray) and images.ndim == 3 else images
    shapes = {np.shape(image) for image in batch} or {np.shape(batch)[1:]}
    dtypes = {np.asarray(image).dtype for image in batch} or {np.asarray(batch).dtype}
    shape = next(iter(shapes))
    if len(shapes) != 1 or dtypes != {np.dtype(np.uint8)} or len(shape) != 3 or shape[2] != 3:
        raise InputError(
            f"normalize needs (N, H, W, 3) or (H, W, 3) uint8 images of one size, got shapes {sorted(shapes)} "
            f"dtypes {sorted(str(d) for d in dtypes)}"
        )
    mean_values = np.asarray(mean, dtype=np.float32)
    std_values = np.asarray(std, dtype=np.float32)
    if mean_values.shape != (3,) or std_values.shape != (3,):
        raise InputError(f"mean and std need three values (R, G, B), got {list(mean)} and {list(std)}")
    if not (np.isfinite(mean_values).all() and np.isfinite(std_values).all() and (std_values > 0).all()):
        raise InputError(f"mean must be finite and std finite and positive, got {list(mean)} and {list(std)}")
    floats = np.empty((len(batch), 3, shape[0], shape[1]), np.float32)
    sources = (2, 1, 0) if bgr else (0, 1, 2)
    for index, image in enumerate(batch):
        for channel, source in enumerate(sources):
            plane = floats[index, channel]
            plane[...] = image[:, :, source]
            plane -= mean_values[channel]
            plane /= std_values[channel]
    return floats


def _decode(data: bytes, source: str) -> np.ndarray:
    """Decode an encoded image with OpenCV, refusing what would be unsafe or wrong."""
    if not data:
        raise InputError(f"{source} is empty (0 bytes)")
    complete = True
    if data.startswith(_JPEG_SOI):
        declared, complete = _jpeg_header(data)
    else:
        declared = _declared_size(data)
    if declared is not None and declared[0] * declared[1] > MAX_DECODED_PIXELS:
        raise InputError(
            f"{source} declares {declared[0]} x {declared[1]} pixels, more than the "
            f"{MAX_DECODED_PIXELS} pixels anchor-edge decodes; downscale it first"
        )
    if not complete:
        raise InputError(f"{source} is a truncated JPEG (it ends before its end-of-image marker)")
    try:
        decoded = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as error:
        raise InputError(f"OpenCV cannot decode {source}: {error}") from error
    if decoded is None:
        raise InputError(f"OpenCV cannot decode {source}: not an image format it reads, or corrupt data")
    return _to_bgr_uint8(decoded, source)


def _to_bgr_uint8(pixels: np.ndarray, source: str) -> np.ndarray:
    """Bring grey, BGR or BGRA pixels of 8 or 16 bits to contiguous H x W x 3 uint8 BGR."""
    if pixels.size == 0:
        raise InputError(f"{source} is empty (shape {pixels.shape})")
    if pixels.dtype == np.uint16:
        pixels = ((pixels.astype(np.uint32) + 128) // 257).astype(np.uint8)  # round(value / 257)
    elif pixels.dtype != np.uint8:
        raise InputError(
            f"{source} has dtype {pixels.dtype}; anchor-edge reads uint8 (or uint16) pixels: "
            "convert it, e.g. np.clip(x * 255, 0, 255).astype(np.uint8) for floats in [0, 1]"
        )
    channels = 1 if pixels.ndim == 2 else (pixels.shape[2] if pixels.ndim == 3 else None)
    if channels == 1:
        return cv2.cvtColor(pixels.reshape(pixels.shape[:2]), cv2.COLOR_GRAY2BGR)
    if channels == 3:
        return np.ascontiguousarray(pixels)
    if channels == 4:
        return cv2.cvtColor(pixels, cv2.COLOR_BGRA2BGR)
    raise InputError(f"{source} has shape {pixels.shape}; expected H x W (grey), H x W x 3 (BGR) or H x W x 4 (BGRA)")


def _declared_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) a PNG's header declares, or None for other data."""
    if data.startswith(_PNG_SIGNATURE) and len(data) >= 24 and data[12:16] == b"IHDR":
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    return None


def _jpeg_header(data: bytes) -> tuple[tuple[int, int] | None, bool]:
    """Walk a JPEG's markers: ((width, height) or None, whether the image is complete).

    Segments before the first scan are skipped by their length, so an EXIF
    thumbnail (a whole JPEG inside APP1) is never mistaken for the image.
    Complete means the image's end-of-image marker follows its scans; data
    after it (e.g. the video of a phone's motion photo) is ignored. Data
    that is not laid out as a JPEG reports complete and is left to OpenCV.
    """
    size = None
    position = 2
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            return size, True
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte before a marker
            position += 1
            continue
        if marker == _JPEG_EOI:
            return size, True
        if marker in _JPEG_STANDALONE_MARKERS:
            position += 2
            continue
        segment_end = position + 2 + int.from_bytes(data[position + 2 : position + 4], "big")
        if marker in _JPEG_SOF_MARKERS and position + 9 <= len(data):
            height = int.from_bytes(data[position + 5 : position + 7], "big")
            size = int.from_bytes(data[position + 7 : position + 9], "big"), height
        if marker == _JPEG_SOS:
            return size, _scans_end_in(data, segment_end)
        position = segment_end
    return size, False


def _scans_end_in(data: bytes, scan_start: int) -> bool:
    """Whether an end-of-image marker follows the scan data that starts at scan_start.

    Inside scan data 0xFF is followed only by 0x00 (a stuffed byte), a
    restart marker 0xD0-0xD7 or fill 0xFF, so any other 0xFF pair is a real
    marker: end of image, or a segment (tables, the next progressive scan)
    to skip by its length.
    """
    pixels = np.frombuffer(data, dtype=np.uint8)
    following = pixels[1:]
    is_marker = (
        (pixels[:-1] == 0xFF) & (following != 0x00) & (following != 0xFF) & ((following < 0xD0) | (following > 0xD7))
    )
    markers = np.flatnonzero(is_marker)
    position = scan_start
    while True:
        index = int(np.searchsorted(markers, position))
        if index == len(markers):
            return False
        position = int(markers[index])
        if data[position + 1] == _JPEG_EOI:
            return True
        position += 2 + int.from_bytes(data[position + 2 : position + 4], "big")
