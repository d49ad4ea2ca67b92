"""Fixtures: one context and a few small models for the whole run (kernel builds are cached by
ATTAMBA_CACHE_DIR / POCL_CACHE_DIR, so later runs are fast)."""
import os
import pathlib
import subprocess

import numpy as np
import pytest

import attamba

REPO = pathlib.Path(__file__).resolve().parents[2]
GOLDEN = REPO / "tests" / "golden"


@pytest.fixture(scope="session")
def ctx():
    with attamba.Context() as c:
        yield c


@pytest.fixture(scope="session")
def tiny(ctx):
    """The "tiny" preset (byte tokenizer, V = 258) with seed 1."""
    with attamba.Model.init(ctx, "tiny", seed=1) as m:
        yield m


@pytest.fixture(scope="session")
def tiny_dir(tiny, tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny")
    tiny.save(d)
    return d


@pytest.fixture(scope="session")
def golden():
    if not GOLDEN.is_dir():
        pytest.skip(f"no golden models at {GOLDEN}")
    return GOLDEN


@pytest.fixture(scope="session")
def cli():
    """A function running the attamba CLI ($ATTAMBA_CLI) and returning its CompletedProcess."""
    path = os.environ.get("ATTAMBA_CLI")
    if not path or not os.access(path, os.X_OK):
        pytest.skip("ATTAMBA_CLI is not set to the attamba executable")

    def run(*args, check=True):
        p = subprocess.run([path, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=600)
        if check and p.returncode != 0:
            raise AssertionError(f"attamba {' '.join(map(str, args))} exited {p.returncode}:\n"
                                 f"{p.stderr.decode(errors='replace')}")
        return p

    return run


def golden_tokens(name):
    import json
    t = json.loads((GOLDEN / name / "tokens.json").read_text())
    return np.asarray(t["tokens"], dtype=np.int32).reshape(t["B"], t["T"])
