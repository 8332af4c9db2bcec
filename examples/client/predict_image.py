#!/usr/bin/env python3
"""Classify an image with the example mobilenet_v2 over TensorFlow Serving's REST API.

    pip install requests pillow numpy
    python examples/client/predict_image.py examples/images/chelsea.png

The model wants ImageNet pre-processing, which this client does itself: RGB, shorter side resized
to 256 and a centre crop of 224 (or a plain resize to 224x224 with --resize plain), scaled to
[0, 1], normalised with ImageNet's mean and std, laid out as NCHW.
"""
import argparse
import os

import numpy as np
import requests
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
LABELS = os.path.join(HERE, "..", "models", "mobilenet_v2", "labels.txt")
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def preprocess(path, resize="crop"):
    image = Image.open(path).convert("RGB")
    if resize == "crop":
        width, height = image.size
        scale = 256 / min(width, height)
        image = image.resize((round(width * scale), round(height * scale)), Image.BILINEAR)
        width, height = image.size
        left, top = (width - 224) // 2, (height - 224) // 2
        image = image.crop((left, top, left + 224, top + 224))
    else:
        image = image.resize((224, 224), Image.BILINEAR)
    pixels = np.asarray(image, dtype=np.float32) / 255.0
    return ((pixels - MEAN) / STD).transpose(2, 0, 1)  # HWC -> CHW


def softmax(logits):
    exp = np.exp(logits - np.max(logits))
    return exp / exp.sum()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("image", help="path to a JPEG or PNG image")
    parser.add_argument("--server", default="http://localhost:8501", help="Quiver's REST address")
    parser.add_argument("--model", default="mobilenet_v2")
    parser.add_argument("--resize", choices=["crop", "plain"], default="crop")
    parser.add_argument("--top", type=int, default=5)
    args = parser.parse_args()

    instance = preprocess(args.image, args.resize)
    response = requests.post(
        f"{args.server}/v1/models/{args.model}:predict",
        json={"instances": [instance.tolist()]},
        timeout=60,
    )
    if response.status_code != 200:
        raise SystemExit(f"error {response.status_code}: {response.json()['error']}")
    probabilities = softmax(np.array(response.json()["predictions"][0]))

    with open(LABELS) as f:
        labels = [line.strip() for line in f]
    for index in np.argsort(probabilities)[::-1][: args.top]:
        print(f"{labels[index]}\t{probabilities[index]:.3f}")


if __name__ == "__main__":
    main()
