import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from clinlinker.cli import main

ROOT = str(Path(__file__).resolve().parents[3])


def run_cli(*args):
    """Run `clinlinker` in a fresh process, as a user would."""
    env = {**os.environ, "PYTHONPATH": ROOT, "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "clinlinker.cli", *map(str, args)], capture_output=True,
                          text=True, env=env, timeout=300)


def test_lexical_index_link_json(demo_gazetteer, demo_hierarchy, tmp_path, capsys):
    out = tmp_path / "ix"
    assert main(["index", "--gazetteer", str(demo_gazetteer), "--hierarchy", str(demo_hierarchy),
                 "--model", "char-ngrams", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["link", "--index", str(out), "--format", "json", "--top-k", "25",
                 "apendicectomía laparoscópica", "dolor de cabeza"]) == 0
    items = json.loads(capsys.readouterr().out)
    assert [item["mention"] for item in items] == ["apendicectomía laparoscópica", "dolor de cabeza"]
    assert len({c["code"] for c in items[0]["candidates"]}) == 25
    assert items[0]["candidates"][0]["code"] == "6025007"
    assert items[1]["candidates"][0]["code"] == "25064002"
    assert set(items[0]["candidates"][0]) == {"code", "preferred_term", "matched_term", "semantic_tag", "score",
                                              "rank", "evidence", "parents", "via"}


@pytest.mark.slow
def test_dense_index_reloads_in_a_new_process(demo_gazetteer, tiny_model_dir, tmp_path):
    out = tmp_path / "ix"
    built = run_cli("index", "--gazetteer", demo_gazetteer, "--model", tiny_model_dir, "--out", out)
    assert built.returncode == 0, built.stderr
    linked = run_cli("link", "--index", out, "--format", "tsv", "--top-k", "5", "colecistectomía por laparoscopia")
    assert linked.returncode == 0, linked.stderr
    lines = linked.stdout.strip().split("\n")
    assert lines[0].split("\t")[:3] == ["mention", "rank", "code"]
    assert len(lines) == 6
    assert lines[1].split("\t")[2] == "45595009"


def test_link_reads_mentions_or_a_linking_tsv(lexical_index_dir, tmp_path, capsys):
    mentions = tmp_path / "mentions.txt"
    mentions.write_text("fiebre\n\nTAC\n", encoding="utf-8")
    assert main(["link", "--index", str(lexical_index_dir), "--input", str(mentions), "--top-k", "2"]) == 0
    rows = [line.split("\t") for line in capsys.readouterr().out.strip().split("\n")[1:]]
    assert [(r[0], r[1]) for r in rows] == [("fiebre", "1"), ("fiebre", "2"), ("TAC", "1"), ("TAC", "2")]
    gold = tmp_path / "gold.tsv"
    gold.write_text("filename\tmark\tlabel\toff0\toff1\tspan\tcode\tsemantic_rel\n"
                    "doc\tT1\tSINTOMA\t0\t6\tpirexia\t386661006\tEXACT\n", encoding="utf-8")
    assert main(["link", "--index", str(lexical_index_dir), "--input", str(gold), "--top-k", "1",
                 "--format", "json"]) == 0
    [item] = json.loads(capsys.readouterr().out)
    assert (item["filename"], item["mark"], item["gold_code"]) == ("doc", "T1", "386661006")
    assert item["candidates"][0]["code"] == "386661006"


def test_evaluate_prints_table_and_writes_json(lexical_index_dir, tmp_path, capsys):
    gold = tmp_path / "gold.tsv"
    gold.write_text("filename\tmark\tlabel\toff0\toff1\tspan\tcode\tsemantic_rel\n"
                    "d\tT1\tSINTOMA\t0\t6\tpirexia\t386661006\tEXACT\n"
                    "d\tT2\tENFERMEDAD\t0\t3\tHTA\t38341003\tEXACT\n"
                    "d\tT3\tENFERMEDAD\t0\t3\tcosa rara\tNO_CODE\t\n"
                    "d\tT4\tENFERMEDAD\t0\t3\tgripe\t6142004\tEXACT\n", encoding="utf-8")
    report_path = tmp_path / "report.json"
    assert main(["evaluate", "--index", str(lexical_index_dir), "--gold", str(gold), "--k", "1,25",
                 "--json", str(report_path)]) == 0
    out = capsys.readouterr().out
    assert "cleaned" in out and "in_kb" in out
    report = json.loads(report_path.read_text())
    assert report["cleaned"]["n"] == 3 and report["in_kb"]["n"] == 2
    assert report["in_kb"]["hits@25"] == 2
    assert report["cleaned"]["hits@25"] == 2  # gripe (6142004) is not in the demo KB
    assert report["index"]["engine"] == "lexical"


def test_evaluate_misses_writes_each_miss_with_its_cause(lexical_index_dir, tmp_path, capsys):
    gold = tmp_path / "gold.tsv"
    gold.write_text("filename\tmark\tlabel\toff0\toff1\tspan\tcode\tsemantic_rel\n"
                    "d\tT1\tSINTOMA\t0\t6\tpirexia\t386661006\tEXACT\n"
                    "d\tT2\tENFERMEDAD\t0\t5\tgripe\t6142004\tEXACT\n"
                    "d\tT3\tPROCEDIMIENTO\t0\t6\tpirexia\t386661006\tEXACT\n", encoding="utf-8")
    misses, report_path = tmp_path / "misses.tsv", tmp_path / "report.json"
    assert main(["evaluate", "--index", str(lexical_index_dir), "--gold", str(gold), "--k", "1,5",
                 "--misses", str(misses), "--json", str(report_path)]) == 0
    out = capsys.readouterr().out
    assert "gold concept not in the knowledge base" in out and f"misses written to {misses}" in out
    rows = [line.split("\t") for line in misses.read_text(encoding="utf-8").splitlines()]
    assert [(r[4], r[5], r[7]) for r in rows[1:]] == [("gripe", "6142004", "not_in_kb"),
                                                     ("pirexia", "386661006", "outside_label")]
    report = json.loads(report_path.read_text())
    assert report["misses"]["misses"] == 2 and report["misses"]["by_cause"]["outside_label"]["n"] == 1


def test_link_spells_out_acronyms_unless_told_not_to(lexical_index_dir, capsys):
    assert main(["link", "--index", str(lexical_index_dir), "--format", "json", "--top-k", "5", "T.A.C."]) == 0
    [item] = json.loads(capsys.readouterr().out)
    assert item["candidates"][0]["code"] == "77477000" and item["candidates"][0]["via"].startswith("TAC = ")
    assert main(["link", "--index", str(lexical_index_dir), "--format", "json", "--top-k", "5", "--no-abbreviations",
                 "T.A.C."]) == 0
    [item] = json.loads(capsys.readouterr().out)
    assert "77477000" not in [c["code"] for c in item["candidates"]]


def test_user_errors_are_one_line_and_exit_2(tmp_path, demo_gazetteer):
    bad = tmp_path / "bad.tsv"
    bad.write_text("code\tlanguage\tterm\tsemantic_tag\tmainterm\n1\tes\tuno\n", encoding="utf-8")
    result = run_cli("index", "--gazetteer", bad, "--model", "char-ngrams", "--out", tmp_path / "ix")
    assert result.returncode == 2
    assert f"{bad}:2: expected 5 tab-separated fields" in result.stderr
    assert "Traceback" not in result.stderr
    result = run_cli("link", "--index", tmp_path / "missing", "dolor")
    assert result.returncode == 2 and "no such index directory" in result.stderr
    result = run_cli("index", "--gazetteer", demo_gazetteer, "--model", tmp_path / "no-model", "--out",
                     tmp_path / "ix")
    assert result.returncode == 2 and "--model char-ngrams" in result.stderr and "Traceback" not in result.stderr


def test_link_with_a_label_and_evaluate_route_each_mention(lexical_index_dir, lexical_index, tmp_path, capsys):
    kb = lexical_index.kb
    assert main(["link", "--index", str(lexical_index_dir), "--label", "PROCEDIMIENTO", "--format", "json",
                 "apendicitis aguda"]) == 0
    [item] = json.loads(capsys.readouterr().out)
    assert item["label"] == "PROCEDIMIENTO" and item["candidates"][0]["code"] == "80146002"
    assert {kb[c["code"]].semantic_tag for c in item["candidates"]} == {"procedimiento"}
    assert "only" in item["short"] and "PROCEDIMIENTO part" in item["short"]
    assert main(["link", "--index", str(lexical_index_dir), "--routing", "none", "--format", "json",
                 "--label", "PROCEDIMIENTO", "apendicitis aguda"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["candidates"][0]["code"] == "85189001"  # the disease
    assert main(["link", "--index", str(lexical_index_dir), "--top-k", "2", "apendicectomía laparoscópica"]) == 0
    header, first = capsys.readouterr().out.split("\n")[:2]
    assert header.split("\t")[-2:] == ["evidence", "parents"]
    assert first.split("\t")[-2:] == ["lexical", "80146002 apendicectomía"]
    gold = tmp_path / "gold.tsv"  # the same wording as a disease and as a procedure: the label decides
    gold.write_text("filename\tmark\tlabel\toff0\toff1\tspan\tcode\tsemantic_rel\n"
                    "d\tT1\tENFERMEDAD\t0\t17\tapendicitis aguda\t85189001\tEXACT\n"
                    "d\tT2\tPROCEDIMIENTO\t0\t17\tapendicitis aguda\t80146002\tEXACT\n", encoding="utf-8")
    report = tmp_path / "r.json"
    assert main(["evaluate", "--index", str(lexical_index_dir), "--gold", str(gold), "--k", "1", "--json",
                 str(report)]) == 0
    assert json.loads(report.read_text())["cleaned"]["hits@1"] == 2
    assert main(["evaluate", "--index", str(lexical_index_dir), "--gold", str(gold), "--k", "1", "--json",
                 str(report), "--routing", "none"]) == 0
    assert json.loads(report.read_text())["cleaned"]["hits@1"] == 1
    bad = tmp_path / "routing.toml"
    bad.write_text("[labels.X]\n", encoding="utf-8")
    result = run_cli("link", "--index", lexical_index_dir, "--routing", bad, "fiebre")
    assert result.returncode == 2 and f"{bad}: labels.X names neither tags nor roots" in result.stderr


@pytest.fixture
def lexical_index_dir(lexical_index, tmp_path):
    from clinlinker.search.index import save_index

    return save_index(lexical_index, tmp_path / "lexical-ix")


def test_serve_refuses_to_expose_clinical_text_without_credentials(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLINLINKER_")}
    env.update(PYTHONPATH=ROOT, HF_HUB_OFFLINE="1", CLINLINKER_DATA_DIR=str(tmp_path / "var"))
    refused = subprocess.run([sys.executable, "-m", "clinlinker.cli", "serve", "--host", "0.0.0.0", "--port",
                              str(port)], capture_output=True, text=True, env=env, timeout=60)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "refusing to listen on 0.0.0.0 without credentials" in refused.stderr
    assert "CLINLINKER_PICKER_TOKEN" in refused.stderr and "CLINLINKER_ALLOW_OPEN=1" in refused.stderr
    # an open service on purpose starts, and says so
    import time
    import urllib.request

    proc = subprocess.Popen([sys.executable, "-m", "clinlinker.cli", "serve", "--host", "0.0.0.0", "--port",
                             str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**env, "CLINLINKER_ALLOW_OPEN": "1"}, cwd=tmp_path)
    try:
        deadline, health = time.monotonic() + 90, None
        while health is None and time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as reply:
                    health = json.loads(reply.read())
            except OSError:
                time.sleep(0.5)
        assert health and health["status"] == "UP"
    finally:
        proc.terminate()
        output = proc.communicate(timeout=30)[0]
    assert "CLINLINKER_ALLOW_OPEN: serving clinical text on 0.0.0.0 WITHOUT" in output


@pytest.mark.parametrize("host, env, allowed", [
    ("127.0.0.1", {}, True), ("::1", {}, True), ("localhost", {}, True), ("127.0.0.2", {}, True),
    ("0.0.0.0", {}, False), ("10.1.2.3", {"CLINLINKER_BASIC_AUTH_USER": "u", "CLINLINKER_BASIC_AUTH_PASSWORD": "p"},
                             False),
    ("0.0.0.0", {"CLINLINKER_BASIC_AUTH_USER": "u", "CLINLINKER_BASIC_AUTH_PASSWORD": "p",
                 "CLINLINKER_PICKER_TOKEN": "t"}, True),
])
def test_which_addresses_need_credentials(host, env, allowed):
    from backend.commands.serve import _check_exposure
    from clinlinker.errors import ClinlinkerError

    if allowed:
        _check_exposure(host, env)
    else:
        with pytest.raises(ClinlinkerError, match="refusing to listen"):
            _check_exposure(host, env)


def test_evaluate_and_link_read_the_documents_acronyms(lexical_index_dir, tmp_path, capsys):
    texts = tmp_path / "texts"
    texts.mkdir()
    (texts / "caso1.txt").write_text("Se realizó un registro electrocardiográfico (RE) sin hallazgos. El RE de "
                                     "control fue normal.", encoding="utf-8")
    gold = tmp_path / "gold.tsv"
    gold.write_text("filename\tmark\tlabel\toff0\toff1\tspan\tcode\tsemantic_rel\n"
                    "caso1\tT1\tPROCEDIMIENTO\t66\t68\tRE\t29303009\tEXACT\n", encoding="utf-8")
    report = tmp_path / "report.json"
    args = ["evaluate", "--index", str(lexical_index_dir), "--gold", str(gold), "--k", "1,5", "--json", str(report)]
    assert main(args) == 0
    assert json.loads(report.read_text())["cleaned"]["hits@1"] == 0  # "RE" alone says little
    assert main(args + ["--texts", str(texts)]) == 0
    assert json.loads(report.read_text())["cleaned"]["hits@1"] == 1  # the case says what RE is
    capsys.readouterr()
    assert main(["link", "--index", str(lexical_index_dir), "--input", str(gold), "--texts", str(texts), "--top-k",
                 "1", "--format", "json"]) == 0
    [item] = json.loads(capsys.readouterr().out)
    assert item["candidates"][0]["via"] == "RE = registro electrocardiográfico"
    gold.write_text(gold.read_text(encoding="utf-8") + "caso2\tT1\tPROCEDIMIENTO\t0\t2\tRE\t29303009\tEXACT\n",
                    encoding="utf-8")
    assert main(args + ["--texts", str(texts)]) == 2  # a usage error, said in one line
    assert "cannot read caso2.txt for the link of caso2 (line 3)" in capsys.readouterr().err
