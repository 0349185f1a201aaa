"""`--gpus` parsing: docker's forms, the unquoted device list, and one-line errors for the rest."""

from __future__ import annotations

import pytest

from tfdock_host.gpus import GpuRequest, GpuSpecError, parse, visible_devices, wants_gpu

# spec, the request docker run --gpus builds for it (and this parser too)
ACCEPTED = [
    pytest.param("all", GpuRequest(count=-1), id="all"),
    pytest.param("2", GpuRequest(count=2), id="a count"),
    pytest.param("count=3", GpuRequest(count=3), id="count=N"),
    pytest.param("count=all", GpuRequest(count=-1), id="count=all"),
    pytest.param("device=0", GpuRequest(device_ids=("0",)), id="one device"),
    pytest.param('"device=0,2"', GpuRequest(device_ids=("0", "2")), id="quoted device list"),
    pytest.param("device=0,2", GpuRequest(device_ids=("0", "2")), id="unquoted device list"),
    pytest.param("device=1,2,3", GpuRequest(device_ids=("1", "2", "3")), id="unquoted list of three"),
    pytest.param(
        "device=GPU-3a2b1c0d,GPU-9f8e7d6c",
        GpuRequest(device_ids=("GPU-3a2b1c0d", "GPU-9f8e7d6c")),
        id="GPU UUIDs",
    ),
    pytest.param(
        "device=MIG-GPU-3a2b1c0d/1/0", GpuRequest(device_ids=("MIG-GPU-3a2b1c0d/1/0",)), id="MIG device"
    ),
    pytest.param(
        '"capabilities=compute,utility"',
        GpuRequest(count=1, capabilities=("compute", "utility", "gpu")),
        id="capabilities, quoted",
    ),
    pytest.param(
        "capabilities=compute", GpuRequest(count=1, capabilities=("compute", "gpu")), id="one capability"
    ),
    pytest.param(
        "capabilities=compute,2",
        GpuRequest(count=2, capabilities=("compute", "gpu")),
        id="capability then count",
    ),
    pytest.param("driver=nvidia", GpuRequest(count=1, driver="nvidia"), id="driver"),
    pytest.param(
        "driver=nvidia,count=all,capabilities=utility,options=a=b",
        GpuRequest(count=-1, capabilities=("utility", "gpu"), driver="nvidia", options={"a": "b"}),
        id="every key",
    ),
    pytest.param(
        "device=0,2,capabilities=compute",
        GpuRequest(device_ids=("0", "2"), capabilities=("compute", "gpu")),
        id="device list then capabilities",
    ),
    pytest.param("options=key=value", GpuRequest(count=1, options={"key": "value"}), id="one option"),
    pytest.param(
        '"options=a=b,flag"',
        GpuRequest(count=1, options={"a": "b", "flag": ""}),
        id="options, quoted, bare key",
    ),
    pytest.param(" 2 ", GpuRequest(count=2), id="surrounding spaces"),
]

REJECTED = {
    # spec: words the message must contain (besides the spec itself)
    "": "empty",
    "foo": "'foo' is not a count",
    "gpu": "'gpu' is not a count",
    "0": "count of 0",
    "count=0": "count of 0",
    "-1": "not a count",
    "count=two": "'two' is not a count",
    "2,device=1": "cannot be combined",
    "device=0,count=2": "cannot be combined",
    "all,device=0": "cannot be combined",
    "count=2,2": "given twice",
    "2,count=2": "given twice",
    "device=0,device=1": "given twice",
    "device=": "has no value",
    "capabilities=": "has no value",
    "driver=": "has no value",
    "device=0,,1": "empty",
    '"device=0,,1"': "empty",
    ",2": "empty",
    "capabilities=compute,utility": "'utility' is not a count",
    "options=a=b,c=d": "unknown key 'c'",
    "devices=0": "unknown key 'devices'",
    '"device=0,2': "unexpected end of data",
    "device=0\n1": "new-line",
    "none,2": "'none' is not a count",
}


@pytest.mark.parametrize(("spec", "request_"), ACCEPTED)
def test_accepted_spec_builds_one_request(spec: str, request_: GpuRequest) -> None:
    assert parse(spec) == [request_]


def test_none_requests_no_gpu() -> None:
    assert parse("none") == []
    assert not wants_gpu(parse("none"))
    assert visible_devices(parse("none")) == ""


def test_unquoted_device_list_means_the_same_as_the_quoted_one() -> None:
    # The docker CLI reads the unquoted `2` as a count; the engine then refuses the request.
    assert parse("device=0,2") == parse('"device=0,2"') == [GpuRequest(count=0, device_ids=("0", "2"))]


@pytest.mark.parametrize(("spec", "reason"), REJECTED.items())
def test_rejected_spec_raises_one_line_error_naming_it(spec: str, reason: str) -> None:
    with pytest.raises(GpuSpecError) as raised:
        parse(spec)
    error = raised.value
    assert error.message.startswith(f"invalid --gpus value {spec.strip()!r}: ")
    assert reason in error.message
    assert error.hint
    assert "\n" not in str(error)
    assert isinstance(error, ValueError)


def test_unknown_word_error_shows_the_valid_forms() -> None:
    with pytest.raises(GpuSpecError, match=r"^invalid --gpus value 'foo': .*use all, none, a count \(2\)"):
        parse("foo")


@pytest.mark.parametrize("spec", ["0", "count=0"])
def test_count_zero_points_at_device_0_and_none(spec: str) -> None:
    with pytest.raises(GpuSpecError) as raised:
        parse(spec)
    assert raised.value.hint == "for GPU 0 use device=0; for no GPU use none"


@pytest.mark.parametrize("spec", ["capabilities=compute,utility", "options=a=b,c=d"])
def test_unquoted_list_error_says_to_quote_it(spec: str) -> None:
    with pytest.raises(GpuSpecError) as raised:
        parse(spec)
    assert raised.value.hint.startswith("quote a list so its commas stay in it")


@pytest.mark.parametrize(
    ("spec", "devices"),
    [
        ("all", "all"),
        ("count=all", "all"),
        ("1", "0"),
        ("2", "0,1"),
        ("device=1,3", "1,3"),
        ("device=GPU-a", "GPU-a"),
    ],
)
def test_visible_devices_match_what_the_engine_sets(spec: str, devices: str) -> None:
    requests = parse(spec)
    assert wants_gpu(requests)
    assert visible_devices(requests) == devices


def test_to_docker_builds_the_sdk_device_request() -> None:
    request = parse("driver=nvidia,device=1,3,capabilities=compute,options=a=b")[0].to_docker()
    assert dict(request) == {
        "Driver": "nvidia",
        "Count": 0,
        "DeviceIDs": ["1", "3"],
        "Capabilities": [["compute", "gpu"]],
        "Options": {"a": "b"},
    }


def test_to_docker_gives_a_count_no_device_ids() -> None:
    # The SDK sends [] where the CLI sends null; the engine treats both as "no IDs".
    assert dict(parse("all")[0].to_docker()) == {
        "Driver": "",
        "Count": -1,
        "DeviceIDs": [],
        "Capabilities": [["gpu"]],
        "Options": {},
    }
