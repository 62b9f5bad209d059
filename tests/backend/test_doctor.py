"""`clinlinker doctor` finds what is wrong with an installation, says how to fix it, and exits 1 then."""

import re
import shutil

from clinlinker.cli import main
from clinlinker.search.index import save_index


def test_a_working_installation(tmp_path, redis_url, database_url, capsys):
    args = ["doctor", "--redis-url", redis_url, "--data-dir", str(tmp_path / "var")]
    if database_url:
        args += ["--database-url", database_url]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "nothing to fix" in out and "FAIL" not in out
    [line] = [line for line in out.splitlines() if line.split()[1:2] == ["redis"]]
    assert re.match(r"ok\s+redis\s+redis://\S+: Redis \d+\.\d+\.\d+, ping \d+\.\d ms$", line), line
    assert ("postgresql" if database_url else "sqlite") in out
    assert "DEMO gazetteer" in out  # no index: said, as a warning


def test_what_to_fix_is_listed(tmp_path, capsys):
    assert main(["doctor", "--index", str(tmp_path / "missing"), "--redis-url", "redis://127.0.0.1:1/0",
                 "--database-url", "postgresql+psycopg://postgres@127.0.0.1:5432/clinlinker_no_such_db",
                 "--ls-url", "http://127.0.0.1:1", "--ls-token", "x"]) == 1
    out = capsys.readouterr().out
    fixes = out.split("thing(s) to fix:")[1]
    assert "4 thing(s) to fix" in out
    for check in ("index:", "redis:", "store:", "label studio:"):
        assert check in fixes


def test_a_dense_index_and_its_model(tmp_path, dense_index, capsys):
    index_dir = save_index(dense_index, tmp_path / "ix")
    assert main(["doctor", "--index", str(index_dir), "--data-dir", str(tmp_path / "var")]) == 0
    out = capsys.readouterr().out
    assert "dense engine" in out and "matches the index" in out and "a model each" in out
    broken = tmp_path / "broken"
    shutil.copytree(index_dir, broken)
    (broken / "manifest.json").write_text("{not json")
    assert main(["doctor", "--index", str(broken), "--data-dir", str(tmp_path / "var")]) == 1
    assert "FAIL  index" in capsys.readouterr().out
