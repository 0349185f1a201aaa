"""The engines users run besides rootful Docker, for real: a rootless dockerd and rootless Podman's API
service, both started by a non-root user outside the docker group (.ci/provision-rootless), and a docker
context naming that user's own socket.

As that user, through each engine: `invoke doctor` names it, `invoke train` leaves outputs owned by the user
and `invoke test` passes. As root, with a context naming the rootless dockerd: the image is built and run on
that engine, and the default engine (/var/run/docker.sock) is untouched.

Needs root (to act as the user). Without the provisioned engines the tests skip, and fail under CI=true.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tfdock_host import engine, image
from tfdock_host.doctor import engine_row
from tfdock_host.settings import ROOT

USER = os.environ.get("TFDOCK_ROOTLESS_USER", "tfdock-rootless")
BASE_IMAGE = os.environ.get("INVOKE_TFDOCK_BASE_IMAGE", "")
TRAIN = ["invoke", "train", "--epochs", "1", "--", "--limit-train", "2000"]
CONTAINER_SUBSET = ["tests/container/test_environment.py", "tests/container/test_data.py", "-q"]
TASK_TIMEOUT_S = 900  # a first build of the runtime image downloads TensorFlow


def unavailable(reason: str) -> None:
    message = f"{reason}: run `sudo bash .ci/provision-rootless`"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def user() -> pwd.struct_passwd:
    if os.getuid() != 0:
        unavailable("acting as the rootless engines' user needs root")
    try:
        return pwd.getpwnam(USER)
    except KeyError:
        unavailable(f"no user {USER}")
        raise


def engines(account: pwd.struct_passwd) -> dict[str, str]:
    runtime = f"/run/user/{account.pw_uid}"
    return {
        engine.ROOTLESS_DOCKER: f"unix://{runtime}/docker.sock",
        engine.ROOTLESS_PODMAN: f"unix://{runtime}/podman/podman.sock",
    }


def as_user_command(account: pwd.struct_passwd, command: list[str], **env: str) -> list[str]:
    """`command` as the user would run it: their HOME and runtime dir, their venv first on PATH, nothing of
    root's environment (no DOCKER_HOST unless given)."""
    base = {
        "HOME": account.pw_dir,
        "USER": account.pw_name,
        "XDG_RUNTIME_DIR": f"/run/user/{account.pw_uid}",
        "PATH": f"{account.pw_dir}/.tfdock-test-venv/bin:/usr/bin:/bin:/usr/sbin:/sbin",
        "COLUMNS": "400",  # doctor's table unwrapped
        **({"INVOKE_TFDOCK_BASE_IMAGE": BASE_IMAGE} if BASE_IMAGE else {}),
        # The images the fixtures built and loaded, and CI's marker.
        **{name: os.environ[name] for name in ("INVOKE_TFDOCK_IMAGE", "CI") if os.environ.get(name)},
        **env,
    }
    return [
        "runuser",
        "-u",
        account.pw_name,
        "--",
        "env",
        "-i",
        *[f"{k}={v}" for k, v in base.items()],
        *command,
    ]


def as_user(
    account: pwd.struct_passwd, command: list[str], cwd: Path, **env: str
) -> subprocess.CompletedProcess:
    return subprocess.run(
        as_user_command(account, command, **env),
        cwd=cwd, capture_output=True, text=True, timeout=TASK_TIMEOUT_S, check=False,
    )  # fmt: skip


@pytest.fixture(scope="module")
def checkout(user) -> Iterator[Path]:
    """This checkout's files (committed or not) in a dir of the user's, and the host tools in a venv of
    theirs: root's venv and checkout are not theirs to use."""
    where = Path(tempfile.mkdtemp(prefix="tfdock-engines-", dir=user.pw_dir))
    listed = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True, check=True,
    ).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (where / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, where / name)
    subprocess.run(["chown", "-R", f"{user.pw_uid}:{user.pw_gid}", str(where)], check=True)
    venv = Path(user.pw_dir) / ".tfdock-test-venv"
    if not (venv / "bin" / "invoke").exists():
        made = as_user(user, ["python3", "-m", "venv", str(venv)], where)
        installed = as_user(
            user,
            [f"{venv}/bin/pip", "install", "-q", "--require-hashes", "-r", "requirements/host.txt"],
            where,
        )
        assert made.returncode == installed.returncode == 0, made.stderr + installed.stderr
    yield where
    shutil.rmtree(where, ignore_errors=True)


def reachable(url: str):
    import docker
    from docker.errors import DockerException

    try:
        client = docker.DockerClient(base_url=url, timeout=60)
        client.ping()
    except DockerException as error:
        unavailable(f"no engine answers at {url} ({type(error).__name__})")
    return client


def load_images(client, account: pwd.struct_passwd, url: str, kind: str, tags: list[str]) -> None:
    """The project's images, built on the default engine, into a rootless engine's own store (unless it has
    them fresh): `docker save | load`, or `podman load`."""
    from docker.errors import ImageNotFound

    def fresh(tag: str) -> bool:
        try:
            return client.images.get(tag).labels.get(image.HASH_LABEL) == image.content_hash("cpu")
        except ImageNotFound:
            return False

    wanted = [tag for tag in tags if not fresh(tag)]
    if BASE_IMAGE and not fresh(BASE_IMAGE):
        try:
            client.images.get(BASE_IMAGE)
        except ImageNotFound:
            wanted.append(BASE_IMAGE)
    if not wanted:
        return
    loader = (
        ["docker", "-H", url, "load"] if kind == engine.ROOTLESS_DOCKER else ["podman", "--url", url, "load"]
    )
    save = subprocess.Popen(["/usr/bin/docker", "save", *wanted], stdout=subprocess.PIPE)
    load = subprocess.run(
        as_user_command(account, loader), stdin=save.stdout, capture_output=True, text=True, check=False
    )
    assert save.wait() == 0 and load.returncode == 0, load.stderr


@pytest.fixture(scope="module", params=[engine.ROOTLESS_DOCKER, engine.ROOTLESS_PODMAN])
def rootless(request, user, runtime_image, dev_image, project_settings) -> tuple[str, str]:
    """(kind, endpoint) of a rootless engine with the project's images in its store."""
    kind = request.param
    url = engines(user)[kind]
    client = reachable(url)
    load_images(client, user, url, kind, [runtime_image, dev_image])
    return kind, url


def owned_by_others(directory: Path, uid: int) -> list[str]:
    return [str(path) for path in [directory, *directory.rglob("*")] if path.lstat().st_uid != uid]


def test_doctor_names_the_rootless_engine_its_socket_and_whose_the_files_are(rootless, user, checkout):
    kind, url = rootless
    doctor = as_user(user, ["invoke", "doctor"], checkout, DOCKER_HOST=url)
    assert f"{engine_row(kind)} " in doctor.stdout, doctor.stdout  # the row is named after the engine
    assert f"{kind} " in doctor.stdout and f"{url} (DOCKER_HOST)" in doctor.stdout, doctor.stdout
    assert f"files on bind mounts belong to uid {user.pw_uid}" in doctor.stdout, doctor.stdout


def test_train_on_a_rootless_engine_leaves_outputs_owned_by_the_user(rootless, user, checkout, fashion_mnist):
    _, url = rootless
    outputs = checkout / f"outputs-{time.monotonic_ns()}"
    train = as_user(
        user,
        [*TRAIN[:4], "--data-dir", str(fashion_mnist), "--output-dir", str(outputs), *TRAIN[4:]],
        checkout,
        DOCKER_HOST=url,
    )
    assert train.returncode == 0, train.stdout[-2000:] + train.stderr[-2000:]
    (run,) = [path for path in outputs.iterdir() if not path.is_symlink()]
    assert (run / "model.keras").is_file() and json.loads((run / "metrics.json").read_text())
    assert owned_by_others(outputs, user.pw_uid) == []


def test_the_container_suite_passes_on_a_rootless_engine(rootless, user, checkout):
    _, url = rootless
    suite = as_user(user, ["invoke", "test", "--", *CONTAINER_SUBSET], checkout, DOCKER_HOST=url)
    assert suite.returncode == 0, suite.stdout[-3000:]
    assert " passed" in suite.stdout
    assert owned_by_others(checkout / "reports", user.pw_uid) == []


def test_a_context_naming_the_users_own_socket_is_the_engine_doctor_names(user, checkout):
    """The user's only way to an engine is a docker context (no DOCKER_HOST, not in the docker group)."""
    url = engines(user)[engine.ROOTLESS_DOCKER]
    reachable(url)
    config = checkout / ".docker-config"
    made = as_user(user, ["docker", "context", "create", "own", "--docker", f"host={url}"], checkout,
                   DOCKER_CONFIG=str(config))  # fmt: skip
    used = as_user(user, ["docker", "context", "use", "own"], checkout, DOCKER_CONFIG=str(config))
    assert made.returncode == used.returncode == 0, made.stderr + used.stderr
    doctor = as_user(user, ["invoke", "doctor"], checkout, DOCKER_CONFIG=str(config))
    assert "rootless Docker " in doctor.stdout and f"context 'own' at {url}" in doctor.stdout, doctor.stdout


def test_with_two_engines_the_image_is_built_and_run_on_the_contexts_engine_only(
    user, checkout, client, fashion_mnist
):
    """As root, whose default engine (/var/run/docker.sock) answers too: a context naming the rootless
    dockerd gets the build and the run; the default engine sees neither."""
    url = engines(user)[engine.ROOTLESS_DOCKER]
    contexts_engine = reachable(url)
    if BASE_IMAGE:
        load_images(contexts_engine, user, url, engine.ROOTLESS_DOCKER, [])
    name = f"tfdock-ctx{os.getpid()}"
    config = Path(tempfile.mkdtemp(prefix="tfdock-ctx-"))
    outputs = Path(tempfile.mkdtemp(prefix="tfdock-ctx-out-"))
    outputs.chmod(0o755)
    env = {**os.environ, "DOCKER_CONFIG": str(config), "INVOKE_TFDOCK_IMAGE": name}
    env.pop("DOCKER_HOST", None)
    env.pop("DOCKER_CONTEXT", None)
    since = int(time.time())
    try:
        for step in (["create", "ctx", "--docker", f"host={url}"], ["use", "ctx"]):
            subprocess.run(["/usr/bin/docker", "context", *step], env=env, check=True, capture_output=True)
        train = subprocess.run(
            [*TRAIN[:4], "--data-dir", str(fashion_mnist), "--output-dir", str(outputs), *TRAIN[4:]],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=TASK_TIMEOUT_S, check=False,
        )  # fmt: skip
        assert train.returncode == 0, train.stdout[-2000:] + train.stderr[-2000:]
        assert f"on context 'ctx' at {url}" in train.stderr + train.stdout
        built = contexts_engine.images.get(f"{name}:latest-cpu")
        assert built.labels[image.HASH_LABEL] == image.content_hash("cpu")
        assert client.images.list(name=name) == []
        seen = client.events(
            since=since, until=int(time.time()) + 1, decode=True, filters={"type": "container"}
        )
        assert [event for event in seen if name in json.dumps(event)] == []
        ran = contexts_engine.events(since=since, until=int(time.time()) + 1, decode=True,
                                     filters={"type": "container", "event": "create"})  # fmt: skip
        assert any(name in json.dumps(event) for event in ran)
        assert any(path.name == "model.keras" for path in outputs.rglob("*"))
    finally:
        for tag in contexts_engine.images.list(name=name):
            contexts_engine.images.remove(tag.id, force=True)
        shutil.rmtree(config, ignore_errors=True)
        shutil.rmtree(outputs, ignore_errors=True)
