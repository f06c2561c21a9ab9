"""HTTP calls to the ProbeOps API; every failure becomes an ApiFailure with the API's message and code."""
import requests

from probeops_cli import __version__

TIMEOUT_SECONDS = 30
USER_AGENT = f"probeops-cli/{__version__}"


class ApiFailure(Exception):
    """A request the API refused or could not answer: ``message``, ``code`` and HTTP ``status``."""

    def __init__(self, message, code=None, status=None):
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status

    def __str__(self):
        parts = [self.message]
        if self.code:
            parts.append(f"[{self.code}]")
        if self.status:
            parts.append(f"(HTTP {self.status})")
        return " ".join(parts)


class Client:
    """One server, one credential (an API key, or a bearer token during login)."""

    def __init__(self, base_url, api_key=None, token=None, timeout=TIMEOUT_SECONDS):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()
        self.session.headers["User-Agent"] = USER_AGENT
        self.session.headers["Accept"] = "application/json"
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"
        elif api_key:
            self.session.headers["X-API-Key"] = api_key

    @property
    def authenticated(self):
        return "Authorization" in self.session.headers or "X-API-Key" in self.session.headers

    def require_credentials(self):
        if not self.authenticated:
            raise ApiFailure("Not logged in: run `probeops login` or set PROBEOPS_API_KEY", "not_logged_in")

    def send(self, method, path, *, json=None, params=None, headers=None, stream=False, timeout=None,
             ok=(200, 201, 202)):
        """The response when its status is in ``ok``; otherwise ApiFailure."""
        try:
            response = self.session.request(method, self.base_url + path, json=json, params=params, headers=headers,
                                            stream=stream, timeout=timeout or self.timeout)
        except requests.exceptions.InvalidURL as exc:
            raise ApiFailure(f"Invalid server URL {self.base_url!r}: {exc}", "invalid_url") from None
        except requests.exceptions.MissingSchema:
            raise ApiFailure(f"Invalid server URL {self.base_url!r}: it needs http:// or https://",
                             "invalid_url") from None
        except requests.exceptions.Timeout:
            raise ApiFailure(f"{self.base_url} did not answer within {timeout or self.timeout} s",
                             "connection_error") from None
        except requests.exceptions.RequestException as exc:
            raise ApiFailure(f"Cannot reach {self.base_url}: {_reason(exc)}", "connection_error") from None
        if response.status_code not in ok:
            raise failure_of(response)
        return response

    def json(self, method, path, **kwargs):
        """The decoded JSON body of a successful answer."""
        response = self.send(method, path, **kwargs)
        return decode(response)


def decode(response):
    try:
        return response.json()
    except ValueError:
        raise ApiFailure(f"The server answered HTTP {response.status_code} with a body that is not JSON "
                         f"(is {response.url} a ProbeOps API?)", "bad_response", response.status_code) from None


def failure_of(response):
    """ApiFailure from an error answer: the contract's ``{error, message, code}`` when present."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("message"):
        message = str(body["message"])
        fields = body.get("fields")
        if isinstance(fields, dict) and fields:
            details = "; ".join(f"{name}: {' '.join(map(str, msgs if isinstance(msgs, list) else [msgs]))}"
                                for name, msgs in fields.items())
            if details not in message:
                message = f"{message} ({details})"
        return ApiFailure(message, body.get("code"), response.status_code)
    reason = response.reason or "error"
    return ApiFailure(f"The server answered HTTP {response.status_code} {reason}", None, response.status_code)


def _reason(exc):
    """The innermost reason of a connection error, without the URL noise."""
    text = str(exc.args[0] if exc.args else exc)
    if "Connection refused" in text:
        return "connection refused"
    if "Name or service not known" in text or "nodename nor servname" in text:
        return "unknown host name"
    return text
