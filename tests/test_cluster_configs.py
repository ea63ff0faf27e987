"""The cluster configs: clusters/values.yaml rendered into launcher and KubeRay files, checked against the
schemas Ray and KubeRay check them with."""

from __future__ import annotations

import copy
import json
import re
import shlex
import subprocess
import sys
import tomllib
from importlib.metadata import version
from pathlib import Path

import jsonschema
import pytest
import yaml

from clusters import render as cluster_config
from clusters.render import render
from tests.waiting import GENEROUS_S

ROOT = Path(__file__).resolve().parents[1]
KUBERAY = ROOT.parent / "shared" / "reference" / "kuberay"
# The values the shipped values.yaml leaves to the user (CHANGE-ME), with test settings.
REQUIRED = {
    "aws.ami": "ami-0123456789abcdef0",
    "aws.gpu_ami": "ami-0fedcba9876543210",
    "aws.worker_profile": "arn:aws:iam::123456789012:instance-profile/cc-refinery-worker",
    "crawl": "CC-MAIN-2024-22",
    "input": ["s3://test-bucket/in/*.warc.gz", "s3://test-bucket/more/a b.warc.gz"],
    "kuberay.image": "registry.example/cc-refinery:1",
    "root": "s3://test-bucket/cc",
}
BUILT = ["aws.yaml", "kuberay/raycluster.yaml", "kuberay/raycronjob-sentinel.yaml", "kuberay/rayjob-curate.yaml",
         "kuberay/rayjob-pipeline.yaml"]
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


def write_values(path: Path, settings: dict) -> Path:
    """The shipped values.yaml with ``settings`` (dotted names) applied."""
    values = yaml.safe_load((ROOT / "clusters" / "values.yaml").read_text())
    for name, value in settings.items():
        *parents, last = name.split(".")
        node = values
        for part in parents:
            node = node[part]
        node[last] = value
    path.write_text(yaml.safe_dump(values))
    return path


def load(path: Path):
    return yaml.safe_load(path.read_text())


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("cluster")
    render(write_values(folder / "values.yaml", REQUIRED), folder / "build")
    return folder / "build"


def _strict(node):
    """Unknown fields are errors, as the API server's strict field validation has them (no CRD schema here
    preserves unknown fields)."""
    if isinstance(node, dict):
        if "properties" in node and "additionalProperties" not in node:
            assert not node.get("x-kubernetes-preserve-unknown-fields")
            node["additionalProperties"] = False
        for value in node.values():
            _strict(value)
    elif isinstance(node, list):
        for value in node:
            _strict(value)
    return node


@pytest.fixture(scope="module")
def crds() -> dict[tuple[str, str], jsonschema.Draft4Validator]:
    """A validator per (apiVersion, kind) served by the KubeRay CRDs."""
    if not KUBERAY.is_dir():
        pytest.skip(f"KubeRay CRD schemas not found at {KUBERAY}")
    validators = {}
    for path in sorted(KUBERAY.glob("ray.io_*.yaml")):
        crd = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        for served in crd["spec"]["versions"]:
            key = (f"{crd['spec']['group']}/{served['name']}", crd["spec"]["names"]["kind"])
            validators[key] = jsonschema.Draft4Validator(_strict(served["schema"]["openAPIV3Schema"]))
    return validators


def problems(validator: jsonschema.Draft4Validator, manifest: dict) -> list[tuple[list, str]]:
    return sorted((list(e.absolute_path), e.message) for e in validator.iter_errors(manifest))


def test_shipped_values_fail_naming_every_unset_value(tmp_path):
    result = subprocess.run([sys.executable, "-m", "clusters.render", "--out", str(tmp_path / "build")],
                            cwd=ROOT, capture_output=True, text=True, timeout=GENEROUS_S)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.splitlines() == [
        f"error: {ROOT / 'clusters' / 'values.yaml'}: set {', '.join(sorted(REQUIRED))} (missing, or still CHANGE-ME)"]
    assert not (tmp_path / "build").exists()


def test_a_target_needs_only_its_own_values(tmp_path):
    aws_only = {name: value for name, value in REQUIRED.items() if name.startswith("aws.")}
    values = write_values(tmp_path / "values.yaml", aws_only)
    assert render(values, tmp_path / "build", ["aws"]) == [tmp_path / "build" / "aws.yaml"]
    with pytest.raises(ValueError, match=r"set crawl, input, kuberay\.image, root \(missing, or still CHANGE-ME\)$"):
        render(values, tmp_path / "build", ["kuberay"])
    with pytest.raises(ValueError, match="^unknown target gcp; known: aws, kuberay$"):
        render(values, tmp_path / "build", ["gcp"])


def test_render_writes_every_config_filled(built, tmp_path, capsys):
    assert sorted(str(p.relative_to(built)) for p in built.rglob("*.yaml")) == BUILT
    for name in BUILT:
        text = (built / name).read_text()
        assert "${" not in text and "CHANGE-ME" not in text
        assert text.startswith(f"# Written by `python -m clusters.render` from templates/{name} ")
    values = write_values(tmp_path / "values.yaml", REQUIRED)
    assert cluster_config.main(["--values", str(values), "--out", str(tmp_path / "b")]) == 0
    assert capsys.readouterr().out == "wrote " + " ".join(str(tmp_path / "b" / name) for name in BUILT) + "\n"


def test_placeholder_rules(tmp_path):
    templates = tmp_path / "templates"
    (templates / "t").mkdir(parents=True)
    (templates / "t" / "_part.yaml").write_text("inner: ${n}\n")
    (templates / "t" / "doc.yaml").write_text(
        "whole: ${n}\ntext: n=${n} list=${l} s=${s}\nlist: ${l}\noptional: ${none}\nitems:\n  - ${none}\n  - a\n"
        "part: ${_part}\n")
    values = tmp_path / "values.yaml"
    values.write_text("n: 3\nl: [a, b]\ns: x y\nnone: null\n")
    assert render(values, tmp_path / "out", templates=templates) == [tmp_path / "out" / "t" / "doc.yaml"]
    assert load(tmp_path / "out" / "t" / "doc.yaml") == {
        "whole": 3, "text": 'n=3 list=["a", "b"] s=x y', "list": ["a", "b"], "items": ["a"], "part": {"inner": 3}}

    (templates / "t" / "bad.yaml").write_text("a: x${none}\nb: ${missing.key}\nc: ${u}\nd: ${_part}\n")
    values.write_text("n: [CHANGE-ME]\nl: []\ns: ''\nnone: null\nu: s3://CHANGE-ME/x\n")
    with pytest.raises(ValueError) as failed:
        render(values, tmp_path / "again", templates=templates)
    assert str(failed.value) == f"{values}: set missing.key, n, none, u (missing, or still CHANGE-ME)"
    assert not (tmp_path / "again").exists()


def test_launcher_config_is_valid_for_ray(built):
    import ray
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = load(built / "aws.yaml")
    schema_path = Path(ray.__file__).parent / "autoscaler" / "ray-schema.json"
    jsonschema.validate(config, json.loads(schema_path.read_text()))
    prepared = prepare_config(copy.deepcopy(config))  # what `ray up` does before it talks to AWS
    validate_config(prepared)

    nodes = prepared["available_node_types"]
    assert prepared["head_node_type"] == "head" and nodes["head"]["resources"] == {"CPU": 0}
    assert (nodes["cpu_worker"]["max_workers"], nodes["gpu_worker"]["max_workers"]) == (32, 4)
    assert nodes["cpu_worker"]["node_config"]["InstanceMarketOptions"] == {"MarketType": "spot"}
    assert "InstanceMarketOptions" not in nodes["gpu_worker"]["node_config"]
    assert [nodes[n]["node_config"]["ImageId"] for n in ("head", "cpu_worker", "gpu_worker")] == [
        REQUIRED["aws.ami"], REQUIRED["aws.ami"], REQUIRED["aws.gpu_ami"]]
    for name in ("cpu_worker", "gpu_worker"):
        assert nodes[name]["node_config"]["IamInstanceProfile"] == {"Arn": REQUIRED["aws.worker_profile"]}
    assert prepared["provider"] == {"type": "aws", "region": "us-east-1", "cache_stopped_nodes": False}
    assert prepared["auth"] == {"ssh_user": "ubuntu"}  # optional values unset: left out
    assert not {"KeyName", "SubnetIds"} & {key for node in nodes.values() for key in node["node_config"]}

    # The commands each node type runs, as Ray merges them: Java 17 everywhere, the GPU vLLM only on GPU nodes.
    ray_pin = f"'ray[default,data]=={version('ray')}'"
    java = "sudo apt-get -o DPkg::Lock::Timeout=600 install -y openjdk-17-jre-headless python3-venv"
    cpu_install = f"cd ~/cc-refinery && ~/venv/bin/pip install . {ray_pin}"
    gpu_install = f"cd ~/cc-refinery && ~/venv/bin/pip install '.[llm-gpu]' {ray_pin}"
    head, cpu, gpu = prepared["head_setup_commands"], prepared["worker_setup_commands"], \
        nodes["gpu_worker"]["worker_setup_commands"]
    assert head == cpu == config["setup_commands"] and "worker_setup_commands" not in nodes["cpu_worker"]
    assert gpu == [*cpu[:-1], gpu_install] and cpu[-1] == cpu_install
    assert java in cpu and "llm-gpu" in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    start = "cd ~/cc-refinery && ulimit -n 65536; RAY_AUTH_MODE=token ray start"  # token auth; jobs find recipes
    assert prepared["head_start_ray_commands"] == ["ray stop", f"{start} --head --port=6379 --object-manager-port=8076"
                                                   " --autoscaling-config=~/ray_bootstrap_config.yaml"
                                                   " --dashboard-host=0.0.0.0"]
    assert prepared["worker_start_ray_commands"] == [
        "ray stop", f"{start} --address=$RAY_HEAD_IP:6379 --object-manager-port=8076"]
    assert prepared["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"
    project = {remote: Path(local) for remote, local in prepared["file_mounts"].items()
               if remote.startswith("~/cc-refinery/")}
    assert project == {f"~/cc-refinery/{name}": ROOT / name for name in ("pyproject.toml", "README.md", "operators",
                                                                         "jobs")}
    assert all(path.exists() for path in project.values())


def test_optional_aws_values_are_used_when_set(tmp_path):
    from ray.autoscaler._private.util import prepare_config, validate_config

    settings = {**REQUIRED, "aws.key_name": "me", "aws.ssh_private_key": "~/.ssh/me.pem",
                "aws.subnet_ids": ["subnet-1", "subnet-2"]}
    render(write_values(tmp_path / "values.yaml", settings), tmp_path / "build", ["aws"])
    config = load(tmp_path / "build" / "aws.yaml")
    validate_config(prepare_config(config))
    assert config["auth"] == {"ssh_user": "ubuntu", "ssh_private_key": "~/.ssh/me.pem"}
    for node in config["available_node_types"].values():
        assert (node["node_config"]["KeyName"], node["node_config"]["SubnetIds"]) == ("me", ["subnet-1", "subnet-2"])


def test_launcher_validation_rejects_a_misspelled_key(built):
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = load(built / "aws.yaml")
    config["available_node_types"]["cpu_worker"]["max_worker"] = 8
    with pytest.raises(jsonschema.ValidationError, match=r"'max_worker' was unexpected"):
        validate_config(prepare_config(config))


def test_kuberay_manifests_match_the_crds(built, crds):
    manifests = {name: load(built / name) for name in BUILT if name.startswith("kuberay/")}
    assert {(m["apiVersion"], m["kind"]) for m in manifests.values()} == {
        ("ray.io/v1", "RayCluster"), ("ray.io/v1", "RayJob"), ("ray.io/v1", "RayCronJob")}
    for name, manifest in manifests.items():
        assert problems(crds[manifest["apiVersion"], manifest["kind"]], manifest) == [], name
        assert DNS_LABEL.fullmatch(manifest["metadata"]["name"]), name
        assert manifest["metadata"]["labels"] == {"app.kubernetes.io/part-of": "cc-refinery"}

    cluster = manifests["kuberay/raycluster.yaml"]["spec"]
    assert cluster["authOptions"] == {"mode": "token"} and cluster["rayVersion"] == version("ray")
    assert cluster["headGroupSpec"]["rayStartParams"] == {"num-cpus": "0"}
    cpu, gpu = cluster["workerGroupSpecs"]
    assert [(g["groupName"], g["minReplicas"], g["maxReplicas"]) for g in (cpu, gpu)] == [("cpu", 0, 32), ("gpu", 0, 4)]
    assert gpu["template"]["spec"]["containers"][0]["resources"]["limits"] == {
        "cpu": "8", "memory": "64Gi", "nvidia.com/gpu": 1}
    pods = [group["template"]["spec"] for group in (cluster["headGroupSpec"], cpu, gpu)]
    assert {container["image"] for pod in pods for container in pod["containers"]} == {REQUIRED["kuberay.image"]}
    assert not any("serviceAccountName" in pod for pod in pods)  # optional, unset
    jobs = [manifests["kuberay/rayjob-curate.yaml"]["spec"], manifests["kuberay/rayjob-pipeline.yaml"]["spec"],
            manifests["kuberay/raycronjob-sentinel.yaml"]["spec"]["jobTemplate"]]
    assert all(job["rayClusterSpec"] == cluster and job["shutdownAfterJobFinishes"] for job in jobs)
    assert manifests["kuberay/raycronjob-sentinel.yaml"]["spec"]["schedule"] == "0 6 * * *"


def _set(manifest: dict, path: list, value) -> None:
    node = manifest
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value


@pytest.mark.parametrize("name, path, value, where, message", [
    ("kuberay/rayjob-curate.yaml", ["spec", "shutdownAfterJobFinish"], True, ["spec"],
     "Additional properties are not allowed ('shutdownAfterJobFinish' was unexpected)"),
    ("kuberay/rayjob-pipeline.yaml", ["spec", "rayClusterSpec", "workerGroupSpecs", 1, "maxReplicas"], "4", None,
     "'4' is not of type 'integer'"),
    ("kuberay/raycluster.yaml", ["spec", "headGroupSpec", "rayStartParams", "num-cpus"], 0, None,
     "0 is not of type 'string'"),
    ("kuberay/raycluster.yaml", ["spec", "workerGroupSpecs", 0, "template", "spec", "containers", 0, "imagePullPolice"],
     "Always", ["spec", "workerGroupSpecs", 0, "template", "spec", "containers", 0],
     "Additional properties are not allowed ('imagePullPolice' was unexpected)"),
    ("kuberay/raycronjob-sentinel.yaml", ["spec", "jobTemplate", "entrypoint"], ["python", "-m", "jobs.sentinel"], None,
     "['python', '-m', 'jobs.sentinel'] is not of type 'string'"),
])
def test_crd_validation_rejects_a_broken_manifest(built, crds, name, path, value, where, message):
    """A misspelled field or a wrong type fails, at its place (``where``, default: the field itself)."""
    manifest = load(built / name)
    _set(manifest, path, value)
    assert problems(crds[manifest["apiVersion"], manifest["kind"]], manifest) == [(where or path, message)]


def test_crd_validation_rejects_a_missing_required_field(built, crds):
    manifest = load(built / "kuberay/raycronjob-sentinel.yaml")
    del manifest["spec"]["schedule"]
    assert problems(crds["ray.io/v1", "RayCronJob"], manifest) == [(["spec"], "'schedule' is a required property")]


def test_entrypoints_name_real_modules_and_recipes(built):
    from jobs.common.recipe import load_model
    from jobs.curate.recipe import Recipe
    from jobs.pipeline import MixtureRecipe

    models = {"curate": Recipe, "pipeline": MixtureRecipe}
    entrypoints = {"kuberay/rayjob-curate.yaml": load(built / "kuberay/rayjob-curate.yaml")["spec"]["entrypoint"],
                   "kuberay/rayjob-pipeline.yaml": load(built / "kuberay/rayjob-pipeline.yaml")["spec"]["entrypoint"],
                   "kuberay/raycronjob-sentinel.yaml":
                       load(built / "kuberay/raycronjob-sentinel.yaml")["spec"]["jobTemplate"]["entrypoint"]}
    loaded = {}
    for name, entrypoint in entrypoints.items():
        python, flag, module, config, recipe, *rest = shlex.split(entrypoint)
        assert (python, flag, config) == ("python", "-m", "--config") and module.startswith("jobs."), name
        job = module.removeprefix("jobs.")
        assert (ROOT / "jobs" / job / "__main__.py").is_file(), name
        assert (ROOT / recipe).is_file(), name
        assert rest[::2] == ["--set"] * (len(rest) // 2) and len(rest) % 2 == 0, name
        if job in models:  # the overrides are keys the job's recipe model accepts
            loaded[job] = load_model(models[job], str(ROOT / recipe), rest[1::2])
    assert (loaded["curate"].input.crawl, loaded["curate"].output.root) == (REQUIRED["crawl"], REQUIRED["root"])
    assert (loaded["pipeline"].root, loaded["pipeline"].input) == (REQUIRED["root"], REQUIRED["input"])
    assert shlex.split(entrypoints["kuberay/raycronjob-sentinel.yaml"]) == [
        "python", "-m", "jobs.sentinel", "--config", "jobs/recipes/schedule.yaml", "--set", f"root={REQUIRED['root']}"]
