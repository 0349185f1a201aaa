"""`invoke k8s` manifests: valid against the Kubernetes schemas, and wired so N workers find each other."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from tfdock_host import contract, k8s, run
from tfdock_host.errors import UsageError
from tfdock_host.training import WORKER_PORT

IMAGE = "registry.example.com/team/digits:0.1.0-gpu"
# A stand-in user project, unlike the example in every name: the manifests take all of it from the contract.
DIGITS = contract.parse(
    {
        "package": "digits",
        "train": {
            "module": "digits.fit",
            "args": ["--data", "{data_dir}", "--out", "{output_dir}", "--set", "{dataset}"],
            "options": {"epochs": "--passes", "resume": "--continue", "run_name": "--name"},
        },
        "datasets": {"scans": {"dir": "data/scans", "files": ["scans.npz"]}},
    }
)


def render(workers, gpus_per_worker, image_ref, **options):
    return k8s.render(DIGITS, workers, gpus_per_worker, image_ref, project="digits", **options)


# The oldest schema kubernetes-validate ships (Indexed Jobs are GA since 1.24) and the newest.
KUBERNETES_VERSIONS = ("1.25.0", kubernetes_validate.utils.latest_version())


def by_kind(manifests: list[dict]) -> dict[str, dict]:
    return {manifest["kind"]: manifest for manifest in manifests}


def trainer_container(job: dict) -> dict:
    (container,) = job["spec"]["template"]["spec"]["containers"]
    return container


def environment(job: dict) -> dict[str, dict]:
    return {variable["name"]: variable for variable in trainer_container(job)["env"]}


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize(("workers", "gpus"), [(1, 0), (4, 2)])
def test_written_manifests_pass_the_kubernetes_schemas(tmp_path: Path, version, workers, gpus):
    paths = k8s.write(render(workers, gpus, IMAGE, epochs=3), tmp_path)

    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(path.name for path in paths)
    for path in paths:
        (document,) = yaml.safe_load_all(path.read_text())
        kubernetes_validate.validate(document, version, strict=True)


def test_an_indexed_job_runs_every_worker_at_once_and_fails_with_any_of_them():
    job = by_kind(render(3, 1, IMAGE))["Job"]

    assert job["spec"]["completionMode"] == "Indexed"
    assert job["spec"]["completions"] == job["spec"]["parallelism"] == 3
    assert job["spec"]["backoffLimit"] == 0
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"


@pytest.mark.parametrize("workers", [2, 5])
def test_tf_config_names_every_worker_by_its_stable_pod_dns_name(workers):
    manifests = by_kind(render(workers, 1, IMAGE, name="fmnist"))
    job, service = manifests["Job"], manifests["Service"]
    pod = job["spec"]["template"]

    # Indexed Job pods are named <job>-<index>; with subdomain = a headless Service selecting them, that name
    # plus the Service's resolves to the pod.
    assert service["spec"]["clusterIP"] == "None"
    assert pod["spec"]["subdomain"] == service["metadata"]["name"]
    assert service["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert service["spec"]["publishNotReadyAddresses"] is True
    hosts = [f"{job['metadata']['name']}-{index}.{service['metadata']['name']}" for index in range(workers)]

    variables = environment(job)
    names = list(variables)
    assert names.index("WORKER_INDEX") < names.index("TF_CONFIG"), "$(VAR) only sees variables above it"
    field = variables["WORKER_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"]
    assert field == "metadata.annotations['batch.kubernetes.io/job-completion-index']"
    for index in range(workers):
        expanded = variables["TF_CONFIG"]["value"].replace("$(WORKER_INDEX)", str(index))
        assert json.loads(expanded) == {
            "cluster": {"worker": [f"{host}:{WORKER_PORT}" for host in hosts]},
            "task": {"type": "worker", "index": index},
        }


def test_workers_accept_grpc_from_each_other_only():
    manifests = by_kind(render(2, 0, IMAGE))
    policy, pod_labels = (
        manifests["NetworkPolicy"],
        manifests["Job"]["spec"]["template"]["metadata"]["labels"],
    )

    assert policy["spec"]["podSelector"]["matchLabels"] == pod_labels
    (ingress,) = policy["spec"]["ingress"]
    assert ingress["from"] == [{"podSelector": {"matchLabels": pod_labels}}]
    assert ingress["ports"] == [{"protocol": "TCP", "port": WORKER_PORT}]


def test_gpu_workers_accept_every_port_from_each_other_for_nccl():
    manifests = by_kind(render(2, 1, IMAGE))
    pod_labels = manifests["Job"]["spec"]["template"]["metadata"]["labels"]

    (ingress,) = manifests["NetworkPolicy"]["spec"]["ingress"]
    assert ingress == {"from": [{"podSelector": {"matchLabels": pod_labels}}]}


def test_one_worker_keeps_the_local_strategy():
    assert "TF_CONFIG" not in environment(by_kind(render(1, 4, IMAGE))["Job"])


def test_gpus_are_limits_and_tolerated_only_when_asked_for():
    gpu_job = by_kind(render(2, 4, IMAGE))["Job"]
    cpu_job = by_kind(render(2, 0, IMAGE))["Job"]

    assert trainer_container(gpu_job)["resources"]["limits"] == {"nvidia.com/gpu": 4}
    assert gpu_job["spec"]["template"]["spec"]["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert gpu_job["spec"]["template"]["spec"]["nodeSelector"] == {"kubernetes.io/arch": "amd64"}
    assert "nodeSelector" not in cpu_job["spec"]["template"]["spec"]  # a multi-arch cpu tag runs anywhere
    assert "nvidia.com/gpu" not in json.dumps(cpu_job)


def test_pods_run_unprivileged_on_a_read_only_root_with_writable_tmp_shm_and_outputs():
    job = by_kind(render(2, 1, IMAGE, data_claim="fmnist", output_claim="runs"))["Job"]
    pod_spec, container = job["spec"]["template"]["spec"], trainer_container(job)

    assert pod_spec["securityContext"]["runAsNonRoot"] is True
    assert pod_spec["securityContext"]["runAsUser"] == run.IMAGE_USER_IDS_WHEN_ROOT[0]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    volumes = {volume["name"]: volume for volume in pod_spec["volumes"]}
    mounts = {mount["mountPath"]: mount for mount in container["volumeMounts"]}
    assert mounts["/data"]["readOnly"] is True
    assert volumes[mounts["/data"]["name"]]["persistentVolumeClaim"]["claimName"] == "fmnist"
    assert volumes[mounts["/outputs"]["name"]]["persistentVolumeClaim"] == {"claimName": "runs"}
    assert volumes[mounts["/tmp"]["name"]] == {"name": "tmp", "emptyDir": {}}
    assert volumes[mounts["/dev/shm"]["name"]]["emptyDir"]["medium"] == "Memory"
    assert environment(job)["HOME"]["value"].startswith("/tmp/")


def test_claims_have_the_access_modes_the_workers_need():
    claims = {
        manifest["metadata"]["name"]: manifest["spec"]["accessModes"]
        for manifest in render(2, 1, IMAGE, data_claim="fmnist", output_claim="runs")
        if manifest["kind"] == "PersistentVolumeClaim"
    }
    assert claims == {"fmnist": ["ReadOnlyMany"], "runs": ["ReadWriteMany"]}


@pytest.fixture
def fake_python(tmp_path: Path) -> Path:
    """A `python` on PATH that prints its arguments, one a line."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "python"
    script.write_text('#!/bin/sh\nprintf "%s\\n" "$@"\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return bin_dir


@pytest.mark.parametrize("started_before", [False, True])
def test_the_pod_starts_the_run_once_and_resumes_it_on_every_later_attempt(
    tmp_path: Path, fake_python: Path, started_before
):
    container = trainer_container(by_kind(render(2, 1, IMAGE, name="fmnist", epochs=3))["Job"])
    run_dir = tmp_path / "outputs" / "fmnist"
    if started_before:
        run_dir.mkdir(parents=True)
        (run_dir / "config.json").write_text("{}")
    env = {"PATH": f"{fake_python}:{os.environ['PATH']}", "TFDOCK_RUN_DIR": str(run_dir)}

    argv = subprocess.run(container["args"], env=env, capture_output=True, text=True, check=True).stdout

    arguments = argv.splitlines()
    assert arguments[:8] == ["-m", "digits.fit", "--data", "/data", "--out", "/outputs", "--set", "scans"]
    assert arguments[-2:] == (["--continue", str(run_dir)] if started_before else ["--name", "fmnist"])
    assert arguments[8:10] == ["--passes", "3"]


def test_names_default_to_the_projects_and_shm_follows_the_setting():
    manifests = render(2, 1, IMAGE, shm_size="512m")
    names = {(manifest["kind"], manifest["metadata"]["name"]) for manifest in manifests}
    assert ("Job", "digits-train") in names and ("PersistentVolumeClaim", "digits-outputs") in names
    job = by_kind(manifests)["Job"]
    assert job["metadata"]["labels"]["app.kubernetes.io/name"] == "digits"
    volumes = {volume["name"]: volume for volume in job["spec"]["template"]["spec"]["volumes"]}
    assert volumes["shm"]["emptyDir"]["sizeLimit"] == "512Mi"


def test_an_entry_point_without_resume_flags_starts_afresh_and_without_epochs_says_so():
    plain = contract.parse(
        {"package": "p", "train": {"command": ["p-train"]}, "datasets": {"d": {"dir": "d", "files": ["f"]}}}
    )
    (job,) = [m for m in k8s.render(plain, 1, 0, IMAGE, project="p") if m["kind"] == "Job"]
    assert trainer_container(job)["args"][2] == 'exec p-train "$@"\n'
    with pytest.raises(UsageError, match="--epochs"):
        k8s.render(plain, 1, 0, IMAGE, project="p", epochs=2)


def test_write_replaces_an_earlier_render_but_not_other_files(tmp_path: Path):
    k8s.write(render(2, 1, IMAGE, name="first"), tmp_path)
    (tmp_path / "kustomization.yaml").write_text("resources: []\n")

    k8s.write(render(2, 1, IMAGE, name="second"), tmp_path)

    names = {path.name for path in tmp_path.iterdir()}
    assert "job-second.yaml" in names and "kustomization.yaml" in names
    assert not any("first" in name for name in names)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        pytest.param({"workers": 0}, "--workers 0", id="no workers"),
        pytest.param({"gpus_per_worker": -1}, "--gpus-per-worker -1", id="negative gpus"),
        pytest.param({"image_ref": ""}, "--image ''", id="empty image"),
        pytest.param({"image_ref": "tfdock :latest"}, "--image", id="image with a space"),
        pytest.param({"epochs": 0}, "--epochs 0", id="no epochs"),
        pytest.param({"name": "Tfdock_Train"}, "job name", id="not a DNS label"),
        pytest.param({"name": "t" * 62, "workers": 10}, "too long", id="pod hostnames over 63"),
        pytest.param({"dataset": "cifar10"}, "unknown dataset", id="unknown dataset"),
        pytest.param({"extra_args": ["--name", "x"]}, "--name", id="run-name flag the manifest sets"),
        pytest.param({"data_claim": "same", "output_claim": "same"}, "one claim", id="one claim for both"),
        pytest.param({"extra_args": ["--out=/elsewhere"]}, "--out", id="flag the manifest sets"),
    ],
)
def test_bad_inputs_are_usage_errors(arguments, message):
    call = {"workers": 2, "gpus_per_worker": 1, "image_ref": IMAGE, **arguments}
    with pytest.raises(UsageError, match=re.escape(message)) as raised:
        render(**call)
    assert raised.value.hint
