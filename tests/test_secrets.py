"""A planted secret (the S3 secret key the job runs with) appears in nothing the job writes or prints."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest

from tests.conftest import ROOT, write_warc
from tests.test_curate_faults import pages
from tests.waiting import GENEROUS_S

RECIPE = str(ROOT / "jobs" / "recipes" / "fineweb.yaml")


@pytest.mark.slow
def test_a_planted_secret_is_in_no_log_stats_ledger_or_output(tmp_path, s3_server, s3_client):
    secret = f"PLANTED-{uuid.uuid4().hex}"
    s3_client.create_bucket(Bucket="secret")
    s3_client.upload_file(str(write_warc(tmp_path / "fine.warc.gz", pages(5))), "secret", "in/fine.warc.gz")
    s3_client.put_object(Bucket="secret", Key="in/junk.warc.gz", Body=b"not a warc")  # an error path too
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "AKIAPLANTED", "AWS_SECRET_ACCESS_KEY": secret,
           "RAY_USAGE_STATS_ENABLED": "0", "LOG_LEVEL": "DEBUG"}
    done = subprocess.run([sys.executable, "-m", "jobs.curate", "--config", RECIPE,
                           "--set", "input.paths=s3://secret/in/*.warc.gz", "--set", "output.root=s3://secret/out",
                           "--set", f"storage.endpoint_url={s3_server}"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=GENEROUS_S)

    assert done.returncode == 2 and "junk.warc" in done.stderr.splitlines()[-1]  # it ran, and failed the junk
    assert secret not in done.stdout + done.stderr
    keys = [o["Key"] for o in s3_client.list_objects_v2(Bucket="secret", Prefix="out/")["Contents"]]
    assert any(k.endswith("_stats.json") for k in keys) and any("/_ledger/" in k for k in keys)
    for key in keys:
        assert secret.encode() not in s3_client.get_object(Bucket="secret", Key=key)["Body"].read(), key


def test_no_code_of_ours_evaluates_text_or_runs_a_shell():
    """Page text, URLs and model output are data: no ``eval``/``exec``/``compile``, no shell, no pickle
    of anything read, anywhere in ``operators/`` or ``jobs/``."""
    import ast

    banned_calls = {"eval", "exec", "compile", "__import__"}
    banned_attrs = {("os", "system"), ("os", "popen"), ("pickle", "loads"), ("pickle", "load"), ("marshal", "loads")}
    found = []
    for path in sorted([*(ROOT / "operators").rglob("*.py"), *(ROOT / "jobs").rglob("*.py")]):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            if isinstance(func, ast.Name) and func.id in banned_calls:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} {func.id}()")
            if (isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name)
                    and (func.value.id, func.attr) in banned_attrs):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} {func.value.id}.{func.attr}()")
            if any(k.arg == "shell" and not (isinstance(k.value, ast.Constant) and k.value.value is False)
                   for k in node.keywords):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} shell=")
    assert found == []
