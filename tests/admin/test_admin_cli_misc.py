"""``zistboom admin`` commands (a real uvicorn server on an ephemeral port), DB-error mapping on the
real database, optional-part mounting."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from sqlalchemy.exc import IntegrityError

from zistboom.admin.app import _optional_module
from zistboom.admin.errors import db_error
from zistboom.registry import models as m

PY = sys.executable


def _run(args, env, timeout=60):
    return subprocess.run([PY, "-m", "zistboom", *args], env=env, capture_output=True, text=True, timeout=timeout)


def _env(tmp_path, db_url):
    env = dict(os.environ)
    env.update(ZISTBOOM_VAR_DIR=str(tmp_path / "clivar"), ZISTBOOM_DATABASE_URL=db_url)
    return env


def test_token_commands(tmp_path, db_url):
    env = _env(tmp_path, db_url)
    r1 = _run(["admin", "token"], env)
    r2 = _run(["admin", "token"], env)
    assert r1.returncode == 0 and r1.stdout.strip().startswith("zbadmin_") and r1.stdout == r2.stdout
    assert (tmp_path / "clivar" / "admin-token").read_text().strip() == r1.stdout.strip()
    p = _run(["admin", "province-token", "IR-01"], env)
    assert p.returncode == 0 and p.stdout.strip().startswith("zbprov_")
    table = json.loads((tmp_path / "clivar" / "province-tokens.json").read_text())
    assert list(table.values()) == ["IR-01"]
    bad = _run(["admin", "province-token", "Tehran"], env)
    assert bad.returncode == 2 and "IR-00" in bad.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url, token=None):
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.mark.timeout(120)
def test_admin_serves_over_http(tmp_path, seeded_db_url):
    env = _env(tmp_path, seeded_db_url)
    port = _free_port()
    proc = subprocess.Popen([PY, "-m", "zistboom", "admin", "--host", "127.0.0.1", "--port", str(port),
                             "--log-level", "warning"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                status, body = _get(base + "/admin/v1/whoami")
                break
            except (urllib.error.URLError, ConnectionError):
                assert proc.poll() is None, proc.stdout.read().decode()
                assert time.monotonic() < deadline, "admin server did not start"
                time.sleep(0.2)
        assert status == 401 and body["error"]["code"] == "unauthorized"
        token = (tmp_path / "clivar" / "admin-token").read_text().strip()
        status, body = _get(base + "/admin/v1/licences?status=active&limit=2", token)
        assert status == 200 and len(body["items"]) == 2 and body["items"][0]["valid_until_jalali"]
        status, doc = _get(base + "/admin/v1/openapi.json")
        assert status == 200 and doc["info"]["title"] == "zistboom admin API"
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_integrity_errors_map_to_4xx(session_factory):
    """Errors the database itself raises (as in a race past the API's own checks) become 409/422."""
    with session_factory() as s:
        s.add(m.Cluster(id="dup", name_fa="x", name_en="x"))
        s.commit()
        s.add(m.Cluster(id="dup", name_fa="y", name_en="y"))
        with pytest.raises(IntegrityError) as exc:
            s.flush()
        s.rollback()
        err = db_error(exc.value)
        assert err.status == 409 and err.code == "conflict"
        s.add(m.Service(id="s", cluster_id="ghost", name_fa="x", name_en="x", agency_fa="x", agency_en="x",
                        service_type="G2C", level="national"))
        with pytest.raises(IntegrityError) as exc:
            s.flush()
        s.rollback()
        err = db_error(exc.value)
        assert err.status == 422 and err.code == "reference_error"
        s.add(m.Service(id="s", cluster_id="dup", name_fa="x", name_en="x", agency_fa="x", agency_en="x",
                        service_type="XXX", level="national"))
        with pytest.raises(IntegrityError) as exc:
            s.flush()
        s.rollback()
        assert db_error(exc.value).status == 422


def test_optional_parts():
    assert _optional_module("zistboom.no_such_part.api") is None
    assert _optional_module("zistboom.admin.deps") is not None
