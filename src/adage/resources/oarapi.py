"""Resources of OAR jobs read from OAR's REST API (``-j/-J`` with ``--oar-api URL``).

For a machine without ``oarstat``: ``GET URL/jobs.json?ids=ID&state=...`` gives the job's
state, ``GET URL/jobs/ID/resources.json`` (paged with ``offset``/``limit``) its assigned
resources with every column, as ``oarnodes`` shows them. Both are public in OAR 2.5.9's API;
credentials in the URL (``http://user:password@host:6668/oarapi-priv/``) are sent as HTTP
basic auth. The nodes are built exactly as from ``oarstat``/``oarnodes`` (``oar.job_nodes``).
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from typing import Any

from adage.deploy.sources import SourceError
from adage.model import Node, Resources, url_host
from adage.resources.oar import ACTIVE, job_nodes

STATES = ("Waiting", "Hold", "toLaunch", "toError", "toAckReservation", "Launching", "Running",
          "Suspended", "Resuming", "Finishing", "Terminated", "Error")
API_KEYS = ("links", "api_timestamp", "status")  # the API's own keys in a resource item
PAGE = 500  # the API's default page size (API_DEFAULT_MAX_ITEMS_NUMBER)


def split_url(url: str) -> tuple[str, dict[str, str]]:
    """The API's base URL without credentials, and the headers that carry them (pure)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SourceError(f"--oar-api {url!r}: not an http(s) URL")
    headers = {"Accept": "application/json"}
    if parts.username is not None:
        user = urllib.parse.unquote(parts.username)
        password = urllib.parse.unquote(parts.password or "")
        headers["Authorization"] = "Basic " + base64.b64encode(
            f"{user}:{password}".encode()).decode()
    try:
        port = parts.port
    except ValueError:
        raise SourceError(f"--oar-api {url!r}: not a valid port") from None
    netloc = url_host(parts.hostname) + (f":{port}" if port else "")  # http://[::1]:6668
    base = urllib.parse.urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
    return base, headers


def resource_rows(items: Sequence[dict[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    """Columns (sorted: the API's key order is Perl's hash order) and rows (by resource id)
    of the API's resource items (pure)."""
    recs = sorted(({("resource_id" if k == "id" else k): v for k, v in item.items()
                    if k not in API_KEYS} for item in items), key=lambda r: int(r["resource_id"]))
    columns = sorted({k for r in recs for k in r})
    return columns, [[r.get(c) for c in columns] for r in recs]


def api_job_resources(job_ids: Sequence[int], url: str, timeout: float = 60) -> Resources:
    """The nodes of OAR jobs from the REST API at ``url``; SourceError for a job that does not
    exist, is not running or holds no resource, and for an API that does not answer."""
    base, headers = split_url(url)
    nodes: list[Node] = []
    for job in job_ids:
        found = _get(base, f"jobs.json?ids={job}&state={','.join(STATES)}", headers,
                     timeout).get("items") or []
        info = next((i for i in found if int(i.get("id", -1)) == job), None)
        if info is None:
            raise SourceError(f"OAR job {job} does not exist ({base})")
        if info.get("state") not in ACTIVE:
            raise SourceError(f"OAR job {job} is {info.get('state')}, not running")
        items: list[dict[str, Any]] = []
        while True:
            page = _get(base, f"jobs/{job}/resources.json?offset={len(items)}&limit={PAGE}",
                        headers, timeout)
            items += page.get("items") or []
            if not page.get("items") or len(items) >= int(page.get("total", 0)):
                break
        if not items:
            raise SourceError(f"OAR job {job} ({info.get('state')}) holds no resource yet")
        columns, rows = resource_rows(items)
        nodes += job_nodes(job, columns, rows)
    return Resources(tuple(nodes))


def _get(base: str, path: str, headers: dict[str, str], timeout: float) -> dict[str, Any]:
    url = f"{base}/{path}"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                    timeout=timeout) as resp:
            data = json.loads(resp.read().decode())
    except urllib.error.HTTPError as e:
        raise SourceError(f"OAR API: GET {url}: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise SourceError(f"OAR API: GET {url}: {reason}") from None
    except ValueError:
        raise SourceError(f"OAR API: GET {url}: not JSON") from None
    return data if isinstance(data, dict) else {}
