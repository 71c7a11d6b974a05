"""A KServe ``ModelServer`` serving ONNX classifiers through onnxruntime (test target).

Runs in the test-server virtualenv made by ``benchmarks/serving/__init__.py`` (kserve's pins clash with
TensorFlow's), inside a network namespace with only loopback (the server listens on every
interface). It serves each ``--model NAME=PATH:ANSWER`` over KServe V1
(``POST /v1/models/NAME:predict``, TF Serving's request and answer) and the Open Inference
Protocol v2 (``POST /v2/models/NAME/infer``, metadata at ``GET /v2/models/NAME``), where
ANSWER is what the model answers:

- ``rows``: the ONNX class output, one row of class values per image;
- ``labels``: the top class index per image (INT64);
- ``names``: the top class name per image (BYTES), from ``--class-names``.

Every inference request appends one line ``NAME COUNT HASH,HASH,...`` to ``--count-file``
before the model runs (COUNT images; HASH the first 16 hex digits of the sha256 of each
image's model-input bytes, float32), so tests read the server's own count of images and
which ones it saw, even after a client was killed.
"""

from __future__ import annotations

import argparse
import hashlib
import os

import numpy as np

_V2_TYPES = {"float32": "FP32", "float16": "FP16", "float64": "FP64", "uint8": "UINT8", "int64": "INT64"}
_ORT_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(double)": "float64",
              "tensor(uint8)": "uint8", "tensor(int64)": "int64"}


def onnx_model_class():
    """The kserve Model class (built here: the project's environment, whose test collector
    imports this file, has no kserve; only the server's virtualenv runs it)."""
    import onnxruntime as ort
    from kserve import Model
    from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

    class OnnxModel(Model):
        """One ONNX classifier; ``answer`` is ``rows``, ``labels`` or ``names``."""

        def __init__(self, name: str, path: str, answer: str, class_names: list[str], count_fd: int):
            super().__init__(name)
            options = ort.SessionOptions()
            options.intra_op_num_threads = 1
            self.session = ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])
            self.input = self.session.get_inputs()[0]
            self.output = self.session.get_outputs()[-1]
            self.dtype = _ORT_TYPES[self.input.type]
            self.answer = answer
            self.class_names = class_names
            self.count_fd = count_fd
            self.ready = True

        def get_input_types(self):
            shape = [d if isinstance(d, int) else -1 for d in self.input.shape]
            return [{"name": self.input.name, "datatype": _V2_TYPES[self.dtype], "shape": shape}]

        def get_output_types(self):
            if self.answer == "rows":
                shape = [d if isinstance(d, int) else -1 for d in self.output.shape]
                return [{"name": self.output.name, "datatype": "FP32", "shape": shape}]
            return [{"name": "label", "datatype": "INT64" if self.answer == "labels" else "BYTES", "shape": [-1]}]

        def _count(self, x: np.ndarray) -> None:
            hashes = ",".join(hashlib.sha256(row.tobytes()).hexdigest()[:16] for row in x)
            os.write(self.count_fd, f"{self.name} {len(x)} {hashes}\n".encode())

        def _run(self, x: np.ndarray):
            x = np.ascontiguousarray(x, dtype=self.dtype)
            self._count(x)
            rows = self.session.run([self.output.name], {self.input.name: x})[0]
            if self.answer == "rows":
                return rows.astype(np.float32)
            top = rows.argmax(axis=1)
            return top.astype(np.int64) if self.answer == "labels" else np.array([self.class_names[i] for i in top])

        def predict(self, payload, headers=None):
            if isinstance(payload, InferRequest):
                result = self._run(payload.inputs[0].as_numpy())
                if self.answer == "rows":
                    output = InferOutput(self.output.name, list(result.shape), "FP32", result.ravel().tolist())
                else:
                    datatype = "INT64" if self.answer == "labels" else "BYTES"
                    output = InferOutput("label", [len(result)], datatype, result.tolist())
                return InferResponse(response_id=payload.id or "", model_name=self.name, infer_outputs=[output])
            result = self._run(np.asarray(payload["instances"]))
            return {"predictions": result.tolist()}

    return OnnxModel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", required=True, help="NAME=PATH:ANSWER")
    parser.add_argument("--class-names", default="")
    parser.add_argument("--count-file", required=True)
    options, _ = parser.parse_known_args()
    count_fd = os.open(options.count_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    class_names = [n for n in options.class_names.split(",") if n]
    from kserve import ModelServer

    OnnxModel = onnx_model_class()
    models = []
    for spec in options.model:
        name, _, rest = spec.partition("=")
        path, _, answer = rest.rpartition(":")
        models.append(OnnxModel(name, path, answer, class_names, count_fd))
    # --http_port and the rest are read by kserve's own argument parser.
    ModelServer(enable_grpc=False, workers=1, enable_latency_logging=False).start(models)


if __name__ == "__main__":
    main()
