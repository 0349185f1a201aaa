"""Soak, on the engine tfdock resolves (DOCKER_HOST, DOCKER_CONTEXT, the current context): many short tasks
back to back, then several trainings at once; nothing of the project may be left (containers, networks,
volumes), and after `invoke clean` the engine's disk use must be back within 50 MB of where it started.

    python benchmarks/engine_soak.py [--tasks 100] [--trainings 4] [--shared]
    DOCKER_HOST=unix:///run/user/1001/podman/podman.sock python benchmarks/engine_soak.py

--shared is for an engine that runs other work at the same time (CI's rootful dockerd while other suites
run): `invoke clean` would remove that work's containers, and the engine's disk use moves with its builds.
Then only the soak's own containers are counted and removed (its tasks by name, its trainings by their
output dirs), and the disk comparison holds only when no image was added or removed meanwhile.

Writes benchmarks/results/engine_soak-<engine kind>.json; exits 1 when a goal is missed (each one named).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from tfdock_host import engine, image, workbench  # noqa: E402
from tfdock_host.run import PROJECT_LABEL, execute, task_spec  # noqa: E402
from tfdock_host.settings import load  # noqa: E402

MB = 1e6
DISK_GOAL_MB = 50
TRAIN_ARGS = ["--epochs", "1", "--", "--limit-train", "2000"]


def disk_bytes(client) -> int:
    """What the engine stores: image layers, containers' writable layers, volumes."""
    usage = client.df()
    containers = sum(container.get("SizeRw") or 0 for container in usage.get("Containers") or [])
    volumes = [(volume.get("UsageData") or {}).get("Size") or 0 for volume in usage.get("Volumes") or []]
    return int(usage.get("LayersSize") or 0) + containers + sum(size for size in volumes if size > 0)


def image_ids(client) -> set[str]:
    return {str(listed.id) for listed in client.images.list(all=True)}


def project_containers(client, own: Callable[[Any], bool]) -> list[Any]:
    containers = client.containers.list(all=True, filters={"label": f"{PROJECT_LABEL}=tfdock"})
    return [container for container in containers if own(container)]


def leftovers(client, own: Callable[[Any], bool], volumes_before: set[str]) -> dict[str, list[str]]:
    """The project's containers and networks (those `own` accepts: a network by its containers, or, when it
    has none, by its name) and the dangling volumes that were not there before."""
    containers = project_containers(client, own)
    names = {container.name for container in containers}
    networks = client.networks.list(filters={"label": f"{PROJECT_LABEL}=tfdock"}, greedy=True)
    return {
        "containers": sorted(names),
        "networks": [
            network.name
            for network in networks
            if any(own(member) for member in network.containers) or network.name in names
        ],
        "volumes": sorted(
            {volume.name for volume in client.volumes.list(filters={"dangling": True})} - volumes_before
        ),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100)
    parser.add_argument("--trainings", type=int, default=4)
    parser.add_argument("--shared", action="store_true", help="the engine runs other work meanwhile")
    args = parser.parse_args()
    settings = load()
    client = engine.connect()
    described = engine.current()
    tag = image.ensure(settings, settings.variant, "runtime")
    volumes_before = {volume.name for volume in client.volumes.list(filters={"dangling": True})}
    images_before = image_ids(client)
    disk_before = disk_bytes(client)

    outputs = Path(tempfile.mkdtemp(prefix="tfdock-soak-"))
    task_names: set[str] = set()

    def own(container: Any) -> bool:
        """The soak's: one of its tasks, or a training writing under its output dir (--shared); any
        container of the project otherwise."""
        if not args.shared:
            return True
        mounts = container.attrs.get("Mounts") or []
        return container.name in task_names or any(
            str(mount.get("Source", "")).startswith(str(outputs)) for mount in mounts
        )

    started = time.monotonic()
    failed_tasks = 0
    for _ in range(args.tasks):
        spec = task_spec("soak", tag, ["true"])
        task_names.add(spec.name)
        failed_tasks += execute(spec) != 0
    tasks_s = time.monotonic() - started

    outputs.chmod(0o755)
    data = ["--data-dir", settings.fashion_mnist_dir] if settings.fashion_mnist_dir else []
    started = time.monotonic()
    train = [sys.executable, "-m", "invoke", "train", *data]
    trainings = [
        subprocess.Popen(
            [*train, "--output-dir", str(outputs / str(index)), *TRAIN_ARGS],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for index in range(args.trainings)
    ]
    failed_trainings = sum(process.wait() != 0 for process in trainings)
    trainings_s = time.monotonic() - started

    left = leftovers(client, own, volumes_before)
    if args.shared:  # what `invoke clean` does, to the soak's own containers only
        for container in project_containers(client, own):
            container.remove(force=True)
    else:
        workbench.clean(settings, remove_images=False)
    others_changed_images = image_ids(client) != images_before
    disk_delta_mb = (disk_bytes(client) - disk_before) / MB
    result = {
        "engine": described.summary(),
        "tasks": args.tasks,
        "tasks_failed": failed_tasks,
        "tasks_seconds": round(tasks_s, 1),
        "seconds_per_task": round(tasks_s / max(args.tasks, 1), 2),
        "trainings_at_once": args.trainings,
        "trainings_failed": failed_trainings,
        "trainings_seconds": round(trainings_s, 1),
        "left_behind": left,
        "shared_engine": args.shared,
        # Another user's build or removal moves the engine's disk use by GBs: then no figure.
        "disk_delta_mb_after_clean": None if others_changed_images else round(disk_delta_mb, 1),
        "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    missed = [
        *([f"{failed_tasks} of {args.tasks} tasks failed"] if failed_tasks else []),
        *([f"{failed_trainings} of {args.trainings} trainings failed"] if failed_trainings else []),
        *[f"left {len(names)} {kind}: {', '.join(names)}" for kind, names in left.items() if names],
        *(
            [f"disk use {disk_delta_mb:+.1f} MB after clean"]
            if not others_changed_images and abs(disk_delta_mb) > DISK_GOAL_MB
            else []
        ),
    ]
    result["missed"] = missed
    results = ROOT / "benchmarks" / "results" / f"engine_soak-{described.kind.replace(' ', '-').lower()}.json"
    if others_changed_images:
        print("disk: images were added or removed on the engine meanwhile (not by the soak): no figure")
    results.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
