#!/usr/bin/env python3
"""Classify an image with the example mobilenet_v2 over TensorFlow Serving's REST API.

    pip install requests pillow numpy
    python examples/client/predict_image.py examples/images/chelsea.png

By default the client sends the image file as it is (`{"b64": ...}`) and the server does the
model's pre-processing and post-processing, as the model's config.toml declares: it decodes the
image, resizes the shorter side to 256 and crops 224, normalises, and answers the top 5 classes
as "score:index:label". With --send tensor the client does the pre-processing itself (what a
TF Serving client has to do) and sends the normalised NCHW float tensor instead.
"""
import argparse
import base64
import os

import numpy as np
import requests
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
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
    parser.add_argument("image", help="path to a JPEG, PNG or WebP image")
    parser.add_argument("--server", default="http://localhost:8501", help="Quiver's REST address")
    parser.add_argument("--model", default="mobilenet_v2")
    parser.add_argument("--send", choices=["image", "tensor"], default="image",
                        help="image: the file as it is; tensor: pre-processed here")
    parser.add_argument("--resize", choices=["crop", "plain"], default="crop",
                        help="with --send tensor: how the client resizes")
    parser.add_argument("--top", type=int, default=5, help="classes to print (at most 5)")
    args = parser.parse_args()

    if args.send == "image":
        with open(args.image, "rb") as f:
            instance = {"b64": base64.b64encode(f.read()).decode("ascii")}
    else:
        instance = preprocess(args.image, args.resize).tolist()
    response = requests.post(
        f"{args.server}/v1/models/{args.model}:predict",
        json={"instances": [instance]},
        timeout=60,
    )
    if response.status_code != 200:
        raise SystemExit(f"error {response.status_code}: {response.json()['error']}")
    # The model's config turns its 1000 logits into the top 5 "score:index:label" strings.
    for entry in response.json()["predictions"][0][: args.top]:
        score, _index, label = entry.split(":", 2)
        print(f"{label}\t{float(score):.3f}")


if __name__ == "__main__":
    main()
