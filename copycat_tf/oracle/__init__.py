"""The oracle: the target model as a black box that answers image queries with labels.

:class:`Oracle` (``base.py``) is the interface every stage talks to: uint8 images in,
labels and optionally probabilities out, every query counted against an optional budget.
:class:`OnnxOracle` (``onnx_oracle.py``) is the first implementation: a target ONNX file
reached only through ``onnxruntime.InferenceSession``, inputs in, outputs out; no weights,
no gradients. ``onnx_file.py`` reads untrusted ONNX files safely. :class:`HttpOracle`
(``http/``) is the second: a model behind an HTTP inference API (Open Inference Protocol v2,
TF Serving REST). :func:`open_oracle` (``factory.py``) opens either from a path or a URL.

Usage::

    oracle = OnnxOracle("target.onnx", budget=10_000)
    print(oracle.contract.describe())
    answers = oracle.query(images, soft=True)
    answers.labels, answers.probabilities, oracle.queries_spent
"""

from copycat_tf.oracle.base import MAX_BATCH_PIXELS, MAX_FIXED_BATCH, MAX_INPUT_PIXELS, Answers, Oracle
from copycat_tf.oracle.factory import is_url, open_oracle
from copycat_tf.oracle.http import HttpOracle
from copycat_tf.oracle.info import TargetInfo
from copycat_tf.oracle.onnx_file import load_checked_model
from copycat_tf.oracle.onnx_oracle import OnnxOracle
from copycat_tf.oracle.options import ContractOverrides, HttpOptions
from copycat_tf.oracle.spec import TargetSpec

__all__ = ["MAX_BATCH_PIXELS", "MAX_FIXED_BATCH", "MAX_INPUT_PIXELS", "Answers", "ContractOverrides", "HttpOptions", "HttpOracle",
           "OnnxOracle", "Oracle", "TargetInfo", "TargetSpec", "is_url", "load_checked_model", "open_oracle"]
