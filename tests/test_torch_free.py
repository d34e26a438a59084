from helpers import run_without_torch


def test_inference_core_imports_and_runs_without_torch(tiny_files):
    r = run_without_torch(f"""
import mipd_edge, mipd_edge.metrics, mipd_edge.vocabulary, mipd_edge.situation, mipd_edge.baseline
from mipd_edge.data import SituDataset
from mipd_edge.vocabulary import Vocabulary
ds = SituDataset({str(tiny_files)!r}, "train")
assert len(Vocabulary.from_space(ds.space).verbs) == 2
print("ok", "torch" in sys.modules)
""")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "ok False"
