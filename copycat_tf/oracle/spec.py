"""The target as the user named it: a file or a URL, and how to talk to it.

A :class:`TargetSpec` is built once (by the CLI, or by hand) and opened wherever an oracle
is needed: for the attack, for evaluation, again on a resumed run. It is a value: it can be
recorded (header values never are), compared and sent to another process.

Example:

>>> spec = TargetSpec("target.onnx", overrides=ContractOverrides(layout="NCHW"))
>>> spec.shown, spec.is_remote
('target.onnx', False)
>>> spec.to_record()["overrides"]
{'layout': 'NCHW'}
>>> remote = TargetSpec("http://127.0.0.1:8080/v2/models/fer",
...                     http=HttpOptions(headers=("Authorization: Bearer s3cret",)))
>>> "s3cret" in repr(remote) or "s3cret" in str(remote.to_record())
False
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from copycat_tf.contract import Contract
from copycat_tf.errors import CopycatError
from copycat_tf.oracle.base import Oracle
from copycat_tf.oracle.factory import is_url, open_oracle
from copycat_tf.files import file_sha256
from copycat_tf.oracle.http.endpoint import Endpoint, endpoint_identity, shown_url
from copycat_tf.oracle.options import ContractOverrides, HttpOptions


@dataclass(frozen=True)
class TargetSpec:
    """A target to open as an :class:`~copycat_tf.oracle.Oracle`: an ONNX file or an http(s) URL.

    Args:
        target: the ``.onnx`` path or the model's URL.
        overrides: :class:`ContractOverrides`.
        http: :class:`HttpOptions` (URL targets only).
        providers: onnxruntime execution providers in priority order (ONNX files only).
        price_per_1k: what 1,000 of its answers cost, to say what a run spends (optional).
    """

    target: str
    overrides: ContractOverrides = field(default_factory=ContractOverrides)
    http: HttpOptions = field(default_factory=HttpOptions)
    providers: tuple[str, ...] | None = None
    price_per_1k: float | None = None

    def __post_init__(self):
        object.__setattr__(self, "target", os.fspath(self.target))
        if self.price_per_1k is not None and not (
                isinstance(self.price_per_1k, (int, float)) and 0 <= self.price_per_1k < float("inf")):
            raise CopycatError(f"price-per-1k must be a number >= 0; received {self.price_per_1k!r}")

    @classmethod
    def of(cls, target: TargetSpec | str | os.PathLike) -> TargetSpec:
        """``target`` as a :class:`TargetSpec` (a path or URL gets the defaults)."""
        return target if isinstance(target, TargetSpec) else cls(os.fspath(target))

    @property
    def is_remote(self) -> bool:
        return is_url(self.target)

    @property
    def shown(self) -> str:
        """How records and messages name the target: a file's name, or a URL without secrets."""
        return shown_url(self.target) if self.is_remote else Path(self.target).name

    def identity(self) -> str:
        """The target's stable sha256 (as its oracle's ``identity``), read without opening it:
        a file's contents, or a URL's canonical endpoint.

        Raises:
            CopycatError: the file cannot be read, or the URL is malformed.
        """
        if self.is_remote:
            return endpoint_identity(Endpoint.parse(self.target, self.http.protocol))
        if not Path(self.target).is_file():
            raise CopycatError(f"{self.target}: no such file")
        try:
            return file_sha256(self.target)
        except OSError as exc:
            raise CopycatError(f"{self.target}: cannot read it ({exc.strerror or exc})") from None

    def open(self, *, budget: int | None = None, contract: Contract | None = None,
             read_size: tuple[int, int] | None = None) -> Oracle:
        """The oracle for this target, with :attr:`price_per_1k` set.

        Args:
            budget: the most images it may be charged for, probes included (URL targets).
            contract: a contract learnt earlier (a resumed run's, see
                :func:`~copycat_tf.fakeset.stored_contract`): a URL target is then not
                probed again, so a rerun buys nothing to set itself up.
            read_size: ``(height, width)`` to read a file with a dynamic image size at, when
                no ``input_size`` is given (``inspect`` shows such a model).

        Raises:
            CopycatError: the target cannot be opened, or an option does not fit its kind.
        """
        options = {**self.overrides.given(), **self.http.given()}
        if self.providers:
            options["providers"] = list(self.providers)
        if read_size is not None and not self.is_remote:
            options["probe_size"] = read_size
        if self.is_remote:
            if budget is not None:
                options["budget"] = budget
            if contract is not None:
                options["contract"] = contract
        oracle = open_oracle(self.target, **options)
        oracle.price_per_1k = self.price_per_1k
        return oracle

    def to_record(self) -> dict:
        """What a run records about its target: everything but header values."""
        record = {"target": self.shown, "overrides": self.overrides.given()}
        if self.providers:
            record["providers"] = list(self.providers)
        if self.is_remote:
            record["http"] = {**self.http.given(), "headers": self.http.header_names()}
        return record
