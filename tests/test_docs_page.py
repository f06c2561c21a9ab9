"""/api/docs in a real headless Chromium (Debian's ``chromium``) on a live ./start.sh: the page loads
with no internet (its assets from the server), renders every operation of the document, and
"Try it out" with an API key runs a ping of 127.0.0.1.

Chromium is driven over the DevTools protocol with the small WebSocket client below.
"""
import base64
import json
import os
import shutil
import socket
import struct
import subprocess
import time
from urllib.parse import urlsplit

import pytest
import requests

from tests.support.gunicorn import StartedServer
from tests.support.servers import free_port

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (run_tests.sh adds it)")


def test_the_page_and_its_assets_come_from_the_server(client):
    page = client.get("/api/docs")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert "http" not in html.replace('lang="en"', "")  # no CDN, no absolute URL at all
    for asset in ("docs/assets/swagger-ui.css", "docs/assets/swagger-ui-bundle.js", "docs/init.js"):
        assert asset in html
        with client.get("/api/" + asset) as answer:
            assert answer.status_code == 200 and len(answer.get_data()) > 100
    assert client.get("/api/docs/assets/../../app/config.py").status_code == 404
    assert client.get("/api/docs/assets/index.html").status_code == 404
    assert client.get("/api").get_json()["docs"] == "/api/docs"


# -- a minimal WebSocket client (RFC 6455), enough for the DevTools protocol ---------------------------
class WebSocket:
    def __init__(self, url, timeout=30):
        parts = urlsplit(url)
        self.sock = socket.create_connection((parts.hostname, parts.port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
                          .encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += self.sock.recv(1)
        assert b" 101 " in head.split(b"\r\n")[0], head

    def send(self, text):
        data = text.encode()
        header = bytes([0x81])
        if len(data) < 126:
            header += bytes([0x80 | len(data)])
        elif len(data) < 65536:
            header += bytes([0x80 | 126]) + struct.pack("!H", len(data))
        else:
            header += bytes([0x80 | 127]) + struct.pack("!Q", len(data))
        mask = os.urandom(4)
        self.sock.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def _exactly(self, n):
        out = b""
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            if not chunk:
                raise ConnectionError("DevTools closed the connection")
            out += chunk
        return out

    def receive(self):
        message = b""
        while True:
            first, second = self._exactly(2)
            length = second & 0x7F
            if length == 126:
                length = struct.unpack("!H", self._exactly(2))[0]
            elif length == 127:
                length = struct.unpack("!Q", self._exactly(8))[0]
            payload = self._exactly(length)
            if first & 0x0F in (0x1, 0x0):
                message += payload
                if first & 0x80:
                    return message.decode()

    def close(self):
        self.sock.close()


class Browser:
    """Headless Chromium with one page, driven over the DevTools protocol."""

    def __init__(self, tmp_path):
        self.port = free_port()
        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--remote-debugging-port={self.port}", f"--user-data-dir={tmp_path / 'chromium'}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 30
        while True:
            try:
                pages = [t for t in requests.get(f"http://127.0.0.1:{self.port}/json/list", timeout=1).json()
                         if t["type"] == "page"]
                if pages:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, "chromium did not open its DevTools port"
            time.sleep(0.2)
        self.ws = WebSocket(pages[0]["webSocketDebuggerUrl"])
        self.next_id = 0

    def call(self, method, **params):
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.receive())
            if message.get("id") == self.next_id:
                assert "error" not in message, message
                return message["result"]

    def js(self, expression):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        assert "exceptionDetails" not in result, result
        return result["result"].get("value")

    def wait_for(self, expression, seconds=30):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            value = self.js(expression)
            if value:
                return value
            time.sleep(0.2)
        raise AssertionError(f"not true within {seconds}s: {expression}")

    def close(self):
        self.ws.close()
        os.killpg(self.proc.pid, 9)
        self.proc.wait(10)


@pytest.fixture
def live(tmp_path):
    server = StartedServer({"PROBE_ALLOWED_NETWORKS": "127.0.0.1/32", "DNS_NAMESERVERS": "127.0.0.1",
                            "WORKERS": "1", "PING_INTERVAL": "0.05", "LOG_FORMAT": "text"}, tmp_path).start()
    yield server
    server.stop()


@pytest.fixture
def browser(tmp_path):
    browser = Browser(tmp_path)
    yield browser
    browser.close()


def _api_key(base):
    account = {"username": "docsreader", "email": "docs@example.com", "password": "correct horse battery staple"}
    assert requests.post(base + "/api/users/register", json=account, timeout=10).status_code == 201
    token = requests.post(base + "/api/users/login", json=account, timeout=10).json()["token"]
    created = requests.post(base + "/api/apikeys", json={"description": "docs page"}, timeout=10,
                            headers={"Authorization": f"Bearer {token}"})
    return created.json()["api_key"]["key"]


SET_BODY = """(() => {
  const area = document.querySelector('#operations-probes-probes_ping textarea.body-param__text');
  const set = Object.getOwnPropertyDescriptor(HTMLTextAreaElement.prototype, 'value').set;
  set.call(area, '{"host": "127.0.0.1", "count": 2}');
  area.dispatchEvent(new Event('input', {bubbles: true}));
  return area.value;
})()"""


AUTHORIZE = """(() => {
  const box = Array.from(document.querySelectorAll('.modal-ux .auth-container'))
    .find(c => c.textContent.includes('X-API-Key'));
  const input = box.querySelector('input');
  const set = Object.getOwnPropertyDescriptor(HTMLInputElement.prototype, 'value').set;
  set.call(input, KEY);
  input.dispatchEvent(new Event('input', {bubbles: true}));
  box.querySelector('button.authorize').click();
})()"""


def test_swagger_ui_renders_every_operation_and_try_it_out_runs_a_ping(live, browser):
    document = requests.get(live.url + "/api/openapi.json", timeout=10).json()
    operation_ids = {op["operationId"] for item in document["paths"].values() for op in item.values()
                     if isinstance(op, dict) and "operationId" in op}
    browser.call("Page.enable")
    browser.call("Page.navigate", url=live.url + "/api/docs")
    browser.wait_for("document.querySelectorAll('.opblock').length > 0")
    rendered = browser.js("Array.from(document.querySelectorAll('.opblock')).map(e => e.id)")
    assert {element_id.split("-", 2)[2] for element_id in rendered} == operation_ids
    assert len(rendered) == len(operation_ids)

    # Authorize with the key through the page's dialog.
    key = _api_key(live.url)
    browser.js("document.querySelector('.auth-wrapper .authorize').click()")
    browser.wait_for("document.querySelectorAll('.modal-ux input').length > 0")
    browser.js(AUTHORIZE.replace("KEY", json.dumps(key)))
    browser.wait_for("Array.from(document.querySelectorAll('.modal-ux button'))"
                     ".some(b => b.textContent.trim() == 'Logout')")
    browser.js("document.querySelector('.modal-ux .close-modal').click()")

    # Open ping, "Try it out", a body for 127.0.0.1, "Execute".
    browser.js("(document.querySelector('#operations-probes-probes_ping button.opblock-summary-control') "
               "|| document.querySelector('#operations-probes-probes_ping .opblock-summary')).click()")
    browser.wait_for("!!document.querySelector('#operations-probes-probes_ping .try-out__btn')")
    browser.js("document.querySelector('#operations-probes-probes_ping .try-out__btn').click()")
    browser.wait_for("!!document.querySelector('#operations-probes-probes_ping textarea.body-param__text')")
    assert "127.0.0.1" in browser.js(SET_BODY)
    browser.js("document.querySelector('#operations-probes-probes_ping button.execute').click()")
    status = browser.wait_for("(() => { const c = document.querySelector("
                              "'#operations-probes-probes_ping .live-responses-table tbody .response-col_status');"
                              " return c && c.textContent.trim(); })()")
    body = browser.js("document.querySelector('#operations-probes-probes_ping .live-responses-table "
                      ".response-col_description pre, #operations-probes-probes_ping .live-responses-table "
                      ".microlight').textContent")
    assert status.startswith("200"), (status, body)
    answer = json.loads(body)
    assert answer["success"] is True and answer["probe_type"] == "ping" and answer["target"] == "127.0.0.1"

    history = requests.get(live.url + "/api/probes/history", headers={"X-API-Key": key}, timeout=10).json()
    assert history["jobs"][0]["id"] == answer["job_id"]
