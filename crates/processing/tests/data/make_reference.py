#!/usr/bin/env python3
"""Reference outputs for the pre-processing unit tests, computed with Pillow and numpy.

    python3 -m venv /tmp/refvenv && /tmp/refvenv/bin/pip install numpy==1.26.4 pillow==11.0.0
    /tmp/refvenv/bin/python crates/processing/tests/data/make_reference.py [SHARED_MODELS]

SHARED_MODELS defaults to $QUIVER_SHARED_MODELS, else ../shared/models beside the workspace.
Writes into this script's directory (see reference.md):

- {stem}_crop224.rgb: RGB, shorter side resized to 256 (bilinear), centre crop 224x224;
- {stem}_stretch224.rgb: RGB, plain resize to 224x224 (bilinear);
- chelsea_crop224_bicubic.rgb: as _crop224 with bicubic;
  each raw uint8, row-major HWC (224 * 224 * 3 = 150528 bytes), no header;
- normalise.json: a 2x3 RGB image and its normalised forms (float64 maths).
"""
import json
import os
import pathlib
import sys

import numpy as np
import PIL
from PIL import Image

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[3]
IMAGES = ["chelsea.png", "coffee.png", "grace_hopper.jpg"]
SIZE = 224
SHORTER_SIDE = 256


def shared_models():
    if len(sys.argv) > 1:
        return pathlib.Path(sys.argv[1])
    return pathlib.Path(os.environ.get("QUIVER_SHARED_MODELS", ROOT.parent / "shared" / "models"))


def crop(image, resample):
    """Shorter side to 256, then the centre 224x224 (as examples/client/predict_image.py does)."""
    width, height = image.size
    scale = SHORTER_SIDE / min(width, height)
    image = image.resize((round(width * scale), round(height * scale)), resample)
    width, height = image.size
    left, top = (width - SIZE) // 2, (height - SIZE) // 2
    return image.crop((left, top, left + SIZE, top + SIZE))


def stretch(image, resample):
    return image.resize((SIZE, SIZE), resample)


def save_rgb(image, name):
    pixels = np.asarray(image, dtype=np.uint8)
    assert pixels.shape == (SIZE, SIZE, 3), pixels.shape
    (HERE / name).write_bytes(pixels.tobytes())  # row-major HWC
    return name


def images(shared):
    written = []
    for file_name in IMAGES:
        stem = file_name.rsplit(".", 1)[0]
        image = Image.open(shared / "images" / file_name).convert("RGB")
        written.append((file_name, image.size, save_rgb(crop(image, Image.BILINEAR), f"{stem}_crop224.rgb")))
        written.append((file_name, image.size, save_rgb(stretch(image, Image.BILINEAR), f"{stem}_stretch224.rgb")))
        if stem == "chelsea":
            written.append((file_name, image.size,
                            save_rgb(crop(image, Image.BICUBIC), f"{stem}_crop224_bicubic.rgb")))
    return written


# Height 2, width 3: every channel holds 0 and 255 somewhere, plus values in between; no two
# channels of a pixel are equal except the pure grey ones, so a swapped channel order shows.
PIXELS_HWC = [
    [[0, 0, 0], [255, 255, 255], [255, 0, 0]],
    [[0, 128, 255], [12, 200, 77], [128, 64, 32]],
]
MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]


def normalise():
    p = np.array(PIXELS_HWC, dtype=np.float64)  # [H, W, C], C in RGB order
    assert p.shape == (2, 3, 3)

    def chw(hwc):
        return hwc.transpose(2, 0, 1)

    # range form: q = (p - p_min)/(p_max - p_min)*(q_max - q_min) + q_min, [0, 255] -> [-1, 1]
    ranged = (p - 0.0) / (255.0 - 0.0) * (1.0 - (-1.0)) + (-1.0)
    meanstd = (p / 255.0 - np.array(MEAN)) / np.array(STD)
    # BGR model: the channels reversed first, then mean/std as listed for the model's order (B, G, R).
    bgr = p[:, :, ::-1]
    mean_bgr, std_bgr = MEAN[::-1], STD[::-1]
    bgr_meanstd = (bgr / 255.0 - np.array(mean_bgr)) / np.array(std_bgr)
    # Pillow's own greyscale conversion is the reference (ITU-R 601-2 luma, integer arithmetic).
    grey = np.asarray(Image.fromarray(np.array(PIXELS_HWC, dtype=np.uint8), "RGB").convert("L"))
    luma = p[:, :, 0] * 299 / 1000 + p[:, :, 1] * 587 / 1000 + p[:, :, 2] * 114 / 1000
    assert np.all(np.abs(grey - luma) <= 0.5 + 1e-9), (grey, luma)

    return {
        "about": "see reference.md; all float values computed in float64",
        "pixels_hwc": PIXELS_HWC,
        "height": 2,
        "width": 3,
        "range_params": {"pixel_range": [0, 255], "range": [-1.0, 1.0]},
        "range_nchw": chw(ranged).tolist(),
        "range_nhwc": ranged.tolist(),
        "meanstd_params": {"pixel_range": [0, 255], "range": [0.0, 1.0], "mean": MEAN, "std": STD},
        "meanstd_nchw": chw(meanstd).tolist(),
        "meanstd_nhwc": meanstd.tolist(),
        "bgr_meanstd_params": {"color": "bgr", "pixel_range": [0, 255], "range": [0.0, 1.0],
                               "mean": mean_bgr, "std": std_bgr},
        "bgr_meanstd_nchw": chw(bgr_meanstd).tolist(),
        "bgr_meanstd_nhwc": bgr_meanstd.tolist(),
        "grey_formula": "Pillow convert('L'): L = R*299/1000 + G*587/1000 + B*114/1000, rounded (uint8)",
        "grey": grey.astype(int).tolist(),
        "grey_luma_unrounded": luma.tolist(),
    }


def main():
    shared = shared_models()
    if not (shared / "images").is_dir():
        raise SystemExit(f"no shared models at {shared} (pass the path or set QUIVER_SHARED_MODELS)")
    for source, size, name in images(shared):
        print(f"{name}: from {source} {size[0]}x{size[1]}, {(HERE / name).stat().st_size} bytes")
    data = normalise()
    lines = ",\n".join(f" {json.dumps(key)}: {json.dumps(value)}" for key, value in data.items())
    (HERE / "normalise.json").write_text("{\n" + lines + "\n}\n")
    print(f"normalise.json (numpy {np.__version__}, Pillow {PIL.__version__})")


if __name__ == "__main__":
    main()
