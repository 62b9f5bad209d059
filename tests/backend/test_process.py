"""The served process: what gunicorn's workers run (backend.serving.app:serve_app()), in a process of its own."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import gc, weakref
from backend.serving.app import serve_app
from backend.serving.loading import DEMO_GAZETTEER, DEMO_HIERARCHY
from clinlinker.kb.gazetteer import load_knowledge_base
from clinlinker.linking.linker import Linker
from clinlinker.search.index import build_index

app = serve_app()
model = app.extensions["clinlinker"].model
print("frozen", gc.get_freeze_count())
first = weakref.ref(model.linker.kb)
model.linker.kb.cycle = model.linker.kb  # a model may hold reference cycles (only the collector frees them)
for _ in range(2):  # the layers keep the linker a swap replaces (requests may still run on it): two swaps drop it
    model.swap(Linker(build_index(load_knowledge_base([DEMO_GAZETTEER], DEMO_HIERARCHY))), None)
print("first freed", first() is None)
print("frozen", gc.get_freeze_count())
"""


def test_the_served_model_is_kept_out_of_the_collector_and_a_swapped_out_one_is_freed(tmp_path):
    """A full collection walks every tracked object, and the request that triggers it waits (~90 ms with the
    public gazetteers' 77k concepts on 2 cores): the worker freezes the model it loaded. A model swapped out must
    still be freed, reference cycles and all."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CLINLINKER_DATA_DIR": str(tmp_path / "var"),
           "CLINLINKER_LOG_LEVEL": "ERROR"}
    env.pop("CLINLINKER_INDEX", None)
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, timeout=300,
                          cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    frozen = [int(line.split()[1]) for line in done.stdout.splitlines() if line.startswith("frozen ")]
    assert frozen[0] > 10_000  # the demo model, the libraries: out of the full passes
    assert "first freed True" in done.stdout.splitlines()
    assert frozen[1] > 10_000  # the model served now is kept out in its turn
