"""Precision by hardware and by accuracy: what the machine runs fast, the accuracy check that keeps or refuses a
faster precision for a model, and `--precision auto` choosing from both (hardware faked where the test needs a
kind of machine it may not run on)."""

import json
import shutil

import pytest

import clinlinker.evaluate.precision as precision
from clinlinker.cli import main
from clinlinker.search.index import read_manifest
from tests.conftest import FIXTURES

GOLD = str(FIXTURES / "corpus" / "links.tsv")
FAST = {"cpu": "test CPU", "cpu_flags": ["avx2", "avx512f", "avx512_bf16"], "torch_cpu_capability": "AVX512",
        "gpu": None, "fast_precisions": ["bf16"], "device": "cpu"}
SLOW = {**FAST, "cpu_flags": ["avx2"], "torch_cpu_capability": "AVX2", "fast_precisions": []}


def test_detect_says_bf16_is_fast_exactly_where_the_cpu_has_the_instructions():
    hardware = precision.detect()
    flags = open("/proc/cpuinfo").read().split()
    # the instructions named here, not the module's own list: AVX-512 BF16 or AMX (docs/benchmarks.md)
    has = "avx512_bf16" in flags or "amx_bf16" in flags or bool(hardware["gpu"] and hardware["gpu"]["bf16"])
    assert ("bf16" in hardware["fast_precisions"]) == has
    assert set(hardware["cpu_flags"]) <= set(flags) and hardware["cpu"]


@pytest.mark.parametrize("flags, gpu, fast", [
    ({"avx2"}, None, []),
    ({"avx2", "avx512f", "avx512_vnni"}, None, []),  # AVX-512 without BF16: bf16 is slower than fp32 there
    ({"avx2", "avx512f", "avx512_bf16"}, None, ["bf16"]),
    ({"avx2", "amx_bf16", "amx_tile"}, None, ["bf16"]),
    ({"avx2"}, {"name": "a GPU", "bf16": True}, ["bf16"]),
    ({"avx2"}, {"name": "an old GPU", "bf16": False}, []),
])
def test_bf16_is_fast_only_with_bf16_instructions_or_a_bf16_gpu(flags, gpu, fast):
    assert precision.fast_precisions(flags, gpu) == fast


@pytest.fixture
def model_and_index(tmp_path, tiny_model_dir, demo_gazetteer, demo_hierarchy, monkeypatch):
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    monkeypatch.setattr(precision, "detect", lambda: SLOW)
    assert main(["index", "--gazetteer", str(demo_gazetteer), "--hierarchy", str(demo_hierarchy), "--model",
                 str(model), "--pooling", "mean", "--out", str(tmp_path / "ix")]) == 0
    return model, tmp_path / "ix"


def _accuracy(model, precision_name, demo_kb) -> dict:
    """Top-1 and top-25 of the gold file, computed here from an index built in `precision_name` (the oracle)."""
    from clinlinker.encode.encoders import DenseEncoder
    from clinlinker.kb.routing import LabelRouting
    from clinlinker.links import read_links
    from clinlinker.linking.linker import Linker
    from clinlinker.search.index import DenseIndex

    links = [link for link in read_links(GOLD) if link.is_clean]
    encoder = DenseEncoder(str(model), pooling="mean", precision=precision_name)
    lists = Linker(DenseIndex.build(demo_kb, encoder), routing=LabelRouting.default()).link(
        [link.span for link in links], 25, labels=[link.label for link in links])
    codes = [[c.code for c in found] for found in lists]
    return {"top1": sum(found[:1] == [link.code] for found, link in zip(codes, links)) / len(links),
            "top25": sum(link.code in found for found, link in zip(codes, links)) / len(links),
            "fingerprint": encoder.fingerprint}


def test_check_measures_fp32_and_bf16_and_keeps_the_verdict_beside_the_model(model_and_index, monkeypatch,
                                                                           demo_kb):
    model, ix = model_and_index
    record = precision.check(ix, [GOLD])
    fp32, bf16 = _accuracy(model, "fp32", demo_kb), _accuracy(model, "bf16", demo_kb)
    for name, expected in (("fp32", fp32), ("bf16", bf16)):
        got = record["accuracy"][name][GOLD]
        assert (got["top1"], got["top25"]) == pytest.approx((expected["top1"], expected["top25"]), abs=1e-4)
    verdict = record["precisions"]["bf16"]
    assert verdict["encoder_fingerprint"] == bf16["fingerprint"] != fp32["fingerprint"]  # measured in bf16
    assert verdict["deltas"][GOLD] == {"top1": round(bf16["top1"] - fp32["top1"], 4),
                                       "top25": round(bf16["top25"] - fp32["top25"], 4)}
    assert verdict["passed"] == all(abs(v) <= precision.TOLERANCE for v in verdict["deltas"][GOLD].values())
    saved = json.loads((model / precision.VERDICT).read_text())
    assert saved["fingerprint"] == read_manifest(ix)["fingerprint"] and saved["precisions"]["bf16"] == verdict
    monkeypatch.setattr(precision, "TOLERANCE", -1.0)  # nothing can pass: the verdict says so
    assert precision.check(ix, [GOLD])["precisions"]["bf16"]["passed"] is False


def _verdict(model, fingerprint, passed):
    (model / precision.VERDICT).write_text(json.dumps({"fingerprint": fingerprint, "precisions": {"bf16": {
        "passed": passed, "gold": "dev.tsv", "worst": "-0.5 points on dev.tsv"}}}))


def test_choose_takes_bf16_only_where_it_is_fast_and_passed(model_and_index):
    model, ix = model_and_index
    fingerprint = read_manifest(ix)["fingerprint"]
    assert precision.choose(str(model), fingerprint, FAST)[0] == "fp32"  # fast here, never checked
    assert "never checked" in precision.choose(str(model), fingerprint, FAST)[1]
    _verdict(model, fingerprint, True)
    assert precision.choose(str(model), fingerprint, FAST)[0] == "bf16"
    assert precision.choose(str(model), fingerprint, SLOW)[0] == "fp32"  # passed, but slow on this machine
    assert precision.choose(str(model), "0" * 64, FAST)[0] == "fp32"  # a verdict of other weights is not used
    _verdict(model, fingerprint, False)
    choice, why = precision.choose(str(model), fingerprint, FAST)
    assert choice == "fp32" and "-0.5 points" in why


def test_index_auto_records_the_choice_and_why(model_and_index, demo_gazetteer, tmp_path, monkeypatch):
    model, ix = model_and_index
    assert read_manifest(ix)["precision"] == "fp32" and "no faster precision" in read_manifest(ix)[
        "precision_choice"]["why"]
    _verdict(model, read_manifest(ix)["fingerprint"], True)
    monkeypatch.setattr(precision, "detect", lambda: FAST)
    assert main(["index", "--gazetteer", str(demo_gazetteer), "--model", str(model), "--pooling", "mean", "--out",
                 str(tmp_path / "ix-auto")]) == 0
    manifest = read_manifest(tmp_path / "ix-auto")
    assert manifest["precision"] == "bf16" and manifest["precision_choice"]["chosen"] == "bf16"
    assert manifest["precision_choice"]["hardware"]["fast_precisions"] == ["bf16"]
    assert main(["index", "--gazetteer", str(demo_gazetteer), "--model", str(model), "--pooling", "mean",
                 "--precision", "fp32", "--out", str(tmp_path / "ix-fixed")]) == 0
    assert read_manifest(tmp_path / "ix-fixed")["precision"] == "fp32"  # an explicit precision is obeyed


def test_precision_command_prints_the_detection_and_the_verdict(model_and_index, capsys):
    _, ix = model_and_index
    assert main(["precision", "--detect", "--index", str(ix), "--gold", GOLD]) == 0
    assert "fast here: fp32 only" in capsys.readouterr().out  # the faked AVX2-only machine
    assert main(["precision", "--index", str(ix), "--gold", GOLD]) == 0
    out = capsys.readouterr().out
    assert "bf16: PASSED" in out or "bf16: FAILED" in out
    assert "verdict written to" in out
