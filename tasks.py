"""tfdock tasks. `invoke --list` is the menu; `invoke --help TASK` shows a task's options.

Defaults live in invoke.yaml (override with INVOKE_TFDOCK_<KEY>); the work lives in src/tfdock_host.
"""

from __future__ import annotations

import contextlib
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path

from invoke import Collection, Context, Exit, task

# Not installed into the host venv: `invoke` works straight after `pip install -r requirements/host.txt`,
# and every clone (or copier project) runs its own copy of the host package.
sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))

from tfdock_host import settings as project_settings
from tfdock_host.errors import TfdockError
from tfdock_host.settings import Settings


@contextlib.contextmanager
def reported() -> Iterator[None]:
    """The host side's one error printer: an expected failure is one line and an exit code, no traceback."""
    try:
        yield
    except TfdockError as error:
        from tfdock_host import console  # rich: imported when needed, so `invoke --list` stays instant

        console.print_error(error)
        raise Exit(code=error.exit_code) from None
    except KeyboardInterrupt:  # Ctrl-C before a container started: nothing to clean up
        raise Exit(code=130) from None


def settings(c: Context) -> Settings:
    """invoke.yaml and INVOKE_TFDOCK_*, checked (call it inside `reported()`: a bad key is one line)."""
    return project_settings.resolve(c.config.tfdock)


def passthrough(c: Context) -> list[str]:
    """Arguments after a bare `--`, handed to the program in the container."""
    return shlex.split(c.remainder)


def exit_with(code: int) -> None:
    if code:
        raise Exit(code=code)


@task(
    help={
        "variant": "cpu or gpu: which TensorFlow build the image installs (default: invoke.yaml)",
        "target": "Dockerfile stage: runtime (what training runs) or dev (tests, lint, IDE, notebook)",
        "no_cache": "rebuild every layer",
        "tag": "an extra tag for the image, e.g. registry.example.com/team/tfdock:1.0",
        "base_image": "base image (default: invoke.yaml, else the Dockerfile's python:3.11-slim-bookworm)",
        "ca_cert": "CA bundle for pip behind a TLS-intercepting proxy (default: $PIP_CERT, ...)",
        "platform": "linux/amd64 or linux/arm64 (default: the engine's own; another one is tagged -arm64)",
    }
)
def build(c, variant="", target="dev", no_cache=False, tag="", base_image="", ca_cert="", platform=""):
    """Build the project image with BuildKit (cached, pinned)."""
    from tfdock_host import image

    with reported():
        s = settings(c).apply(variant=variant, base_image=base_image, platform=platform)
        request = image.BuildRequest(
            variant=s.variant,
            target=target,
            base_image=s.base_image,
            arch=image.target_arch(s),
            ca_bundle=image.resolve_ca_bundle(ca_cert, s.ca_bundle),
            no_cache=no_cache,
            extra_tags=(tag,) if tag else (),
        )
        image.build(s, request)


@task(help={"upgrade": "move every pin to the newest allowed version, not just resolve what changed"})
def lock(c, upgrade=False):
    """Recompile requirements/*.txt (pinned, hashed) from requirements/*.in with uv."""
    from tfdock_host.lock import REQUIREMENTS, compile_commands

    with c.cd(str(REQUIREMENTS)):
        for command in compile_commands(upgrade):
            c.run(shlex.join(command), echo=True)


@task(
    help={
        "gpus": "GPUs as in `docker run --gpus`: all, none, 2, device=0,2 (default: invoke.yaml)",
        "epochs": "training epochs (default: the trainer's)",
        "batch_size": "per-replica batch size (default: the trainer's)",
        "dataset": "a dataset the project declares (default: invoke.yaml's first)",
        "data_dir": "host dir with the dataset's files, mounted read-only (default: the dataset's dir)",
        "output_dir": "host dir for runs: checkpoints, model, metrics, TensorBoard (default: outputs)",
        "resume": "continue the latest run from its last checkpoint",
        "variant": "image variant: cpu or gpu (default: gpu when GPUs are requested)",
        "shm_size": "the container's /dev/shm (default: invoke.yaml)",
        "debug": "run under debugpy, waiting for your IDE to attach on 127.0.0.1:5678 (dev image)",
        "profile": "capture a TensorFlow profiler trace of steps START:STOP into the run's TensorBoard dir",
        "workers": "train in N containers with MultiWorkerMirroredStrategy (docs/scale.md)",
        "cpus": "CPU quota per training container, e.g. 1 or 1.5 (default: invoke.yaml; unset: no limit)",
        "verbose": "show TensorFlow's start-up messages, which the trainer hides by default",
    }
)
def train(
    c,
    gpus="",
    epochs="",
    batch_size="",
    dataset="",
    data_dir="",
    output_dir="",
    resume=False,
    variant="",
    shm_size="",
    debug=False,
    profile="",
    workers="1",
    cpus="",
    verbose=False,
):
    """Train the model in a container: data in (read-only), model and logs out, owned by you."""
    from tfdock_host import training

    # Numbers arrive as text and are checked by the host package: one line and exit 2 for "abc" or 0.
    with reported():
        s = settings(c).apply(
            gpus=gpus, dataset=dataset, data_dir=data_dir, output_dir=output_dir, variant=variant,
            shm_size=shm_size, cpus=cpus,
        )  # fmt: skip
        options = {
            "epochs": epochs, "batch_size": batch_size, "resume": resume, "profile": profile,
            "verbose": verbose,
        }  # fmt: skip
        workers_count = training.whole_number("--workers", workers)
        exit_with(
            training.train(
                s, debug=debug, workers=workers_count, task_options=options, trainer_args=passthrough(c)
            )
        )


@task(
    iterable=["diff"],
    help={
        "diff": "two runs (dirs or names under the outputs dir) whose receipts to compare: --diff A --diff B",
        "output_dir": "host dir holding the runs (default: outputs)",
    },
)
def runs(c, diff=None, output_dir=""):
    """List the runs with their receipts' key facts: date, commit, dirty, image, test accuracy, machine."""
    from tfdock_host import reproduce as reproduction
    from tfdock_host.errors import UsageError

    with reported():
        s = settings(c).apply(output_dir=output_dir)
        if not diff:
            reproduction.list_runs(s)
        elif len(diff) == 2:
            reproduction.diff_runs(s, *diff)
        else:
            raise UsageError(f"--diff takes two runs, got {len(diff)}", "invoke runs --diff A --diff B")


@task(
    help={
        "exact": "refuse when the run's image is gone, instead of rebuilding it from the run's commit",
        "tolerance": "how far each metric may differ and still agree (default 0: identical)",
        "gpus": "GPUs for the rerun, as in `docker run --gpus` (default: invoke.yaml)",
    }
)
def reproduce(c, run, exact=False, tolerance="0", gpus=""):
    """Rerun RUN (a run dir, e.g. outputs/latest) from its receipt into a new run dir; compare the metrics."""
    from tfdock_host import reproduce as reproduction
    from tfdock_host.errors import UsageError

    with reported():
        try:
            allowed = float(tolerance)
        except ValueError:
            raise UsageError(
                f"invalid --tolerance {tolerance!r}", "--tolerance takes a number >= 0"
            ) from None
        exit_with(reproduction.reproduce(settings(c).apply(gpus=gpus), run, exact=exact, tolerance=allowed))


@task(help={"debug": "run pytest under debugpy, waiting for your IDE to attach on 127.0.0.1:5678"})
def test(c, debug=False):
    """Run the in-container test suite (pytest args after --, e.g. `invoke test -- -k data`)."""
    from tfdock_host import suites

    with reported():
        exit_with(suites.container_tests(settings(c), passthrough(c), debug=debug))


@task
def lint(c):
    """Lint in the container: ruff, ruff format, mypy, hadolint (paths after --)."""
    from tfdock_host import suites

    with reported():
        exit_with(suites.lint(settings(c), passthrough(c)))


@task(help={"gpus": "GPUs for the shell, as in `docker run --gpus` (default: none)"})
def shell(c, gpus=""):
    """Open a shell in the dev image (or run the command after --), data and outputs mounted."""
    from tfdock_host import workbench

    with reported():
        exit_with(workbench.shell(settings(c).apply(gpus=gpus or "none"), passthrough(c)))


@task(
    help={
        "run": "the run under the outputs dir whose model to evaluate (default: latest)",
        "dataset": "a dataset the project declares (default: invoke.yaml's first)",
        "data_dir": "host dir with the dataset's files (default: the dataset's dir)",
    }
)
def evaluate(c, run="latest", dataset="", data_dir=""):
    """Evaluate a run's model: accuracy, loss, confusion matrix (JSON and PNG) into the run's directory."""
    from tfdock_host import workbench

    with reported():
        s = settings(c).apply(dataset=dataset, data_dir=data_dir)
        exit_with(workbench.evaluate(s, run, passthrough(c)))


@task(help={"port": "host port on 127.0.0.1"})
def notebook(c, port=8888):
    """Start JupyterLab in the dev image on 127.0.0.1 (token required, printed)."""
    from tfdock_host import workbench

    with reported():
        exit_with(workbench.notebook(settings(c), port))


@task(help={"port": "host port on 127.0.0.1"})
def tensorboard(c, port=6006):
    """Start TensorBoard on 127.0.0.1 over the outputs dir (scalars and profiles of every run)."""
    from tfdock_host import workbench

    with reported():
        exit_with(workbench.tensorboard(settings(c), port))


@task(help={"all": "also remove the project's tagged images, Dev Containers' vsc-* too (tasks rebuild them)"})
def clean(c, all=False):
    """Remove the project's containers and dangling images (--all: its images too)."""
    from tfdock_host import workbench

    with reported():
        workbench.clean(settings(c), remove_images=all)


@task(help={"gpus": "check GPU access as this `--gpus` value would get it (default: invoke.yaml)"})
def doctor(c, gpus=""):
    """Check the engine, BuildKit, NVIDIA runtime, GPUs in a container, shm, disk, image freshness."""
    from tfdock_host import doctor as checks

    with reported():
        results = checks.run_checks(settings(c), gpus)
        checks.render(results)
        exit_with(checks.exit_code(results))


@task(
    help={
        "quick": "fewer repetitions and early stops: every row in under 15 minutes",
        "only": "run only these benchmarks, comma-separated, e.g. dev_loop,image (all are reported)",
        "gpus": "also the GPU row: images/s of the default training on these GPUs, e.g. all",
    }
)
def bench(c, quick=False, only="", gpus=""):
    """Measure the workflow against its references: table, JSON, plots, docs/performance.md."""
    from tfdock_host import bench as benchmarks

    with reported():
        s = settings(c).apply(gpus=gpus or "none")
        exit_with(benchmarks.run(s, quick, [name for name in only.split(",") if name]))


@task(
    help={
        "workers": "worker pods of the Indexed Job",
        "gpus_per_worker": "nvidia.com/gpu per pod; 0 for CPU only",
        "image": "the image the cluster pulls, e.g. registry.example.com/team/model:0.1.0-gpu",
        "epochs": "training epochs (default: the trainer's)",
        "dataset": "a dataset the project declares (default: invoke.yaml's first)",
        "name": "name of the Job, its Service and the run (default: <image>-train)",
        "namespace": "Kubernetes namespace",
        "data_claim": "PersistentVolumeClaim holding the dataset, mounted read-only (default: <image>-data)",
        "output_claim": "PersistentVolumeClaim for runs, ReadWriteMany (default: <image>-outputs)",
        "output": "where the manifests go",
    }
)
def k8s(
    c,
    workers="2",
    gpus_per_worker="1",
    image="",
    epochs="",
    dataset="",
    name="",
    namespace="default",
    data_claim="",
    output_claim="",
    output="deploy/k8s",
):
    """Render multi-worker training as Kubernetes manifests: an Indexed Job (docs/scale.md)."""
    from tfdock_host import k8s as manifests
    from tfdock_host.training import whole_number

    with reported():
        s = settings(c).apply(dataset=dataset)
        rendered = manifests.from_settings(
            s,
            whole_number("--workers", workers),
            whole_number("--gpus-per-worker", gpus_per_worker, minimum=0),
            image,
            name=name,
            epochs=whole_number("--epochs", epochs) if epochs else None,
            extra_args=passthrough(c),
            data_claim=data_claim,
            output_claim=output_claim,
            namespace=namespace,
        )
        for path in manifests.write(rendered, s.host_path(output)):
            print(path)


# invoke's lowest config level: every setting's default (settings.DEFAULTS), under invoke.yaml and
# INVOKE_TFDOCK_*.
ns = Collection.from_module(sys.modules[__name__])
ns.configure({project_settings.SECTION: project_settings.DEFAULTS})
