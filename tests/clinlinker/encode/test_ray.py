"""`clinlinker index --ray`: the gazetteer encoded in shards by a pool of Ray actors (a local cluster the test
starts and stops) gives the index a local build gives: same manifest, vectors equal within float tolerance."""

import json

import numpy as np
import pytest

from clinlinker.cli import main
from clinlinker.search.index import load_index, read_manifest

pytestmark = pytest.mark.slow

ray = pytest.importorskip("ray")


def test_an_index_encoded_on_ray_equals_the_local_one(demo_gazetteer, demo_hierarchy, tiny_model_dir, tmp_path):
    common = ["index", "--gazetteer", str(demo_gazetteer), "--hierarchy", str(demo_hierarchy), "--model",
              str(tiny_model_dir), "--pooling", "mean", "--precision", "fp32", "--hybrid", "none"]  # the dense index
    assert main(common + ["--out", str(tmp_path / "local")]) == 0
    try:
        assert main(common + ["--out", str(tmp_path / "ray"), "--ray", "--workers", "2", "--ray-shard-size",
                              "40"]) == 0
    finally:
        ray.shutdown()
    local, distributed = read_manifest(tmp_path / "local"), read_manifest(tmp_path / "ray")
    for key in ("engine", "model", "fingerprint", "pooling", "max_length", "precision", "dim", "concepts", "terms",
                "hierarchy_edges", "index_type"):
        assert local[key] == distributed[key], key
    assert local["terms"] > 40 * 3  # several shards
    # Ray did the work: every shard came back from its actors, none of them this process
    assert "encoded_on" not in local
    on_ray = distributed["encoded_on"]["ray"]
    assert on_ray["shards"] == -(-on_ray["texts"] // 40) >= 3 and 1 <= on_ray["actors"] <= 2
    a, b = load_index(tmp_path / "local"), load_index(tmp_path / "ray")
    n = a.faiss_index.ntotal
    np.testing.assert_allclose(a.faiss_index.reconstruct_n(0, n), b.faiss_index.reconstruct_n(0, n), atol=1e-5)
    assert json.loads((tmp_path / "ray" / "concepts.json").read_text()) == json.loads(
        (tmp_path / "local" / "concepts.json").read_text())
