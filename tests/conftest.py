import os
import sys

# Tests import their small factories (onnx_factory, cli_runner) by plain name.
sys.path.insert(0, os.path.dirname(__file__))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
