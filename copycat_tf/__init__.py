"""copycat-tf: the Copycat CNN attack as a tool, for TensorFlow/Keras and ONNX.

The data flow reads like the attack, one module per stage:

    oracle -> queries -> fakeset -> training -> export -> evaluation -> report

``copycat_tf.pipeline.steal`` composes them. Modules import TensorFlow only where they
train or export, so opening and querying a target stays light.
"""

from copycat_tf._version import __version__
from copycat_tf.errors import BudgetExceeded, CopycatError

__all__ = ["__version__", "CopycatError", "BudgetExceeded"]
