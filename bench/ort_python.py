"""Python onnxruntime's session.run on the shared models: the physical limit for Quiver's ONNX
Runtime engine. Same models, inputs and thread count as
`cargo bench -p quiver-engine-onnxruntime --bench engine_call`.

    python bench/ort_python.py SHARED_MODELS_DIR [SECONDS_PER_CASE]

Prints, per model and batch, the mean time of one session.run over about SECONDS_PER_CASE of
calls (after a warm-up), as criterion reports its mean.
"""
import sys
import time

import numpy as np
import onnxruntime as ort

THREADS = 2
SEQ = 128


def inputs(model, batch):
    if model == "mobilenet_v2":
        n = batch * 3 * 224 * 224
        data = ((np.arange(n, dtype=np.int64) * 7919) % 1000).astype(np.float32) / 500.0 - 1.0
        return {"input": data.reshape(batch, 3, 224, 224)}
    n = batch * SEQ
    ids = (1000 + (np.arange(n, dtype=np.int64) * 7919) % 20000).reshape(batch, SEQ)
    return {"input_ids": ids, "attention_mask": np.ones((batch, SEQ), np.int64),
            "token_type_ids": np.zeros((batch, SEQ), np.int64)}


def main():
    shared = sys.argv[1]
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 5.0
    options = ort.SessionOptions()
    options.intra_op_num_threads = THREADS
    options.inter_op_num_threads = 1
    for model in ["mobilenet_v2", "all_minilm_l6_v2"]:
        session = ort.InferenceSession(f"{shared}/{model}/1/model.onnx", options,
                                       providers=["CPUExecutionProvider"])
        for batch in [1, 8]:
            feed = inputs(model, batch)
            warm_until = time.perf_counter() + 1.0
            while time.perf_counter() < warm_until:
                session.run(None, feed)
            calls, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds:
                session.run(None, feed)
                calls += 1
            mean = (time.perf_counter() - start) / calls
            print(f"python-onnxruntime/{model}/b{batch}\t{mean * 1e3:.3f} ms\t({calls} calls)")


if __name__ == "__main__":
    main()
