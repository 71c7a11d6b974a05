"""Copycat training on two logical CPU devices, for test_devices.py.

Run as ``python devices_cases.py FAKESET_DIR OUT_DIR RESULTS.json`` (a fresh process: the
logical devices must be set before TensorFlow starts). Trains the same copycat on one
device and on two (``MirroredStrategy``), then a two-device run stopped after its third
epoch and resumed; writes the validation agreements, the resume record and a refusal.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path


class _Stop(Exception):
    pass


def main(fakeset_dir: str, out_dir: str, results_path: str) -> None:
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    import keras

    from copycat_tf.errors import CopycatError
    from copycat_tf.fakeset import FakeSet
    from copycat_tf.execution import Execution
    from copycat_tf.training import TrainConfig, train_copycat

    lines: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())
    logging.getLogger("copycat_tf").addHandler(handler)
    logging.getLogger("copycat_tf").setLevel(logging.INFO)

    class StopAfterThirdEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 2:
                raise _Stop

    fakeset, out, config = FakeSet.open(fakeset_dir), Path(out_dir), TrainConfig(epochs=6, seed=0)
    results = {"one": train_copycat(fakeset, out / "one", config).validation_agreement,
               "two": train_copycat(fakeset, out / "two", config, execution=Execution(devices=2)).validation_agreement}
    try:
        train_copycat(fakeset, out / "resumed", config, callbacks=[StopAfterThirdEpoch()], execution=Execution(devices=2))
    except _Stop:
        pass
    results["stopped_at"] = json.loads((out / "resumed" / "training.json").read_text())["stages"]["main"]["epochs_done"]
    results["resumed"] = train_copycat(fakeset, out / "resumed", config, execution=Execution(devices="all")).validation_agreement
    main_stage = json.loads((out / "resumed" / "training.json").read_text())["stages"]["main"]
    results["starts"], results["epochs_logged"] = main_stage["starts"], len(main_stage["history"]["val_agreement"])
    try:
        train_copycat(fakeset, out / "three", config, execution=Execution(devices=3))
    except CopycatError as exc:
        results["three"] = str(exc)
    results["log"] = lines
    Path(results_path).write_text(json.dumps(results))


if __name__ == "__main__":
    main(*sys.argv[1:])
