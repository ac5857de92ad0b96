"""The optional LLM judge against a fake OpenAI-compatible server on 127.0.0.1."""

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from plast_plugin.eval.judge import JudgeConfig, judge_choice
from plast_plugin.eval.lmms_tasks import process_results


@pytest.fixture
def fake_judge():
    seen = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
            prompt = body["messages"][0]["content"]
            reply = "C" if "purple-ish" in prompt else "Z"
            data = json.dumps({"choices": [{"message": {"role": "assistant", "content": reply}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1", seen
    server.shutdown()


def test_off_by_default(monkeypatch):
    monkeypatch.delenv("PLAST_JUDGE_URL", raising=False)
    assert JudgeConfig.from_env() is None


def test_judge_maps_free_text(fake_judge):
    url, seen = fake_judge
    config = JudgeConfig.from_env({"PLAST_JUDGE_URL": url, "PLAST_JUDGE_MODEL": "m", "PLAST_JUDGE_API_KEY": "k"})
    options = {"A": "red", "B": "green", "C": "violet", "D": None}
    assert judge_choice("colour?", options, "purple-ish", config) == "C"
    assert judge_choice("colour?", options, "no idea", config) is None  # judge says Z
    assert seen[0]["path"] == "/v1/chat/completions" and seen[0]["auth"] == "Bearer k"
    assert seen[0]["body"]["model"] == "m" and "D." not in seen[0]["body"]["messages"][0]["content"]


def test_unreachable_judge_scores_wrong():
    config = JudgeConfig(url="http://127.0.0.1:9", timeout=2)
    assert judge_choice("q", {"A": "x", "B": "y"}, "hmm", config) is None


def test_tasks_use_judge_only_when_rules_fail(fake_judge, monkeypatch):
    url, seen = fake_judge
    monkeypatch.setenv("PLAST_JUDGE_URL", url)
    doc = {"benchmark": "mmmb", "language": "en", "index": 0, "question": "colour?", "hint": "",
           "options": "ABC", "A": "red", "B": "green", "C": "violet", "answer": "C",
           "category": "c", "l2_category": ""}
    record = process_results(doc, ["purple-ish"])["acc"]
    assert record["correct"] and record["judged"] and record["prediction"] == "C"
    record = process_results(doc, ["C"])["acc"]
    assert record["correct"] and not record["judged"]
    assert len(seen) == 1
