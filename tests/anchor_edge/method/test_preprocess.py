"""Loading, resize-and-crop, the crop's inverse and normalization (docs/method.md §8) on real photos.

skimage's bundled photos are the test images (a test-only dependency); every
encoded fixture is made here with OpenCV at run time.
"""

import pathlib

import cv2
import numpy as np
import pytest
import skimage.data

from anchor_edge.errors import InputError
from anchor_edge.method.preprocess import (
    MAX_DECODED_PIXELS,
    CropTransform,
    crop_bgr,
    load_image,
    normalize,
    resize_and_crop,
)

PHOTOS = {  # name -> (height, width)
    "astronaut": (512, 512),
    "coffee": (400, 600),
    "chelsea": (300, 451),
}


def _photo_bgr(name):
    return np.ascontiguousarray(getattr(skimage.data, name)()[:, :, ::-1])


def _encode(extension, pixels, params=()):
    ok, encoded = cv2.imencode(extension, pixels, list(params))
    assert ok
    return encoded.tobytes()


@pytest.fixture(scope="module")
def chelsea_bgr():
    return _photo_bgr("chelsea")


# --- resize_and_crop ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(PHOTOS))
def test_crop_matches_resizing_the_whole_image(name):
    """The central-square shortcut against the plain method: resize all of it, then crop."""
    bgr = _photo_bgr(name)
    assert bgr.shape[:2] == PHOTOS[name]
    rgb, _ = resize_and_crop(bgr)
    assert rgb.shape == (224, 224, 3) and rgb.dtype == np.uint8 and rgb.flags.c_contiguous

    height, width = bgr.shape[:2]
    short = min(height, width)
    new_width, new_height = round(width * 256 / short), round(height * 256 / short)
    whole = cv2.resize(bgr, (new_width, new_height), interpolation=cv2.INTER_AREA)
    top, left = (new_height - 224) // 2, (new_width - 224) // 2
    expected = whole[top : top + 224, left : left + 224, ::-1].astype(float)
    assert np.abs(rgb - expected).mean() < 2.0


def test_shrinking_averages_instead_of_sampling():
    # A 1-px checkerboard shrunk 3x: area averaging gives 4 or 5 white pixels of 9
    # (113 or 142) everywhere, like PIL's anti-aliased resize; sampling would alias
    # to pure 0 / 255.
    board = (np.indices((768, 768)).sum(axis=0) % 2 * 255).astype(np.uint8)
    rgb, _ = resize_and_crop(np.dstack([board] * 3))
    assert set(np.unique(rgb).tolist()) <= {113, 142}


def test_crop_of_a_square_image_is_its_centre_in_rgb():
    # 256 x 256 needs no resize: the crop is rows and columns 16..239, channels swapped.
    bgr = np.random.default_rng(0).integers(0, 256, size=(256, 256, 3), dtype=np.uint8)
    rgb, transform = resize_and_crop(bgr)
    np.testing.assert_array_equal(rgb, bgr[16:240, 16:240, ::-1])
    assert transform == CropTransform(1.0, 16.0, 16.0, 256, 256)


def test_crop_bgr_is_a_view_when_nothing_is_resized_and_the_rgb_crop_reversed_when_something_is():
    bgr = np.random.default_rng(1).integers(0, 256, size=(256, 300, 3), dtype=np.uint8)
    view, transform = crop_bgr(bgr)
    # m = 256, square at x (300 - 256) // 2 = 22, crop 16 px into it: columns 38..261, rows 16..239.
    assert np.shares_memory(view, bgr) and transform == CropTransform(1.0, 38.0, 16.0, 300, 256)
    np.testing.assert_array_equal(view, bgr[16:240, 38:262])
    chelsea = _photo_bgr("chelsea")  # 300 x 451: resized, so a new array
    resized, _ = crop_bgr(chelsea)
    assert not np.shares_memory(resized, chelsea)
    np.testing.assert_array_equal(resized[:, :, ::-1], resize_and_crop(chelsea)[0])


def test_to_original_by_hand_on_a_512_by_1024_image():
    # H = 512, W = 1024: m = 512, scale 512 / 256 = 2; square at x (1024 - 512) // 2 = 256;
    # crop starts (256 - 224) // 2 = 16 px into the resized square = 32 original px.
    # offset_x = 256 + 32 = 288, offset_y = 0 + 32 = 32.
    _, transform = resize_and_crop(np.zeros((512, 1024, 3), np.uint8))
    assert transform == CropTransform(2.0, 288.0, 32.0, 1024, 512)
    # Box [8, 16, 71, 79): x 8*2 + 288 = 304, 71*2 + 288 = 430; y 16*2 + 32 = 64, 79*2 + 32 = 190.
    np.testing.assert_array_equal(transform.to_original(np.array([[8, 16, 71, 79]])), [[304, 64, 430, 190]])


def test_whole_crop_maps_to_the_central_seven_eighths_square():
    # Chelsea 300 x 451: m = 300, 224/256 = 0.875 of it is 262.5 px, centred in the
    # central square at x 75: x from 75 + 18.75 = 93.75 to 356.25, y from 18.75 to 281.25.
    _, transform = resize_and_crop(_photo_bgr("chelsea"))
    np.testing.assert_allclose(transform.to_original(np.array([[0, 0, 224, 224]])), [[93.75, 18.75, 356.25, 281.25]])


def test_to_original_clips_to_the_image_and_keeps_an_empty_set_empty():
    _, transform = resize_and_crop(np.zeros((300, 451, 3), np.uint8))
    np.testing.assert_array_equal(transform.to_original(np.array([[-500, -500, 1000, 1000]])), [[0, 0, 451, 300]])
    assert transform.to_original(np.zeros((0, 4))).shape == (0, 4)
    with pytest.raises(InputError, match="shape"):
        transform.to_original(np.zeros((2, 3)))


def test_one_pixel_image_becomes_a_uniform_crop():
    rgb, transform = resize_and_crop(load_image(_encode(".png", np.array([[[10, 20, 30]]], np.uint8))))
    assert rgb.shape == (224, 224, 3)
    assert (rgb == [30, 20, 10]).all()
    assert transform.scale == 1 / 256


def test_tall_strip_uses_its_central_square():
    # 10000 x 10: m = 10, the square is rows (10000 - 10) // 2 = 4995 .. 5004.
    strip = np.zeros((10000, 10, 3), np.uint8)
    strip[4995:5005] = 200
    rgb, transform = resize_and_crop(load_image(_encode(".png", strip)))
    assert rgb.shape == (224, 224, 3) and (rgb == 200).all()
    # scale 10/256; the crop starts 16 resized px = 0.625 original px into the square.
    assert transform == CropTransform(10 / 256, 0.625, 4995.625, 10, 10000)


@pytest.mark.parametrize(
    "bad", [np.zeros((4, 4), np.uint8), np.zeros((4, 4, 3), np.float32), np.zeros((0, 4, 3), np.uint8), [[0, 0, 0]]]
)
def test_resize_and_crop_needs_bgr_uint8(bad):
    with pytest.raises(InputError, match="load_image"):
        resize_and_crop(bad)


def test_crop_larger_than_resize_is_an_input_error():
    with pytest.raises(InputError, match="crop"):
        resize_and_crop(np.zeros((8, 8, 3), np.uint8), resize_short=200, crop=224)


# --- load_image: arrays -------------------------------------------------------------------------


def test_bgr_uint8_passes_through(chelsea_bgr):
    assert load_image(chelsea_bgr) is chelsea_bgr


def test_non_contiguous_bgr_becomes_contiguous(chelsea_bgr):
    view = chelsea_bgr[:, ::2]
    loaded = load_image(view)
    assert loaded.flags.c_contiguous
    np.testing.assert_array_equal(loaded, view)


@pytest.mark.parametrize("shape", [(5, 7), (5, 7, 1)])
def test_grey_array_is_replicated_to_three_channels(shape):
    grey = np.arange(35, dtype=np.uint8).reshape(shape)
    loaded = load_image(grey)
    assert loaded.shape == (5, 7, 3)
    for channel in range(3):
        np.testing.assert_array_equal(loaded[:, :, channel], grey.reshape(5, 7))


def test_bgra_array_drops_alpha(chelsea_bgr):
    bgra = np.dstack([chelsea_bgr, np.full(chelsea_bgr.shape[:2], 7, np.uint8)])
    np.testing.assert_array_equal(load_image(bgra), chelsea_bgr)


def test_uint16_rounds_value_over_257():
    # 128/257 = 0.498 -> 0, 129/257 = 0.502 -> 1, 385/257 = 1.498 -> 1, 386/257 = 1.502 -> 2.
    values = np.array([[0, 128, 129, 257, 385, 386, 65535]], np.uint16)
    loaded = load_image(np.dstack([values] * 3))
    assert loaded.dtype == np.uint8
    assert loaded[0, :, 0].tolist() == [0, 0, 1, 1, 1, 2, 255]


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros((0, 0, 3), np.uint8), "empty"),
        (np.zeros((0, 0), np.uint8), "empty"),
        (np.full((4, 4, 3), np.nan), "float64.*uint8"),
        (np.zeros((4, 4, 3), np.float32), "float32.*uint8"),
        (np.zeros((4, 4, 3), np.int64), "int64.*uint8"),
        (np.zeros((4, 4, 3), bool), "bool.*uint8"),
        (np.zeros((4, 4, 2), np.uint8), "shape"),
        (np.zeros((2, 4, 4, 3), np.uint8), "shape"),
        (np.zeros(12, np.uint8), "shape"),
    ],
)
def test_unusable_arrays_are_input_errors(array, message):
    with pytest.raises(InputError, match=message):
        load_image(array)


@pytest.mark.parametrize("thing", [None, [[1, 2, 3]], 3.5, bytearray(b"\x89PNG")])
def test_other_types_are_input_errors(thing):
    with pytest.raises(InputError, match="numpy array"):
        load_image(thing)


# --- load_image: files and bytes ----------------------------------------------------------------


def test_png_round_trips_exactly_from_bytes_str_and_path(chelsea_bgr, tmp_path):
    png = _encode(".png", chelsea_bgr)
    file = tmp_path / "chelsea.png"
    file.write_bytes(png)
    for source in (png, str(file), file):
        np.testing.assert_array_equal(load_image(source), chelsea_bgr)


def test_grey_and_bgra_png_round_trip(chelsea_bgr):
    grey = cv2.cvtColor(chelsea_bgr, cv2.COLOR_BGR2GRAY)
    np.testing.assert_array_equal(load_image(_encode(".png", grey)), np.dstack([grey] * 3))
    bgra = np.dstack([chelsea_bgr, np.arange(chelsea_bgr.shape[1], dtype=np.uint8)[None].repeat(300, 0)])
    np.testing.assert_array_equal(load_image(_encode(".png", bgra)), chelsea_bgr)


def test_sixteen_bit_png_rounds_like_the_array(chelsea_bgr):
    deep = chelsea_bgr.astype(np.uint16) * 257 + np.uint16(100)  # 8-bit value v -> 257v + 100
    loaded = load_image(_encode(".png", deep))
    np.testing.assert_array_equal(loaded, np.round(deep / 257.0).astype(np.uint8))


def test_jpeg_bytes_decode_close_to_the_original(chelsea_bgr):
    loaded = load_image(_encode(".jpg", chelsea_bgr, [cv2.IMWRITE_JPEG_QUALITY, 95]))
    assert loaded.shape == chelsea_bgr.shape
    assert np.abs(loaded.astype(int) - chelsea_bgr).mean() < 3.0


def test_jpeg_with_data_after_its_end_marker_loads(chelsea_bgr):
    # Phone "motion photos" append a video after the JPEG; random bytes that
    # contain start-of-scan pairs must not make it look truncated.
    jpeg = _encode(".jpg", chelsea_bgr)
    trailer = np.random.default_rng(1).bytes(200_000)
    assert b"\xff\xda" in trailer
    np.testing.assert_array_equal(load_image(jpeg + trailer), load_image(jpeg))


@pytest.mark.parametrize(
    "params",
    [
        [],
        [cv2.IMWRITE_JPEG_PROGRESSIVE, 1],
        [cv2.IMWRITE_JPEG_RST_INTERVAL, 4],
    ],
)
@pytest.mark.parametrize("keep", [0.5, 0.9])
def test_truncated_jpeg_is_an_input_error(chelsea_bgr, params, keep):
    """OpenCV 4 decodes these with the missing rows grey, OpenCV 5 refuses them: we always refuse."""
    jpeg = _encode(".jpg", chelsea_bgr, params)
    with pytest.raises(InputError, match="truncated JPEG"):
        load_image(jpeg[: int(len(jpeg) * keep)])


def test_jpeg_missing_only_its_end_marker_is_an_input_error(chelsea_bgr):
    jpeg = _encode(".jpg", chelsea_bgr)
    assert jpeg.endswith(b"\xff\xd9")
    with pytest.raises(InputError, match="truncated JPEG"):
        load_image(jpeg[:-2])


def test_truncated_jpeg_with_a_complete_exif_thumbnail_is_an_input_error(chelsea_bgr):
    # An APP1 segment holding a whole small JPEG (its own end marker) before the image.
    jpeg = _encode(".jpg", chelsea_bgr)
    thumbnail = _encode(".jpg", chelsea_bgr[::8, ::8])
    app1 = b"\xff\xe1" + (2 + 6 + len(thumbnail)).to_bytes(2, "big") + b"Exif\x00\x00" + thumbnail
    with_thumbnail = jpeg[:2] + app1 + jpeg[2:]
    np.testing.assert_array_equal(load_image(with_thumbnail), load_image(jpeg))
    with pytest.raises(InputError, match="truncated JPEG"):
        load_image(with_thumbnail[: len(with_thumbnail) - 1000])


def test_truncated_png_is_an_input_error(chelsea_bgr):
    png = _encode(".png", chelsea_bgr)
    with pytest.raises(InputError, match="cannot decode"):
        load_image(png[: len(png) // 2])


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (np.random.default_rng(2).bytes(5000), "cannot decode"),
        (b"\xff\xd8", "truncated JPEG"),
    ],
)
def test_undecodable_bytes_are_input_errors(data, message):
    with pytest.raises(InputError, match=message):
        load_image(data)


def test_png_declaring_a_giant_image_is_refused_before_decoding():
    # A 54-byte PNG header that declares 20000 x 20000 RGB (1.2 GB once decoded).
    rgb = _encode(".png", np.zeros((1, 1, 3), np.uint8))
    giant = rgb[:16] + (20000).to_bytes(4, "big") + (20000).to_bytes(4, "big") + rgb[24:]
    assert 20000 * 20000 > MAX_DECODED_PIXELS
    with pytest.raises(InputError, match="declares 20000 x 20000 pixels"):
        load_image(giant)


def test_jpeg_declaring_a_giant_image_is_refused_before_decoding(chelsea_bgr):
    jpeg = bytearray(_encode(".jpg", chelsea_bgr))
    frame = jpeg.index(b"\xff\xc0")  # baseline start of frame: FF C0, length, precision, height, width
    assert int.from_bytes(jpeg[frame + 5 : frame + 7], "big") == 300
    jpeg[frame + 5 : frame + 9] = (30000).to_bytes(2, "big") + (40000).to_bytes(2, "big")
    with pytest.raises(InputError, match="declares 40000 x 30000 pixels"):
        load_image(bytes(jpeg))


def test_missing_file_is_an_input_error_naming_it(tmp_path):
    missing = tmp_path / "no_such_image.png"
    with pytest.raises(InputError, match="no_such_image.png"):
        load_image(missing)
    with pytest.raises(InputError, match="cannot read"):
        load_image(str(tmp_path))  # a directory


def test_unsupported_decoded_depth_is_an_input_error(tmp_path):
    # A 32-bit float TIFF decodes to float32, which anchor-edge does not guess at.
    tiff = _encode(".tiff", np.zeros((4, 4, 3), np.float32))
    with pytest.raises(InputError, match="float32"):
        load_image(tiff)


def test_file_path_and_array_give_the_same_crop(chelsea_bgr, tmp_path):
    file = pathlib.Path(tmp_path) / "chelsea.png"
    file.write_bytes(_encode(".png", chelsea_bgr))
    from_file, _ = resize_and_crop(load_image(file))
    from_array, _ = resize_and_crop(load_image(chelsea_bgr))
    np.testing.assert_array_equal(from_file, from_array)


# --- normalize ----------------------------------------------------------------------------------


def test_normalize_by_hand_on_a_2x2_image():
    rgb = np.array(
        [
            [[0, 10, 255], [100, 60, 20]],
            [[50, 50, 50], [255, 0, 5]],
        ],
        np.uint8,
    )
    mean, std = [100.0, 50.0, 5.0], [2.0, 5.0, 10.0]
    out = normalize(rgb, mean, std)
    assert out.shape == (1, 3, 2, 2) and out.dtype == np.float32 and out.flags.c_contiguous
    # R: (0-100)/2 = -50, (100-100)/2 = 0, (50-100)/2 = -25, (255-100)/2 = 77.5
    np.testing.assert_array_equal(out[0, 0], [[-50.0, 0.0], [-25.0, 77.5]])
    # G: (10-50)/5 = -8, (60-50)/5 = 2, (50-50)/5 = 0, (0-50)/5 = -10
    np.testing.assert_array_equal(out[0, 1], [[-8.0, 2.0], [0.0, -10.0]])
    # B: (255-5)/10 = 25, (20-5)/10 = 1.5, (50-5)/10 = 4.5, (5-5)/10 = 0
    np.testing.assert_array_equal(out[0, 2], [[25.0, 1.5], [4.5, 0.0]])


def test_normalize_from_bgr_views_gives_the_same_bits_as_from_the_rgb_batch():
    images = [_photo_bgr(name) for name in ("chelsea", "astronaut", "coffee")]
    rgb = np.stack([resize_and_crop(image)[0] for image in images])
    views = [crop_bgr(image)[0] for image in images]
    mean, std = [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]
    np.testing.assert_array_equal(normalize(views, mean, std, bgr=True), normalize(rgb, mean, std))
    np.testing.assert_array_equal(normalize(np.stack(views), mean, std, bgr=True), normalize(rgb, mean, std))


@pytest.mark.parametrize("bgr", [False, True])
def test_normalize_gives_the_bits_of_float32_arithmetic_for_every_pixel_value_and_a_photo(bgr):
    ramp = np.arange(256, dtype=np.uint8).reshape(16, 16)
    every_value = np.stack([ramp, ramp[::-1], ramp.T], axis=-1)  # each channel holds 0..255 once
    photo = resize_and_crop(_photo_bgr("chelsea"))[0]
    mean, std = [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]
    for rgb in (every_value, photo):
        # The reference: float32 (pixel - mean) / std element by element, channels first.
        expected = (rgb.astype(np.float32) - np.float32(mean)) / np.float32(std)
        image = rgb[..., ::-1] if bgr else rgb
        np.testing.assert_array_equal(normalize(image, mean, std, bgr=bgr)[0], expected.transpose(2, 0, 1))


def test_normalize_refuses_images_of_two_sizes():
    with pytest.raises(InputError, match="one size"):
        normalize([np.zeros((2, 2, 3), np.uint8), np.zeros((3, 3, 3), np.uint8)], [0, 0, 0], [1, 1, 1])


def test_normalize_keeps_the_batch_order():
    batch = np.stack([np.full((2, 3, 3), 10, np.uint8), np.full((2, 3, 3), 30, np.uint8)])
    out = normalize(batch, [10, 10, 10], [1, 2, 4])
    assert out.shape == (2, 3, 2, 3)
    assert (out[0] == 0).all()
    assert (out[1, 0] == 20).all() and (out[1, 1] == 10).all() and (out[1, 2] == 5).all()


@pytest.mark.parametrize(
    ("images", "mean", "std", "message"),
    [
        (np.zeros((2, 2, 3), np.float32), [0, 0, 0], [1, 1, 1], "uint8"),
        (np.zeros((2, 2, 4), np.uint8), [0, 0, 0], [1, 1, 1], "uint8"),
        (np.zeros((2, 2), np.uint8), [0, 0, 0], [1, 1, 1], "uint8"),
        (np.zeros((2, 2, 3), np.uint8), [0, 0], [1, 1, 1], "three values"),
        (np.zeros((2, 2, 3), np.uint8), [0, 0, 0], [1, 0, 1], "positive"),
        (np.zeros((2, 2, 3), np.uint8), [0, np.nan, 0], [1, 1, 1], "finite"),
    ],
)
def test_normalize_refuses_bad_input(images, mean, std, message):
    with pytest.raises(InputError, match=message):
        normalize(images, mean, std)
