"""The layout of ``jobs/`` and ``operators/`` as designed: no import circle, no job package importing another
(the pipeline alone calls jobs, through their packages' public names), ``jobs/common`` and ``operators``
importing no job, and every job package runnable and listed in the README."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import ROOT

JOBS = ("curate", "dedup", "classify", "synthesize", "decontaminate", "export", "pipeline", "sentinel", "report",
        "plan")


def modules(root: Path, tops: tuple[str, ...]) -> dict[str, Path]:
    """``{dotted name: file}`` of every module under the ``tops`` folders of ``root`` (a package by its __init__)."""
    found = {}
    for top in tops:
        for path in sorted((root / top).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The project modules ``name`` imports anywhere in its file (in functions and TYPE_CHECKING blocks too)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def graph(root: Path) -> dict[str, set[str]]:
    known = modules(root, ("jobs", "operators"))
    return {name: imports(name, path, known) for name, path in known.items()}


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in edges.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                group.append(top)
                if top == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return sorted(groups)


def job_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "jobs" and parts[1] in JOBS else None


def breaches(edges: dict[str, set[str]]) -> list[str]:
    """Imports that break the layout, one line each."""
    found = []
    for module, targets in sorted(edges.items()):
        own = job_of(module)
        for target in sorted(targets):
            other = job_of(target)
            if module.startswith("operators") and target.startswith("jobs"):
                found.append(f"{module} -> {target}: operators import no job code")
            elif module.startswith("jobs.common") and (other or target == "jobs.dispatch"):
                found.append(f"{module} -> {target}: jobs.common imports no job")
            elif own and other and other != own and not (own == "pipeline" and target == f"jobs.{other}"):
                found.append(f"{module} -> {target}: a job imports no other job"
                             + (" (the pipeline only through its package)" if own == "pipeline" else ""))
            elif own and target == f"jobs.{own}" and module != target:
                found.append(f"{module} -> {target}: a job's module imports its siblings, not its own package")
    return found


def test_jobs_and_operators_have_no_import_circle():
    assert circles(graph(ROOT)) == []


def test_no_job_imports_another_and_common_imports_no_job():
    assert breaches(graph(ROOT)) == []


def test_the_checks_find_a_circle_and_a_job_importing_another(tmp_path):
    files = {
        "jobs/__init__.py": "",
        "jobs/common/__init__.py": "",
        "jobs/common/cli.py": "from jobs.dedup.job import run\n",
        "jobs/curate/__init__.py": "from jobs.curate.job import run\n",
        "jobs/curate/job.py": "def run():\n    from jobs.curate import steps\n",
        "jobs/curate/steps.py": "from .job import run\n",
        "jobs/dedup/__init__.py": "",
        "jobs/dedup/job.py": "from jobs.curate.steps import x\nfrom jobs.common import cli\n",
        "jobs/pipeline/__init__.py": "",
        "jobs/pipeline/job.py": "from jobs import curate\nfrom jobs.dedup.job import run\n",
        "operators/__init__.py": "",
        "operators/io.py": "import jobs.common.cli\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    edges = graph(tmp_path)
    assert edges["jobs.curate.job"] == {"jobs.curate.steps"}  # `from jobs.curate import steps` is the submodule
    assert edges["jobs.curate.steps"] == {"jobs.curate.job"}  # relative imports resolve
    assert circles(edges) == [["jobs.common.cli", "jobs.dedup.job"], ["jobs.curate.job", "jobs.curate.steps"]]
    assert breaches(edges) == [
        "jobs.common.cli -> jobs.dedup.job: jobs.common imports no job",
        "jobs.dedup.job -> jobs.curate.steps: a job imports no other job",
        "jobs.pipeline.job -> jobs.dedup.job: a job imports no other job (the pipeline only through its package)",
        "operators.io -> jobs.common.cli: operators import no job code",
    ]


def test_every_job_package_runs_as_a_module_and_is_in_the_readme_layout():
    packages = sorted(p.parent.name for p in (ROOT / "jobs").glob("*/__init__.py"))
    assert packages == sorted([*JOBS, "common"])
    assert [job for job in JOBS if not (ROOT / "jobs" / job / "__main__.py").is_file()] == []
    readme = (ROOT / "README.md").read_text()
    layout = readme[readme.index("## Layout"):]
    assert [p for p in packages if f"\n  {p}/" not in layout] == []
