"""The `--gpus` option: `docker run --gpus` semantics, plus `none`, as engine device requests.

Follows docker/cli's `opts/gpus.go`: the value is one CSV record; a bare field is a count (`2`, `all`), the
rest are `count=`, `device=`, `capabilities=`, `driver=` and `options=` (each a CSV list when quoted).
Where the CLI would hand the engine a request it then refuses, or silently means something else, this
parser says so up front:

- unquoted `device=0,2` means devices 0 and 2 (the CLI reads the `2` as a count, records Count=2 with
  DeviceIDs ["0"], and the engine refuses to start it: "cannot set both Count and DeviceIDs");
- a count together with device IDs, and a count of 0, are errors instead of a request that fails or
  (for `--gpus 0`, usually meant as GPU 0) gives no GPU;
- empty values (`device=`, `capabilities=`) and a count given twice are errors.

The docker SDK is imported only in `GpuRequest.to_docker()`: tasks.py imports this module for
`invoke --list`, and `docker.types` pulls in requests.
"""

from __future__ import annotations

import csv
import dataclasses
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from tfdock_host.errors import UsageError

if TYPE_CHECKING:
    from docker.types import DeviceRequest

VALID_FORMS = "use all, none, a count (2), or device=0,2"
KEYS = ("count", "device", "capabilities", "driver", "options")
KEYS_NEEDING_QUOTES = ("capabilities", "options")  # lists whose unquoted commas split the value
EMPTY_ITEM = "an item between commas is empty"
EMPTY_ITEM_HINT = "e.g. device=0,2 or capabilities=compute,utility"
ALL_GPUS = -1  # the engine's Count for "every GPU"


class GpuSpecError(UsageError, ValueError):
    """A `--gpus` value that cannot be turned into a device request."""


@dataclasses.dataclass(frozen=True)
class GpuRequest:
    """One engine device request, as `docker run --gpus` builds it.

    `count` is -1 for all GPUs and 0 when `device_ids` pick them; `capabilities` always ends with "gpu",
    which is how the engine finds its NVIDIA driver.
    """

    count: int = 0
    device_ids: tuple[str, ...] = ()
    capabilities: tuple[str, ...] = ("gpu",)
    driver: str = ""
    # hash=False: a dict cannot be hashed; equality still compares it.
    options: Mapping[str, str] = dataclasses.field(default_factory=dict, hash=False)

    def to_docker(self) -> DeviceRequest:
        from docker.types import DeviceRequest

        return DeviceRequest(
            driver=self.driver,
            count=self.count,
            device_ids=list(self.device_ids),
            capabilities=[list(self.capabilities)],
            options=dict(self.options),
        )

    @property
    def visible_devices(self) -> str:
        """NVIDIA_VISIBLE_DEVICES as the engine's NVIDIA driver sets it (moby `setNvidiaGPUs`)."""
        if self.device_ids:
            return ",".join(self.device_ids)
        if self.count == ALL_GPUS:
            return "all"
        return ",".join(str(index) for index in range(self.count))


def parse(spec: str) -> list[GpuRequest]:
    """The device requests for a `--gpus` value: none for `none`, otherwise exactly one."""
    spec = spec.strip()
    if spec == "none":
        return []
    try:
        return [_parse_request(_csv_record(spec))]
    except _Rejected as rejected:
        raise GpuSpecError(f"invalid --gpus value {spec!r}: {rejected.reason}", rejected.hint) from None


def wants_gpu(requests: Sequence[GpuRequest]) -> bool:
    return bool(requests)


def visible_devices(requests: Sequence[GpuRequest]) -> str:
    """NVIDIA_VISIBLE_DEVICES the engine will set; empty when it sets none (no request)."""
    return ",".join(request.visible_devices for request in requests)


class _Rejected(Exception):
    """Why a part of the spec is invalid; `parse` adds the spec itself."""

    def __init__(self, reason: str, hint: str = VALID_FORMS) -> None:
        super().__init__(reason)
        self.reason = reason
        self.hint = hint


def _parse_request(fields: list[str]) -> GpuRequest:
    values: dict[str, str] = {}
    count = 1  # what the CLI asks for when neither a count nor devices are given
    device_ids: list[str] = []
    previous_key = ""
    for field in fields:
        if not field:
            raise _Rejected(EMPTY_ITEM, EMPTY_ITEM_HINT)
        key, has_value, value = field.partition("=")
        if not has_value:
            if previous_key == "device":
                # The improvement over the CLI: unquoted `device=0,2` continues the device list.
                device_ids.append(key)
                continue
            if previous_key in KEYS_NEEDING_QUOTES and not _is_count(key):
                raise _Rejected(f"{key!r} is not a count", _quote_hint(previous_key))
            key, value = "count", key
        elif key not in KEYS:
            hint = _quote_hint(previous_key) if previous_key == "options" else f"keys are {', '.join(KEYS)}"
            raise _Rejected(f"unknown key {key!r}", hint)
        if not value:
            raise _Rejected(f"{key}= has no value")
        if key == "count":
            count = _parse_count(value)
        if key in values:
            raise _Rejected(f"{key} is given twice", "give each key once")
        values[key] = value
        if key == "device":
            device_ids = value.split(",")
        previous_key = key

    if "count" in values and device_ids:
        raise _Rejected("a count and device IDs cannot be combined", "give either a count (2) or device=0,2")
    capabilities = values["capabilities"].split(",") if "capabilities" in values else []
    if "" in device_ids or "" in capabilities:
        raise _Rejected(EMPTY_ITEM, EMPTY_ITEM_HINT)
    return GpuRequest(
        count=0 if device_ids else count,
        device_ids=tuple(device_ids),
        capabilities=(*capabilities, "gpu"),
        driver=values.get("driver", ""),
        options=_parse_options(values.get("options", "")),
    )


def _csv_record(text: str) -> list[str]:
    if not text:
        raise _Rejected("it is empty")
    try:
        # strict: an unbalanced quote is an error, as in Go's encoding/csv.
        return [field.strip() for field in next(csv.reader([text], strict=True))]
    except csv.Error as error:
        raise _Rejected(str(error), "quote the whole value once: '\"device=0,2\"'") from None


def _is_count(text: str) -> bool:
    return text == "all" or (text.isascii() and text.isdigit())


def _parse_count(text: str) -> int:
    if not _is_count(text):
        raise _Rejected(f"{text!r} is not a count")
    if text == "all":
        return ALL_GPUS
    if int(text) == 0:
        raise _Rejected("a count of 0 requests no GPU", "for GPU 0 use device=0; for no GPU use none")
    return int(text)


def _parse_options(text: str) -> dict[str, str]:
    # Like the CLI's ConvertKVStringsToMap: a bare key maps to "".
    pairs = (field.partition("=") for field in _csv_record(text)) if text else ()
    return {key: value for key, _, value in pairs}


def _quote_hint(key: str) -> str:
    example = "capabilities=compute,utility" if key == "capabilities" else "options=key=value,other=value"
    return f"quote a list so its commas stay in it: '\"{example}\"'"
