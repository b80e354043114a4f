"""Drill report renderings: the chart has a bar per scenario and measure, the targets as lines; JUnit marks a
scenario failed when it failed or missed a plan target; the verdict lists what was missed."""

from __future__ import annotations

from xml.etree import ElementTree as ET

from mojorust_dr import drill, report


def sample(rto=120.0, rpo=20.0, ok=True):
    return {
        "started_at": "20261125T220000Z",
        "machine": {"host": "lab", "cores": 2},
        "targets": {"plan_rto_seconds": 900, "plan_rpo_seconds": 300, "aim_rto_seconds": 90, "aim_rpo_seconds": 30},
        "scenarios": [
            {
                "name": "server_loss",
                "title": "Server loss",
                "plan_section": "2.1 B",
                "ok": ok,
                "rto_seconds": rto,
                "rpo_seconds": rpo,
                "error": "" if ok else "phase 'x' failed",
                "rpo_detail": None,
                "phases": [{"name": "failover", "seconds": 130.0, "ok": ok, "log": "l", "detail": None}],
            },
            {
                "name": "fresh_deploy",
                "title": "Fresh deploy",
                "plan_section": "2.1",
                "ok": True,
                "rto_seconds": 77.0,
                "rpo_seconds": None,
                "error": "",
                "rpo_detail": None,
                "phases": [{"name": "vps_setup", "seconds": 70.0, "ok": True, "log": "l", "detail": None}],
            },
        ],
    }


def test_chart_is_svg_with_a_bar_per_measured_value_and_the_target_lines():
    svg = ET.fromstring(report.render_svg(sample()))
    bars = [r.find("{http://www.w3.org/2000/svg}title").text for r in svg.iter("{http://www.w3.org/2000/svg}rect")]
    assert bars == ["RTO 120.0 s", "RPO 20.0 s", "RTO 77.0 s"]
    lines = [t.text for t in svg.iter("{http://www.w3.org/2000/svg}title") if t.text.startswith(("plan", "aim"))]
    assert lines == ["plan RTO 900 s", "aim RTO 90 s", "plan RPO 300 s", "aim RPO 30 s"]


def test_log_scale_places_longer_times_further_right():
    assert report._x(1, 0, 100) == 0
    assert report._x(3600, 0, 100) == 100
    assert report._x(10, 0, 100) < report._x(90, 0, 100) < report._x(900, 0, 100)


def test_missed_targets_and_junit_failures():
    assert report.missed_targets(sample()) == []
    missed = report.missed_targets(sample(rto=1000.0, rpo=400.0))
    assert missed == ["server_loss: RTO 1000.0 s > plan 900 s", "server_loss: RPO 400.0 s > plan 300 s"]
    suite = ET.fromstring(report.render_junit(sample(ok=False)))
    assert suite.get("tests") == "2" and suite.get("failures") == "1"
    failed = [c.get("name") for c in suite.iter("testcase") if c.find("failure") is not None]
    assert failed == ["server_loss"]


def test_html_has_the_chart_the_verdict_and_the_tables():
    data = sample(rto=1000.0)
    page = report.render_html(data, drill.render_markdown(data))
    assert page.startswith("<!doctype html>") and "<svg" in page
    assert "server_loss: RTO 1000.0 s &gt; plan 900 s" in page
    assert "<td>Server loss</td>" in page


def test_summary_is_one_message_with_a_line_per_scenario_and_the_verdict():
    text = report.summary_text(sample(rto=1000.0))
    lines = text.splitlines()
    assert lines[0] == "Disaster drill 20261125T220000Z"
    assert lines[1] == "✅ server_loss: RTO 1000 s, RPO 20 s"
    assert lines[2] == "✅ fresh_deploy: RTO 77 s"
    assert lines[3].startswith("MISSED: server_loss: RTO 1000.0 s > plan 900 s")


def test_telegram_summary_is_posted_and_a_failure_is_reported_without_the_token():
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    received = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append((self.path, json.loads(self.rfile.read(int(self.headers["Content-Length"])))))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b'{"ok": true}')

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.handle_request, daemon=True).start()
    api = f"http://127.0.0.1:{server.server_port}"
    assert report.send_telegram("hello", api, "123:secret", "-42") == ""
    assert received == [("/bot123:secret/sendMessage", {"chat_id": "-42", "text": "hello"})]
    server.server_close()
    problem = report.send_telegram("hello", api, "123:secret", "-42", timeout=1)
    assert problem.startswith("summary not delivered") and "secret" not in problem
