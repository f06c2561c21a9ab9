"""Follow a measurement until it ends: the SSE stream, or polling with ETag when the stream fails."""
import json
import time

from probeops_cli.client import ApiFailure, decode, failure_of

POLL_SECONDS = 0.5
ENDED = {"finished", "failed", "timeout"}


def follow(client, measurement_id, on_result, poll_seconds=POLL_SECONDS):
    """Call ``on_result(result)`` once per result as it ends; return the final MEASUREMENT."""
    seen = set()
    try:
        final = _stream(client, measurement_id, on_result, seen)
        if final is not None:
            return final
    except ApiFailure as exc:
        if exc.status in (401, 403, 404):
            raise  # polling would be refused the same way
    return _poll(client, measurement_id, on_result, seen, poll_seconds)


def _stream(client, measurement_id, on_result, seen):
    """Read the event stream; the final MEASUREMENT, or None when it ended without `finished`."""
    response = client.send("GET", f"/api/measurements/{measurement_id}/stream", stream=True,
                           headers={"Accept": "text/event-stream"}, timeout=(10, 60))
    if not response.headers.get("Content-Type", "").startswith("text/event-stream"):
        response.close()
        return None
    try:
        for name, data in _events(response):
            if name == "result":
                _deliver(data, on_result, seen)
            elif name == "finished":
                for result in data.get("results") or ():
                    _deliver(result, on_result, seen)
                return data
            elif name in ("timeout", "error"):
                return None
    except ApiFailure:
        raise
    except Exception:  # noqa: BLE001 - a broken stream is not fatal: polling takes over
        return None
    finally:
        response.close()
    return None


def _events(response):
    """``(event name, decoded data)`` for each server-sent event."""
    name, data = "message", []
    for raw in response.iter_lines(decode_unicode=False):
        line = raw.decode("utf-8", "replace")
        if not line:
            if data:
                yield name, json.loads("\n".join(data))
            name, data = "message", []
        elif line.startswith(":"):
            continue
        elif line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))


def _poll(client, measurement_id, on_result, seen, poll_seconds):
    """GET the measurement with If-None-Match until it is finished."""
    tag, body = None, None
    while True:
        headers = {"If-None-Match": tag} if tag else {}
        response = client.send("GET", f"/api/measurements/{measurement_id}", headers=headers, ok=(200, 304))
        if response.status_code == 200:
            tag, body = response.headers.get("ETag"), decode(response)
            for result in body.get("results") or ():
                if result.get("status") in ENDED:
                    _deliver(result, on_result, seen)
            if body.get("status") == "finished":
                return body
        elif body is None:
            raise failure_of(response)
        time.sleep(poll_seconds)


def _deliver(result, on_result, seen):
    key = result.get("job_id")
    if key in seen:
        return
    seen.add(key)
    on_result(result)
