"""copycat-tf: the Copycat CNN attack as a tool, for TensorFlow/Keras and ONNX.

The data flow reads like the attack, one module per stage:

    oracle -> queries -> fakeset -> training -> export -> evaluation -> report

``copycat_tf.pipeline.steal`` composes them. Modules import TensorFlow only where they
train or export, so opening and querying a target stays light.
"""

import os

# onnxruntime >= 1.29 reports usage to Microsoft from Linux too, writing a device id under
# ~/.cache and a file in $TMPDIR when it starts: a tool pointed at untrusted models must not
# phone home nor write outside its output folder. Set here, before any module of the package
# (or tf2onnx under it) can import onnxruntime; ORT_DISABLE_TELEMETRY=0 turns it back on.
for _variable in ("ORT_DISABLE_TELEMETRY", "ORT_TELEMETRY_DISABLED"):
    os.environ.setdefault(_variable, "1")

from copycat_tf._version import __version__  # noqa: E402 - after the environment is set
from copycat_tf.errors import BudgetExceeded, CopycatError  # noqa: E402

__all__ = ["__version__", "CopycatError", "BudgetExceeded"]
