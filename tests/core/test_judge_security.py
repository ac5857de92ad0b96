"""The LLM judge's security points, against fake servers on
127.0.0.1: no OPENAI_API_KEY fallback, no key over plain http except localhost, no redirect
followed with credentials, redacted URLs, retries with backoff and a time bound, failures
counted and logged. (The judge uses requests, in both environments; these run in both.)"""
from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from plast_plugin.eval import judge as judge_module
from plast_plugin.eval.judge import JudgeConfig, judge_choice, redact_url
from plast_plugin.errors import PlastError

OPTIONS = {"A": "red", "B": "green", "C": "violet"}


def _serve(handler_cls):
    server = HTTPServer(("127.0.0.1", 0), handler_cls)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def _reply(handler, status=200, content="C", headers=None):
    data = json.dumps({"choices": [{"message": {"content": content}}]}).encode()
    handler.send_response(status)
    for key, value in (headers or {}).items():
        handler.send_header(key, value)
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


@pytest.fixture()
def fresh_state(monkeypatch):
    monkeypatch.setattr(judge_module, "_STATE", {"spent": 0.0, "failures": 0})
    monkeypatch.setattr(judge_module.time, "sleep", lambda s: None)  # backoff without waiting


def test_openai_api_key_is_never_sent(monkeypatch):
    config = JudgeConfig.from_env({"PLAST_JUDGE_URL": "http://127.0.0.1:1/v1", "OPENAI_API_KEY": "sk-other"})
    assert config.api_key == ""  # an OpenAI key must not reach a judge the user did not name


@pytest.mark.parametrize("url", ["http://judge.example.com/v1", "http://10.0.0.5:8000/v1"])
def test_key_over_plain_http_is_refused(url):
    with pytest.raises(PlastError, match="clear text"):
        JudgeConfig.from_env({"PLAST_JUDGE_URL": url, "PLAST_JUDGE_API_KEY": "k"})
    with pytest.raises(PlastError, match="URL's password would be sent in clear text"):
        JudgeConfig.from_env({"PLAST_JUDGE_URL": url.replace("http://", "http://user:pw@")})


@pytest.mark.parametrize("url", ["http://localhost:8000/v1", "http://127.0.0.1:8000/v1", "http://[::1]:8000/v1",
                                 "https://judge.example.com/v1"])
def test_key_allowed_over_https_or_to_localhost(url):
    assert JudgeConfig.from_env({"PLAST_JUDGE_URL": url, "PLAST_JUDGE_API_KEY": "k"}).api_key == "k"


@pytest.mark.parametrize("name, value", [("PLAST_JUDGE_TIMEOUT", "abc"), ("PLAST_JUDGE_RETRIES", "1.5"),
                                         ("PLAST_JUDGE_TOTAL_TIMEOUT", "-3")])
def test_bad_numbers_name_the_variable(name, value):
    with pytest.raises(PlastError, match=name):
        JudgeConfig.from_env({"PLAST_JUDGE_URL": "http://127.0.0.1:1/v1", name: value})


def test_plast_eval_refuses_a_bad_judge_setting_in_one_line(monkeypatch, capsys):
    from plast_plugin.cli import main

    monkeypatch.setenv("PLAST_JUDGE_URL", "http://127.0.0.1:1/v1")
    monkeypatch.setenv("PLAST_JUDGE_TIMEOUT", "abc")
    assert main(["eval", "--dry-run"]) == 1
    err = capsys.readouterr().err.strip()
    assert "PLAST_JUDGE_TIMEOUT='abc'" in err and len(err.splitlines()) == 1


def test_redirect_with_credentials_is_not_followed(fresh_state, caplog):
    seen = []

    class Target(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            seen.append(self.headers.get("Authorization"))
            _reply(self)

        def log_message(self, *args):
            pass

    target, target_url = _serve(Target)

    class Redirector(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            self.send_response(307)
            self.send_header("Location", target_url.replace("127.0.0.1", "localhost") + "/v1/chat/completions")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    redirector, url = _serve(Redirector)
    try:
        config = JudgeConfig(url=url + "/v1", api_key="secret", timeout=5)
        with caplog.at_level(logging.WARNING):
            assert judge_choice("q", OPTIONS, "purple-ish", config) is None
        assert seen == []  # the other host never gets "Bearer secret"
        assert "not followed" in caplog.text and judge_module.failure_count() == 1
    finally:
        target.shutdown()
        redirector.shutdown()


def test_logged_urls_are_redacted(fresh_state, caplog):
    assert redact_url("https://user:pw@host:1/v1") == "https://***@host:1/v1"
    config = JudgeConfig(url="http://user:hunter2@127.0.0.1:9/v1", timeout=1, retries=0)
    with caplog.at_level(logging.WARNING):
        assert judge_choice("q", OPTIONS, "x", config) is None
    assert "hunter2" not in caplog.text and "***@127.0.0.1:9" in caplog.text


def test_transient_errors_are_retried_then_answered(fresh_state):
    calls = []

    class Flaky(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            self.rfile.read(int(self.headers["Content-Length"]))
            calls.append(1)
            _reply(self, status=503 if len(calls) < 3 else 200)

        def log_message(self, *args):
            pass

    server, url = _serve(Flaky)
    try:
        config = JudgeConfig(url=url + "/v1", timeout=5, retries=2)
        assert judge_choice("q", OPTIONS, "purple-ish", config) == "C"
        assert len(calls) == 3 and judge_module.failure_count() == 0
    finally:
        server.shutdown()


def test_failures_are_counted_logged_and_time_is_bounded(fresh_state, tmp_path, monkeypatch):
    log = tmp_path / "failures.jsonl"
    monkeypatch.setenv("PLAST_JUDGE_FAILURE_LOG", str(log))
    config = JudgeConfig(url="http://127.0.0.1:9/v1", timeout=1, retries=1, total_timeout=30)
    assert judge_choice("q", OPTIONS, "first", config) is None
    judge_module._STATE["spent"] = 30.0  # the budget is used up: no request is even sent
    assert judge_choice("q", OPTIONS, "second", config) is None
    assert judge_module.failure_count() == 2
    reasons = [json.loads(line)["reason"] for line in log.read_text().splitlines()]
    assert len(reasons) == 2 and "time budget" in reasons[1]
