#!/usr/bin/env python3
"""End-to-end images/s of the README's image client (examples/client/predict_image.py), with the
client's own work counted: CONCURRENCY processes, each classifying IMAGE over and over through
TF Serving's REST API for SECONDS, either sending the file as it is (`--send image`: read,
base64, post) or pre-processing it itself (`--send tensor`: decode, resize, crop, normalise,
`tolist()`, JSON, post). Every answer's top-1 label is checked. Prints "IMAGES_PER_S".

    processing_client.py URL MODEL IMAGE image|tensor CONCURRENCY SECONDS
"""
import base64
import multiprocessing
import os
import sys
import time

import requests

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples", "client"))
from predict_image import preprocess  # noqa: E402  (the README client's own pre-processing)


def instance(path, send):
    if send == "image":
        with open(path, "rb") as f:
            return {"b64": base64.b64encode(f.read()).decode("ascii")}
    return preprocess(path).tolist()


def worker(url, path, send, seconds, expected, start, counts):
    session = requests.Session()
    start.wait()
    done = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        response = session.post(url, json={"instances": [instance(path, send)]}, timeout=120)
        if response.status_code != 200:
            raise SystemExit(f"{send}: {response.status_code} {response.text[:300]}")
        top1 = response.json()["predictions"][0][0].split(":", 2)[2]
        if top1 != expected:
            raise SystemExit(f"{send}: top-1 {top1!r}, expected {expected!r}")
        done += 1
    counts.put(done)


def main():
    url, model, path, send, concurrency, seconds = sys.argv[1:7]
    concurrency, seconds = int(concurrency), float(seconds)
    url = f"{url}/v1/models/{model}:predict"
    # The label both modes must give: what the server answers for the file itself.
    first = requests.post(url, json={"instances": [instance(path, "image")]}, timeout=120)
    first.raise_for_status()
    expected = first.json()["predictions"][0][0].split(":", 2)[2]
    start = multiprocessing.Barrier(concurrency + 1)
    counts = multiprocessing.Queue()
    workers = [
        multiprocessing.Process(target=worker, args=(url, path, send, seconds, expected, start, counts))
        for _ in range(concurrency)
    ]
    for process in workers:
        process.start()
    start.wait()
    began = time.monotonic()
    for process in workers:
        process.join()
    elapsed = time.monotonic() - began
    if any(process.exitcode != 0 for process in workers):
        raise SystemExit(f"{send}: a client failed")
    total = sum(counts.get() for _ in workers)
    print(f"{total / elapsed:.1f}")


if __name__ == "__main__":
    main()
