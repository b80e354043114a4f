"""The collection as others get it: its declared dependencies are the collections the pinned ansible package bundles
(at those versions), the provider modules it calls load, one version everywhere, and the built artifact holds the
collection and nothing of the lab, the bench or the tests."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
INSTALLED = (
    Path(sys.executable).resolve().parents[1] / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}"
)


def installed_version(name: str) -> str | None:
    namespace, collection = name.split(".")
    for site in map(Path, sys.path):
        manifest = site / "ansible_collections" / namespace / collection / "MANIFEST.json"
        if manifest.is_file():
            return json.loads(manifest.read_text())["collection_info"]["version"]
    return None


def test_requirements_and_galaxy_name_the_bundled_collections_at_their_versions():
    requirements = {
        c["name"]: c["version"] for c in yaml.safe_load((ROOT / "requirements.yml").read_text())["collections"]
    }
    galaxy = yaml.safe_load((ROOT / "galaxy.yml").read_text())
    assert {name: spec.removeprefix(">=") for name, spec in galaxy["dependencies"].items()} == requirements
    assert {name: installed_version(name) for name in requirements} == requirements
    assert "hetzner.hcloud" in requirements


def test_every_collection_the_code_calls_is_declared():
    used = set()
    for path in [*ROOT.glob("roles/**/*.yml"), *ROOT.glob("playbooks/**/*.yml")]:
        # a task's module, by its fully qualified name at the start of a line
        used |= set(
            re.findall(r"^\s+(?:- )?([a-z][a-z0-9_]*\.[a-z][a-z0-9_]*)\.[a-z][a-z0-9_]*:", path.read_text(), re.M)
        )
    used -= {"ansible.builtin", "mojorust.dr"}
    declared = {c["name"] for c in yaml.safe_load((ROOT / "requirements.yml").read_text())["collections"]}
    assert used <= declared, f"called but not declared: {sorted(used - declared)}"


def test_the_hcloud_modules_load_and_reach_for_the_api(tmp_path):
    """Before, hetzner.hcloud.server failed at once for want of requests (which the unit test accepted)."""
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(ROOT / "collections"), ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"))
    argv = [str(Path(sys.executable).parent / "ansible"), "localhost", "-c", "local", "-m", "hetzner.hcloud.server",
            "-e", f"ansible_python_interpreter={sys.executable}",
            "-a", "name=drtest state=absent api_token=not-a-real-token api_endpoint=http://127.0.0.1:9/v1"]  # fmt: skip
    result = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    out = result.stdout + result.stderr
    assert result.returncode != 0
    assert "Failed to import the required Python library" not in out, out
    assert re.search(r"[Cc]onnection|refused|HTTPConnectionPool", out), out


def test_one_version_everywhere():
    version = yaml.safe_load((ROOT / "galaxy.yml").read_text())["version"]
    pyproject = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M).group(1)
    assert pyproject == version
    added = {p.name: re.search(r"version_added: (\S+)", p.read_text()).group(1)
             for p in (ROOT / "plugins").glob("*/*.py") if "version_added:" in p.read_text()}  # fmt: skip
    later = {
        name: v for name, v in added.items() if tuple(map(int, v.split("."))) > tuple(map(int, version.split(".")))
    }
    assert later == {}, f"added in a version after {version}: {later}"


def test_the_built_artifact_is_the_collection_alone(tmp_path):
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(ROOT / "collections"))
    build = subprocess.run([str(Path(sys.executable).parent / "ansible-galaxy"), "collection", "build", str(ROOT),
                            "--output-path", str(tmp_path)], capture_output=True, text=True, env=env)  # fmt: skip
    assert build.returncode == 0, build.stdout + build.stderr
    [artifact] = tmp_path.glob("mojorust-dr-*.tar.gz")
    with tarfile.open(artifact) as tar:
        names = tar.getnames()
    tops = {n.split("/")[0] for n in names}
    assert {"roles", "playbooks", "plugins", "meta", "README.md", "MANIFEST.json"} <= tops
    assert not tops & {"lab", "bench", "tests", "molecule", "inventories", "mojorust_dr", "reports", "collections"}
    assert not [n for n in names if "lab_secrets" in n or n.endswith(".asc")]
