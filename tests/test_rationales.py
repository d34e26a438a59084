import json
import re

import pytest

from helpers import FakeLLM
from mipd_edge.config import RationaleConfig
from mipd_edge.context import RunContext
from mipd_edge.data.split import load_split
from mipd_edge.data.swig import SituDataset
from mipd_edge.train.llm import ChatClient, LLMError, extract_json
from mipd_edge.train.rationales import generate_rationales, load_rationales, read_done


def ask(url, **kw):
    return ChatClient(url, "fake", backoff=0.01, **kw).complete(
        [{"role": "user", "content": 'verb "lifting" (x)\nUse the role names exactly: agent, place.'}])


def test_client_retries_errors_and_timeouts(llm):
    FakeLLM.script = ["500", "slow", "ok"]
    reply = ask(llm, timeout=0.5)
    assert extract_json(reply)["glimpse"]["positive"] == "someone is lifting here"
    assert FakeLLM.requests == 3


def test_client_gives_up_with_a_clear_error(llm):
    FakeLLM.script = ["500"] * 5
    with pytest.raises(LLMError, match="no answer after 3 attempts"):
        ask(llm, retries=2)
    FakeLLM.script = ["400"]
    with pytest.raises(LLMError, match="HTTP 400"):
        ask(llm)
    FakeLLM.script = ["garbage"]
    with pytest.raises(LLMError, match="not JSON"):
        ask(llm)
    with pytest.raises(LLMError):
        ChatClient("http://127.0.0.1:9/v1", "m", timeout=0.2, retries=0).complete([])


def test_extract_json():
    assert extract_json('text {"a": {"b": 1}} more') == {"a": {"b": 1}}
    assert extract_json("{broken { \"ok\": 2}") == {"ok": 2}
    with pytest.raises(LLMError):
        extract_json("no json here")


def test_template_rationales_are_honest_judged_and_deterministic(tiny_world):
    data = tiny_world / "data"
    records = load_rationales(tiny_world / "rationales.jsonl")
    split = load_split(data / "splits.json")
    train = json.loads((data / "train.json").read_text())
    assert set(records) == set(SituDataset(data, "train", ov_split=split).names)
    text = (tiny_world / "rationales.jsonl").read_text()
    for verb in split["unseen"]:
        assert not re.search(rf"\b{verb}\b", text), f"unseen verb {verb} named in a rationale"
    rec = next(iter(records.values()))
    assert rec["generator"] == "template" and len(rec["glimpse"]["negatives"]) == 3
    assert all(0 <= n["plausibility"] <= 1 for n in rec["glimpse"]["negatives"])
    ps = [n["plausibility"] for n in rec["glimpse"]["negatives"]]
    assert ps == sorted(ps, reverse=True)  # the hardest negatives, most plausible first
    assert set(rec["gaze"]) == set(train[rec["image"]]["bb"])


def test_resume_after_a_kill_mid_line(tiny_world, tmp_path, cache_dir):
    out = tmp_path / "r.jsonl"
    lines = (tiny_world / "rationales.jsonl").read_text().splitlines(keepends=True)
    out.write_text("".join(lines[:5]) + lines[5][:40])  # killed while writing the sixth record
    assert len(read_done(out)) == 5 and out.read_text().count("\n") == 5
    stats = generate_rationales(tiny_world / "data", tiny_world / "teacher", out,
                                run=RunContext(progress=False, cache_dir=cache_dir))
    assert stats["done_before"] == 5 and stats["written"] == len(lines) - 5
    assert out.read_bytes() == (tiny_world / "rationales.jsonl").read_bytes()  # template mode is deterministic


def test_llm_generator_survives_bad_answers_and_resumes(tiny_world, tmp_path, cache_dir, llm):
    out = tmp_path / "llm.jsonl"
    FakeLLM.script = ["badjson", "missing", "500", "500", "500", "500", "garbage"]
    stats = generate_rationales(tiny_world / "data", tiny_world / "teacher", out,
                                RationaleConfig(generator="openai", endpoint=llm, model="fake", workers=1, timeout=5,
                                                backoff=0.01),
                                run=RunContext(progress=False, cache_dir=cache_dir))
    total = len(load_rationales(tiny_world / "rationales.jsonl"))
    assert stats["failed"] == 4 and stats["written"] == total - 4
    errors = [json.loads(line) for line in (tmp_path / "llm.jsonl.errors").read_text().splitlines()]
    assert len(errors) == 4 and all(e["error"] for e in errors)
    rec = next(iter(load_rationales(out).values()))
    assert rec["generator"] == "openai:fake" and rec["glimpse"]["positive"].startswith("someone is")
    again = generate_rationales(tiny_world / "data", tiny_world / "teacher", out,
                                RationaleConfig(generator="openai", endpoint=llm, model="fake", workers=3),
                                run=RunContext(progress=False, cache_dir=cache_dir))
    assert again["written"] == 4 and len(load_rationales(out)) == total
