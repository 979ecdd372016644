"""Static checks of the Dockerfiles (no Docker daemon in the test environment)."""

from __future__ import annotations

import re

import pytest

from tests.deploy.rendering import DEPLOY

DOCKERFILES = ("Dockerfile", "Dockerfile.cpu")


def _lines(name: str) -> list[str]:
    text = (DEPLOY / name).read_text().replace("\\\n", " ")
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]


def _base_images(name: str) -> list[str]:
    lines = _lines(name)
    args = dict(re.findall(r"^ARG (\w+)=(\S+)", "\n".join(lines), flags=re.M))
    images = []
    for ln in lines:
        m = re.match(r"FROM (\S+)", ln)
        if m:
            ref = m.group(1)
            ref = re.sub(r"\$\{(\w+)\}", lambda g: args.get(g.group(1), g.group(0)), ref)
            images.append(ref)
    return images


@pytest.mark.parametrize("name", DOCKERFILES)
def test_multi_stage_with_pinned_bases(name):
    images = _base_images(name)
    assert len(images) >= 2, "expected a build stage and a runtime stage"
    for ref in images:
        assert re.search(r":[\w.\-]+$", ref), f"{ref} is not pinned to a tag"
        assert not ref.endswith(":latest") and "$" not in ref, ref


def test_base_images():
    assert all(i.startswith("nvidia/cuda:") and "runtime" in i for i in _base_images("Dockerfile"))
    assert all(re.match(r"python:3\.11\.\d+-slim", i) for i in _base_images("Dockerfile.cpu"))


@pytest.mark.parametrize("name", DOCKERFILES)
def test_runs_entrypoint_as_non_root(name):
    lines = _lines(name)
    users = [ln.split()[1] for ln in lines if ln.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    assert any("deploy/entrypoint.sh" in ln and ln.startswith("COPY") for ln in lines)
    assert any(ln.startswith("ENTRYPOINT") and "iohwatch-entrypoint" in ln for ln in lines)
    assert 'CMD ["run"]' in lines


def test_tensorrt_is_a_build_argument():
    text = " ".join(_lines("Dockerfile"))
    assert "ARG WITH_TENSORRT=0" in text
    assert '".[tensorrt]"' in text


def test_cpu_variant_installs_cpu_torch_first():
    text = " ".join(_lines("Dockerfile.cpu"))
    assert re.search(r"download\.pytorch\.org/whl/cpu torch==2\.13\.0 .*pip install \.", text)
