"""The containers around training: a shell, evaluation, JupyterLab, TensorBoard; and cleaning up after all.

Same image and house rules as training (run.task_spec); services publish their port on 127.0.0.1 only.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

from tfdock_host import console, image
from tfdock_host.engine import connect
from tfdock_host.run import DATA_DIR, OUTPUT_DIR, PROJECT_LABEL, WORKSPACE, Mount, execute, task_spec
from tfdock_host.settings import ROOT, Settings

if TYPE_CHECKING:
    from docker import DockerClient
    from docker.models.images import Image

JUPYTER_PORT = 8888
TENSORBOARD_PORT = 6006
# The Dockerfile's own title, on images built straight from it (the Dev Containers CLI's); `invoke build`
# replaces it with the project's image name.
DOCKERFILE_LABEL = "org.opencontainers.image.title=tfdock"


def image_label(settings: Settings) -> str:
    """The label every image built for this project carries (image.build_args sets it)."""
    return f"org.opencontainers.image.title={settings.image}"


def shell(settings: Settings, command: list[str]) -> int:
    """An interactive shell (or one command) in the dev image, with data and outputs mounted; asked for
    GPUs, the gpu variant's dev image (TensorFlow's CUDA build)."""
    tag = image.ensure(settings, settings.run_variant, "dev")
    spec = task_spec(
        "shell",
        tag,
        command or ["bash"],
        data_dir=settings.dataset_dir(),
        output_dir=settings.host_path(settings.output_dir),
        gpus=settings.gpu_requests,
        shm_size=settings.shm_size,
        interactive=True,
    )
    return execute(spec)


def evaluate(settings: Settings, run: str, evaluator_args: list[str]) -> int:
    """The project's evaluate entry point on a run; results land where its declared args say."""
    entry = settings.contract.entry("evaluate")
    dataset = settings.dataset_name
    command = entry.argv(
        dataset=dataset, data_dir=DATA_DIR, output_dir=OUTPUT_DIR, run_dir=f"{OUTPUT_DIR}/{run}"
    )
    tag = image.ensure(settings, settings.variant, "runtime")
    spec = task_spec(
        "evaluate",
        tag,
        [*command, *evaluator_args],
        data_dir=settings.dataset_dir(dataset),
        output_dir=settings.host_path(settings.output_dir),
        shm_size=settings.shm_size,
    )
    return execute(spec)


def notebook(settings: Settings, port: int) -> int:
    """JupyterLab in the dev image on 127.0.0.1:PORT, with a fresh token (always required)."""
    token = secrets.token_urlsafe(24)
    notebooks = ROOT / "notebooks"
    notebooks.mkdir(exist_ok=True)
    command = ["jupyter", "lab", "--ip=0.0.0.0", f"--port={JUPYTER_PORT}", "--no-browser"]
    command.append(f"--ServerApp.root_dir={WORKSPACE}")
    console.info(f"JupyterLab: http://127.0.0.1:{port}/lab?token={token}  (Ctrl-C stops it)")
    return _service(
        settings,
        "notebook",
        command,
        port,
        JUPYTER_PORT,
        environment={"JUPYTER_TOKEN": token},
        extra_mounts=(Mount(notebooks, "/workspace/notebooks", read_only=False),),
    )


def tensorboard(settings: Settings, port: int) -> int:
    """TensorBoard over the outputs dir (every run's scalars and profiles) on 127.0.0.1:PORT."""
    command = ["tensorboard", "--logdir", OUTPUT_DIR, "--bind_all", f"--port={TENSORBOARD_PORT}"]
    console.info(f"TensorBoard: http://127.0.0.1:{port}  (Ctrl-C stops it)")
    return _service(settings, "tensorboard", command, port, TENSORBOARD_PORT)


def _service(
    settings: Settings,
    task: str,
    command: list[str],
    host_port: int,
    container_port: int,
    environment: dict[str, str] | None = None,
    extra_mounts: tuple[Mount, ...] = (),
) -> int:
    tag = image.ensure(settings, settings.variant, "dev")
    spec = task_spec(
        task,
        tag,
        command,
        data_dir=settings.dataset_dir(),
        output_dir=settings.host_path(settings.output_dir),
        extra_mounts=extra_mounts,
        environment=environment,
        # A bridge network only to publish the port, and only on the host's loopback.
        shm_size=settings.shm_size,
        network="bridge",
        ports={container_port: host_port},
    )
    return execute(spec)


def devcontainer_images(client: DockerClient) -> list[Image]:
    """The images the Dev Containers CLI built from our Dockerfile (vsc-*): ours, under the CLI's names."""
    return client.images.list(filters={"label": [DOCKERFILE_LABEL, "devcontainer.metadata"]})


def clean(settings: Settings, remove_images: bool) -> None:
    """Remove the project's containers and dangling images; with remove_images, its tagged images too."""
    client = connect()
    containers = client.containers.list(all=True, filters={"label": f"{PROJECT_LABEL}=tfdock"})
    for container in containers:
        container.remove(force=True)
    pruned = client.images.prune(filters={"dangling": True, "label": image_label(settings)})
    tagged = [*client.images.list(name=settings.image), *devcontainer_images(client)] if remove_images else []
    removed = {built.short_id for built in tagged}
    for image_id in removed:
        client.images.remove(image_id, force=True)
    reclaimed = (pruned.get("SpaceReclaimed") or 0) / 1e9
    console.info(
        f"removed {len(containers)} container(s), {len(pruned.get('ImagesDeleted') or [])} dangling image(s) "
        f"({reclaimed:.1f} GB)"
        + (f", {len(removed)} tagged image(s) of {settings.image} and Dev Containers" if removed else "")
    )
