"""The baseline: a bare Flask endpoint returning the same JSON as GET /api/users/me."""
from flask import Flask, jsonify

app = Flask(__name__)
app.json.sort_keys = False

USER = {"id": 1, "username": "bench", "email": "bench@example.com", "is_active": True, "role": "user",
        "subscription_tier": "Enterprise", "created_at": "2026-11-23T09:00:00.000000+00:00"}


@app.get("/api/users/me")
def me():
    """Same body, no auth, no database."""
    return jsonify(USER)


@app.get("/health")
def health():
    return jsonify(status="ok")
