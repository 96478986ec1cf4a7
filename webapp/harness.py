"""The production set-up run from code, as deployed: free ports, the server (``webapp/serve.py``) started and
stopped, nginx in front of it (the shipped site file of deploy/nginx/lab.conf with only its paths, ports and
certificate changed), scratch PostgreSQL databases, the site served in-process (a background thread, or one
request through the WSGI application without a socket), the CPU each part uses, and the audit of what the
server acknowledged against what the database holds. The one harness of the tests, the benches, the
simulated crowd and the closed loop."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg2
from django.conf import settings
from django.core.handlers.wsgi import WSGIHandler
from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler
from django.test import RequestFactory
from django.test.utils import override_settings

from webapp.serve import command

ROOT = Path(__file__).resolve().parents[1]
SITE_FILE = ROOT / "deploy" / "nginx" / "lab.conf"


def nginx_binary() -> str:
    """Debian's nginx (apt-get install -y nginx-light); RuntimeError naming the package if absent."""
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if not found:
        raise RuntimeError("nginx is not installed (apt-get install -y nginx-light; make browser does it)")
    return found


def db_url(settings_dict: Mapping) -> str:
    """A postgres:// URL for Django's connection settings (``connection.settings_dict``)."""
    s = settings_dict
    password = f":{s['PASSWORD']}" if s.get("PASSWORD") else ""
    host, port = s.get("HOST") or "127.0.0.1", s.get("PORT") or 5432
    return f"postgres://{s['USER']}{password}@{host}:{port}/{s['NAME']}"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_env(db_url: str, media: str, static: str, port: int, workers: int | None,
               threads: int | None = None) -> dict[str, str]:
    """Environment for manage.py / the server in production mode on plain-HTTP loopback."""
    env = {**os.environ, "DEBUG": "0", "SECRET_KEY": "bench-" + uuid.uuid4().hex * 2,
           "ALLOWED_HOSTS": "127.0.0.1,localhost", "SECURE_SSL_REDIRECT": "0", "SECURE_COOKIES": "0",
           "DATABASE_URL": db_url, "MEDIA_ROOT": media, "STATIC_ROOT": static, "CROWD_RATE_LIMIT": "0",
           "WEB_BIND": f"127.0.0.1:{port}", "PYTHONPATH": str(ROOT)}
    if workers:
        env["WEB_WORKERS"] = str(workers)
    if threads:
        env["WEB_THREADS"] = str(threads)
    return env


def server_capacity(env: dict[str, str]) -> tuple[int, int]:
    """(workers, threads per worker) of the production server started with ``env``."""
    cmd = command(env)
    return int(cmd[cmd.index("--workers") + 1]), int(cmd[cmd.index("--blocking-threads") + 1])


def start_server(env: dict[str, str], log_path: str, wait_s: float = 60) -> subprocess.Popen:
    """Start the server exactly as ``make serve-prod`` does (``webapp/serve.py``); return once it answers
    on WEB_BIND (any HTTP answer: behind TLS it redirects plain HTTP)."""
    log = open(log_path, "ab")
    proc = subprocess.Popen(command(env), cwd=ROOT, env=env, stdout=log, stderr=log, start_new_session=True)
    host, _, port = env["WEB_BIND"].rpartition(":")
    stop = time.monotonic() + wait_s
    while time.monotonic() < stop:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}; see {log_path}")
        conn = http.client.HTTPConnection(host, int(port), timeout=2)
        try:
            conn.request("GET", "/static/crowd/task.css")
            conn.getresponse().read()
            return proc
        except OSError:
            time.sleep(0.3)
        finally:
            conn.close()
    proc.kill()
    raise RuntimeError(f"the server did not answer within {wait_s} s; see {log_path}")


def _stop(proc: subprocess.Popen, sig: int, wait_s: float) -> None:
    """Send ``sig`` (a graceful stop), then SIGKILL to the process group after ``wait_s``."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(wait_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def stop_server(proc: subprocess.Popen) -> None:
    """Graceful stop (SIGTERM to the master), then SIGKILL to its process group if needed."""
    _stop(proc, signal.SIGTERM, 30)


# ----- scratch PostgreSQL databases -----
def scratch_url(admin_url: str, name: str) -> str:
    """``admin_url`` with its database name replaced by ``name``."""
    u = urlsplit(admin_url)
    return urlunsplit((u.scheme, u.netloc, "/" + name, u.query, u.fragment))


def admin_sql(admin_url: str, sql: str) -> None:
    """Run one statement outside a transaction (CREATE/DROP DATABASE need that)."""
    conn = psycopg2.connect(admin_url)
    conn.autocommit = True
    try:
        with conn.cursor() as c:
            c.execute(sql)
    finally:
        conn.close()


# ----- the site served in-process -----
def served_app() -> WSGIHandler:
    """What ``webapp/wsgi.py`` serves (Django's WSGI handler), with the settings in force now."""
    return WSGIHandler()


def wsgi_post(wsgi, token, body, *, header=None, content_type="application/json", path=None, **extra):
    """One judge POST through the WSGI application ``wsgi`` without a socket, with Django's connection
    handling (health checks, CONN_MAX_AGE) as served; returns (status code, headers dict, body bytes)."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = RequestFactory().post(path or f"/a/{token}/judge", raw, content_type=content_type,
                                headers={"X-Assignment-Token": str(header or token)}, **extra)
    environ = {"HTTP_HOST": "testserver", **req.environ}
    seen = {}

    def start_response(status, headers, exc_info=None):
        seen["status"], seen["headers"] = int(status.split()[0]), dict(headers)

    out = b"".join(wsgi(environ, start_response))
    return seen["status"], seen["headers"], out


class _ThreadedServer(ThreadedWSGIServer):
    request_queue_size = 256  # the listen backlog: many simulated participants connect at once


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 (the base class's name)
        pass


def _private_settings() -> override_settings:
    hosts = list(settings.ALLOWED_HOSTS)
    if "127.0.0.1" not in hosts and "*" not in hosts:
        hosts.append("127.0.0.1")
    return override_settings(CROWD_RATE_LIMIT=0, SECURE_SSL_REDIRECT=False, SESSION_COOKIE_SECURE=False,
                             CSRF_COOKIE_SECURE=False, ALLOWED_HOSTS=hosts)


class BackgroundServer:
    """``with BackgroundServer() as url:`` the site answers at ``url`` until the block ends.

    A threaded WSGI server (Django's runserver one, one thread per connection) on a free port of 127.0.0.1,
    serving ``served_app()`` against this process's database. It is private to the caller, so within this
    process the entry rate limit is off and, in production mode, plain HTTP is accepted on 127.0.0.1 (no
    HTTPS redirect, no secure-only cookies), until the block ends."""

    def __init__(self) -> None:
        self._server: _ThreadedServer | None = None
        self._thread: threading.Thread | None = None
        self._settings: override_settings | None = None

    def __enter__(self) -> str:
        self._settings = _private_settings()
        self._settings.enable()  # for this process only, until the block ends
        self._server = _ThreadedServer(("127.0.0.1", 0), _QuietHandler, allow_reuse_address=False)
        self._server.set_app(served_app())  # built after the settings above
        self._thread = threading.Thread(target=self._server.serve_forever, name="background-server",
                                        daemon=True)
        self._thread.start()
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __exit__(self, *exc) -> None:
        assert self._server is not None and self._thread is not None
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
        if self._settings is not None:
            self._settings.disable()


def _start_nginx(d: Path, http_block: str, port: int) -> subprocess.Popen:
    """Debian's nginx with ``http_block`` as its ``http`` context, files under ``d``; returns once it
    listens on ``port``. Run as root (as the tests and benches are), its workers read the test's files."""
    d.mkdir(parents=True, exist_ok=True)
    kinds = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    temps = "".join(f"  {k}_temp_path {d}/{k};\n" for k in kinds)
    (d / "nginx.conf").write_text(f"""worker_processes 1;
user root;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 8192; }}
http {{
  include /etc/nginx/mime.types;
  default_type application/octet-stream;
  access_log off;
{temps}{http_block}
}}
""")
    proc = subprocess.Popen([nginx_binary(), "-p", str(d), "-c", str(d / "nginx.conf"), "-g", "daemon off;"],
                            stdout=open(d / "out.log", "ab"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    stop = time.monotonic() + 20
    while time.monotonic() < stop:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return proc
        except OSError:
            if proc.poll() is not None:
                logs = (d / "out.log").read_text() + (d / "error.log").read_text()
                raise RuntimeError(f"nginx exited: {logs}") from None
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("nginx did not listen")


def stop_nginx(proc: subprocess.Popen) -> None:
    """nginx's graceful stop (SIGQUIT), then SIGKILL."""
    _stop(proc, signal.SIGQUIT, 10)


@dataclass
class Site:
    """nginx running the shipped site file: ``https`` and ``http`` are its base URLs."""

    proc: subprocess.Popen
    https: str
    http: str
    conf: str  # the site file as run


def site_conf(upstream_ports: list[int], static_root: str, media_root: str, cert: Path, key: Path,
              https_port: int, http_port: int, acme_root: str) -> str:
    """deploy/nginx/lab.conf with only its paths, ports and certificate changed (each must be found as
    shipped: RuntimeError names what is missing, so the file and this stay in step)."""
    text = SITE_FILE.read_text()
    servers = "".join(f"server 127.0.0.1:{p};\n    " for p in upstream_ports).rstrip()
    swaps = {
        "server 127.0.0.1:8000;": servers,
        "listen 80;": f"listen 127.0.0.1:{http_port};",
        "listen [::]:80;": "",
        "listen 443 ssl http2;": f"listen 127.0.0.1:{https_port} ssl http2;",
        "listen [::]:443 ssl http2;": "",
        "/etc/letsencrypt/live/lab.example.org/fullchain.pem": str(cert),
        "/etc/letsencrypt/live/lab.example.org/privkey.pem": str(key),
        "/srv/lab/static/": static_root.rstrip("/") + "/",
        "/srv/lab/media/served/": media_root.rstrip("/") + "/served/",
        "/var/www/letsencrypt": acme_root,
    }
    for old, new in swaps.items():
        if old not in text:
            raise RuntimeError(f"{SITE_FILE}: {old!r} not found (keep site_conf in step with the site file)")
        text = text.replace(old, new)
    return text


def start_site(tmp: Path, upstream_ports: list[int], static_root: str, media_root: str, cert: Path,
               key: Path) -> Site:
    """nginx with the shipped site (``site_conf``) on free loopback ports, in front of ``upstream_ports``."""
    https_port, http_port = free_port(), free_port()
    acme = tmp / "acme"
    acme.mkdir(parents=True, exist_ok=True)
    conf = site_conf(upstream_ports, static_root, media_root, cert, key, https_port, http_port, str(acme))
    (tmp / "site").mkdir(parents=True, exist_ok=True)
    (tmp / "site" / "lab.conf").write_text(conf)
    proc = _start_nginx(tmp / "site", f"  include {tmp / 'site' / 'lab.conf'};", https_port)
    return Site(proc, f"https://localhost:{https_port}", f"http://localhost:{http_port}", conf)


def self_signed(tmp: Path, host: str = "localhost") -> tuple[Path, Path]:
    """(certificate, key) of a fresh self-signed certificate for ``host`` and 127.0.0.1 (openssl)."""
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", f"/CN={host}", "-addext", f"subjectAltName=DNS:{host},IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


def worker_pids(master_pid: int) -> list[int]:
    """PIDs of the server's workers (children of its main process), from /proc."""
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                stat = (p / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == master_pid:
                out.append(int(p.name))
    return sorted(out)



@dataclass
class Audit:
    stored: int
    acked: int
    lost: list[str]  # acknowledged but not stored
    unacknowledged_stored: int  # stored but never acknowledged (a client gave up at the hard stop)
    wrong_content: int  # stored answer differs from the acknowledged one
    duplicate_uuid: int
    duplicate_slot: int

    @property
    def ok(self) -> bool:
        """Something was judged, and every acknowledged judgment is stored exactly once, with the
        acknowledged answer (a run that stored nothing proves nothing: it fails)."""
        return (self.stored > 0 and self.acked > 0 and not self.lost and not self.wrong_content
                and not self.duplicate_uuid and not self.duplicate_slot
                and self.stored == self.acked + self.unacknowledged_stored)

    def line(self) -> str:
        return (f"stored {self.stored}, acknowledged {self.acked}, lost {len(self.lost)}, duplicates "
                f"{self.duplicate_uuid} (uuid) + {self.duplicate_slot} (slot), wrong answer "
                f"{self.wrong_content}, stored without ack {self.unacknowledged_stored}")


def audit(cursor, slug: str, acked: Mapping[str, tuple[str, int, str]]) -> Audit:
    """Compare what the server acknowledged (``acked``: judgment uuid -> (assignment token, position,
    choice)) with what the database holds for experiment ``slug``."""
    cursor.execute(
        """SELECT j.client_uuid::text, a.token::text, i.position, j.chosen_side, j.item_id
           FROM crowd_judgment j JOIN crowd_assignment a ON a.id = j.assignment_id
           JOIN crowd_assignmentitem i ON i.id = j.item_id
           JOIN experiments_experiment e ON e.id = a.experiment_id WHERE e.slug = %s""", [slug])
    rows = cursor.fetchall()
    by_uuid = {r[0]: r for r in rows}
    lost = [u for u in acked if u not in by_uuid]
    wrong = sum(1 for u, (tok, pos, ch) in acked.items()
                if u in by_uuid and (by_uuid[u][1].replace("-", "") != tok.replace("-", "")
                                     or by_uuid[u][2] != pos or by_uuid[u][3] != ch))
    return Audit(stored=len(rows), acked=len(acked), lost=lost,
                 unacknowledged_stored=sum(1 for u in by_uuid if u not in acked), wrong_content=wrong,
                 duplicate_uuid=len(rows) - len(by_uuid),
                 duplicate_slot=len(rows) - len({r[4] for r in rows}))


# ----- CPU -----
# psutil is a dev requirement (tests and benches measure CPU; the site and the simulated crowd never do), so
# it is imported where CPU is read.
Components = Mapping[str, Callable[[], list]]  # component name -> () -> its processes (psutil.Process)
POSTGRES_AUX = (": walwriter", ": checkpointer", ": background writer")


def machine_seconds() -> float:
    """CPU seconds the whole machine has used so far (every process, ours included)."""
    import psutil  # dev requirement (see above)

    t = psutil.cpu_times()
    return t.user + t.nice + t.system + t.irq + t.softirq + t.steal


def processes(*pids: int, children: bool = False) -> list:
    """psutil.Process of each of ``pids`` still running, with all their descendants if ``children``."""
    import psutil  # dev requirement (see above)

    out = []
    for pid in pids:
        try:
            root = psutil.Process(pid)
            out += [root, *root.children(recursive=True)] if children else [root]
        except psutil.Error:
            pass
    return out


def postgres_processes(db: str) -> list:
    """PostgreSQL's backends connected to ``db`` (their process title names the database) and the cluster's
    WAL writer, checkpointer and background writer (shared with whatever else uses the cluster)."""
    import psutil  # dev requirement (see above)

    out = []
    for p in psutil.process_iter(["name", "cmdline"]):
        title = f" {(p.info['cmdline'] or [''])[0]} "
        if p.info["name"] == "postgres" and (f" {db} " in title or title.rstrip().endswith(POSTGRES_AUX)):
            out.append(p)
    return out


def read_cpu(components: Components) -> dict[str, dict[int, float]]:
    """CPU seconds (user + system) used so far, per component and process, and the whole machine's (key 0
    under "machine")."""
    import psutil  # dev requirement (see above)

    out: dict[str, dict[int, float]] = {name: {} for name in components}
    for name, procs in components.items():
        for p in procs():
            try:
                t = p.cpu_times()
            except psutil.Error:
                continue
            out[name][p.pid] = t.user + t.system
    out["machine"] = {0: machine_seconds()}
    return out


def cpu_seconds(server_pid: int, client_pids: tuple[int, ...] = ()) -> dict[str, dict[int, float]]:
    """``read_cpu`` of the server (its process and children) and the simulated workers (this process and
    ``client_pids``: the native client's)."""
    return read_cpu({"server": lambda: processes(server_pid, children=True),
                     "clients": lambda: processes(os.getpid(), *client_pids)})


def cpu_used(before: dict[str, dict[int, float]], after: dict[str, dict[int, float]]) -> dict[str, float]:
    """CPU seconds per component between two ``read_cpu`` readings (processes that ended in between are
    not counted; new ones are counted whole)."""
    return {k: sum(t - before[k].get(pid, 0.0) for pid, t in after[k].items()) for k in after}


class CpuMeter(threading.Thread):
    """``read_cpu`` once a second, so that processes that end before the run does are counted up to their
    last sample; ``used()`` is the CPU each component (and "machine") used since the meter was made
    (processes already running then count from that moment)."""

    def __init__(self, components: Components) -> None:
        super().__init__(daemon=True)
        self.components = components
        self.first = read_cpu(components)
        self.last = {k: dict(v) for k, v in self.first.items()}
        self.stop = threading.Event()

    def _sample(self) -> None:
        for k, v in read_cpu(self.components).items():
            self.last[k].update(v)

    def run(self) -> None:
        while not self.stop.wait(1.0):
            self._sample()

    def used(self) -> dict[str, float]:
        self._sample()
        return cpu_used(self.first, self.last)
