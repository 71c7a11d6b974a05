"""The ``copycat-tf`` command line: a thin layer over :mod:`copycat_tf` (installed as ``copycat_tf.cli``)."""
