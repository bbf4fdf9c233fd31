"""OAR's web tools on the test bed: Drawgantt-SVG, Monika and the REST API behind Apache.

``up`` installs Debian's ``oar-web-status`` and ``oar-restful-api`` with Apache, points
Drawgantt and Monika at OAR's database (read-only account, as oar.conf says), serves the API
as user ``oar`` through suexec on its own port (as the package's README.Debian describes, with
plain CGI: bookworm has no mod_fastcgi) with HTTP basic auth for the test bed's user, and
starts Apache without systemd (``apache2ctl``), reloading it only when its configuration
changed. ``down`` stops Apache and leaves everything else in place. The pure functions at the
top write the configuration texts; the rest is a thin shell of files and commands.
"""

from __future__ import annotations

import contextlib
import grp
import json
import logging
import os
import pwd
import re
import signal
from pathlib import Path
from typing import Any

from oarlib import conf as oarconf
from oarlib.conf import DbParams
from oarlib.testbed import (
    ENV_PATH,
    STATE_DIR,
    TestbedError,
    cmdline,
    install_packages,
    pid_alive,
    port_open,
    read_pid,
    require_root,
    run,
    sha256,
    wait_until,
)

log = logging.getLogger("oarlib.web")

HTTP_PORT = 80  # Apache's Debian default: Drawgantt and Monika
API_PORT = 6668  # the port of the API's virtual host in oar-restful-api's own Apache config
API_PASSWORD = "oarapipass"  # the test bed user's API password (basic auth)
PACKAGES = ("apache2", "libapache2-mod-php", "apache2-suexec-custom", "oar-web-status",
            "oar-restful-api")
BACKEND_PACKAGES = {"Pg": ("php-pgsql", "libdbd-pg-perl"),
                    "mysql": ("php-mysql", "libdbd-mysql-perl")}
MODULES = ("cgi", "suexec", "headers")
APACHE = Path("/etc/apache2")
SITE_NAME = "oar-testbed-api"
SITE = APACHE / "sites-available" / f"{SITE_NAME}.conf"
SUEXEC = APACHE / "suexec" / "www-data"  # apache2-suexec-custom: first line = document root
API_CGI_DIR = Path("/usr/lib/cgi-bin/oarapi")
HTPASSWD = Path("/etc/oar/api-users")
DRAWGANTT_CONF = Path("/etc/oar/drawgantt-config.inc.php")
MONIKA_CONF = Path("/etc/oar/monika.conf")
PIDFILE = Path("/var/run/apache2/apache2.pid")
SITE_TITLE = "Orpheus test bed"
DRAWGANTT_MEMORY = "1024M"  # PHP's default 128M is exhausted by 32,000 cores' rows


# ----------------------------------------------------------------------------- pure core

def urls(host: str = "localhost") -> dict[str, str]:
    """Where each tool answers."""
    api = f"http://{host}:{API_PORT}"
    return {"drawgantt": f"http://{host}/drawgantt-svg/", "monika": f"http://{host}/monika",
            "api": f"{api}/oarapi/", "api_auth": f"{api}/oarapi-priv/"}


def drawgantt_values(db: DbParams, ro_password: str) -> dict[str, str]:
    """``$CONF`` keys of drawgantt-config.inc.php for OAR's read-only database account."""
    return {"db_type": "pg" if db.type == "Pg" else "mysql", "db_server": db.host,
            "db_port": str(db.port), "db_name": db.name, "db_user": "oar_ro",
            "db_passwd": ro_password, "site": SITE_TITLE,
            "default_resource_base": "network_address"}


def monika_values(db: DbParams, ro_password: str) -> dict[str, str]:
    """Settings of monika.conf for the same account."""
    return {"css_path": "/monika.css", "clustername": SITE_TITLE, "hostname": db.host,
            "dbport": str(db.port), "dbtype": "psql" if db.type == "Pg" else "mysql",
            "dbname": db.name, "username": "oar_ro", "password": ro_password}


def _php_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def set_php_conf(text: str, values: dict[str, str]) -> str:
    """Set ``$CONF['key']`` lines of a Drawgantt config: the first uncommented assignment of
    each key is replaced, keys not assigned are added before the closing ``?>``."""
    done: set[str] = set()
    out: list[str] = []
    for line in text.splitlines():
        m = re.match(r"^\s*\$CONF\['(\w+)'\]\s*=", line)
        if m and m.group(1) in values and m.group(1) not in done:
            done.add(m.group(1))
            out.append(f"$CONF['{m.group(1)}'] = {_php_string(values[m.group(1)])};")
        else:
            out.append(line)
    extra = [f"$CONF['{k}'] = {_php_string(v)};" for k, v in values.items() if k not in done]
    end = max((i for i, line in enumerate(out) if line.strip() == "?>"), default=len(out))
    return "\n".join(out[:end] + extra + out[end:]) + "\n"


def set_monika_conf(text: str, values: dict[str, str]) -> str:
    """Set ``key = value`` lines of monika.conf (the first uncommented one; others appended)."""
    done: set[str] = set()
    out: list[str] = []
    for line in text.splitlines():
        m = re.match(r"^\s*(\w+)\s*=", line)
        if m and m.group(1) in values and m.group(1) not in done:
            done.add(m.group(1))
            out.append(f"{m.group(1)} = {values[m.group(1)]}")
        else:
            out.append(line)
    out += [f"{k} = {v}" for k, v in values.items() if k not in done]
    return "\n".join(out) + "\n"


def set_first_line(text: str, line: str) -> str:
    """``text`` with its first line replaced (suexec-custom's document root)."""
    rest = text.split("\n", 1)[1] if "\n" in text else ""
    return line + "\n" + rest


def api_site(port: int = API_PORT, cgi_dir: Path = API_CGI_DIR,
             users: Path = HTPASSWD) -> str:
    """Apache configuration of the test bed: Drawgantt's PHP memory limit; the API's
    virtual host: CGI as user oar (suexec); ``/oarapi`` public,
    ``/oarapi-priv`` with basic auth, its user handed to the API as ``X-Remote-Ident``."""
    return f"""# Written by `orpheus testbed up --web` (docs/testbed.md): OAR's API as user oar.
# Drawgantt builds the whole SVG in memory: about 1 kB a row, 32,000 cores make 32 MB
<Directory /usr/share/oar-web-status/drawgantt-svg>
  php_admin_value memory_limit {DRAWGANTT_MEMORY}
</Directory>
Listen {port}
<VirtualHost *:{port}>
  ScriptAlias /oarapi-priv {cgi_dir}/oarapi.cgi
  ScriptAlias /oarapi {cgi_dir}/oarapi.cgi
  SuexecUserGroup oar oar
  ErrorLog ${{APACHE_LOG_DIR}}/oarapi-error.log
  CustomLog ${{APACHE_LOG_DIR}}/oarapi-access.log combined
  <Directory {cgi_dir}>
    Options +ExecCGI -MultiViews +FollowSymLinks
    Require local
  </Directory>
  # the API trusts X-Remote-Ident as the user's login: never take it from the client
  RequestHeader unset X-Remote-Ident early
  <Location /oarapi-priv>
    AuthType Basic
    AuthName "OAR API (test bed)"
    AuthUserFile {users}
    Require valid-user
    RequestHeader set X-Remote-Ident "expr=%{{REMOTE_USER}}"
  </Location>
</VirtualHost>
"""


# ----------------------------------------------------------------------------- shell

def ensure_packages(db_type: str) -> None:
    install_packages((*PACKAGES, *BACKEND_PACKAGES[db_type]))


def _write(path: Path, text: str, mode: int, owner: str, group: str) -> bool:
    """Write ``text`` if it differs; set mode and owner; return whether it changed."""
    changed = not path.exists() or path.read_text() != text
    if changed:
        log.info("writing %s", path)
        path.write_text(text)
    path.chmod(mode)
    os.chown(path, *_ids(owner, group))
    return changed


def _ids(owner: str, group: str) -> tuple[int, int]:
    return pwd.getpwnam(owner).pw_uid, grp.getgrnam(group).gr_gid


def _enabled(kind: str, name: str) -> bool:
    return (APACHE / f"{kind}-enabled" / f"{name}.{'load' if kind == 'mods' else 'conf'}").exists()


def _set_password(user: str) -> None:
    """The user's API password in the htpasswd file (bcrypt), unless it is there already."""
    if HTPASSWD.exists() and run(["htpasswd", "-vb", str(HTPASSWD), user, API_PASSWORD],
                                 check=False, quiet=True).returncode == 0:
        return
    log.info("API user %s in %s", user, HTPASSWD)
    run(["htpasswd", "-bB", *([] if HTPASSWD.exists() else ["-c"]), str(HTPASSWD), user,
         API_PASSWORD], quiet=True)
    HTPASSWD.chmod(0o640)
    os.chown(HTPASSWD, *_ids("root", "www-data"))


def configure(user: str) -> None:
    """Drawgantt, Monika, the API's virtual host, suexec, modules and the user's password."""
    conf = oarconf.read()
    db = DbParams.from_conf(conf)
    ro = conf.get("DB_BASE_PASSWD_RO", "")
    _write(DRAWGANTT_CONF, set_php_conf(DRAWGANTT_CONF.read_text(), drawgantt_values(db, ro)),
           0o600, "www-data", "root")
    _write(MONIKA_CONF, set_monika_conf(MONIKA_CONF.read_text(), monika_values(db, ro)),
           0o600, "www-data", "root")
    _write(SUEXEC, set_first_line(SUEXEC.read_text(), str(API_CGI_DIR)), 0o644, "root", "root")
    _write(SITE, api_site(), 0o644, "root", "root")
    _set_password(user)
    for mod in MODULES:
        if not _enabled("mods", mod):
            run(["a2enmod", "-q", mod])
    if _enabled("conf", "oar-restful-api"):  # Debian's example vhost: same port as ours
        run(["a2disconf", "-q", "oar-restful-api"])
    if not _enabled("conf", "oar-web-status"):
        run(["a2enconf", "-q", "oar-web-status"])
    if not _enabled("sites", SITE_NAME):
        run(["a2ensite", "-q", SITE_NAME])


def config_digest() -> str:
    """A checksum of Apache's configuration tree (what a reload would read)."""
    parts: list[bytes] = []
    for path in sorted(APACHE.rglob("*")):
        with contextlib.suppress(OSError):
            parts.append(str(path).encode() + b"\0" + (
                path.read_bytes() if path.is_file() else b""))
    return sha256(b"\0".join(parts))


def apache_pid() -> int | None:
    pid = read_pid(PIDFILE)
    if pid and pid_alive(pid) and any("apache2" in a for a in cmdline(pid)[:1]):
        return pid
    return None


def _record() -> Path:
    return STATE_DIR / "apache.json"


def apache_ctl(action: str) -> None:
    """``apache2ctl <action>`` under a clean environment (it reads /etc/apache2/envvars)."""
    run(["env", "-i", f"PATH={ENV_PATH}", "LANG=C", "apache2ctl", action], cwd="/")


def start_or_reload(timeout: float = 30) -> int:
    """Start Apache, or reload it when its configuration changed since it was (re)started."""
    digest = config_digest()
    pid = apache_pid()
    try:
        rec = json.loads(_record().read_text())
    except (OSError, ValueError):
        rec = {}
    if pid and rec.get("pid") == pid and rec.get("digest") == digest:
        return pid
    apache_ctl("configtest")
    if pid:
        log.info("reloading Apache (pid %d): its configuration changed", pid)
        apache_ctl("graceful")
    else:
        for port in (HTTP_PORT, API_PORT):
            if port_open(port):
                raise TestbedError(f"port {port} is already in use by another process")
        log.info("starting Apache (ports %d and %d)", HTTP_PORT, API_PORT)
        apache_ctl("start")
    wait_until(lambda: apache_pid() is not None and port_open(HTTP_PORT)
               and port_open(API_PORT), timeout,
               f"Apache to listen on ports {HTTP_PORT} and {API_PORT} "
               "(see /var/log/apache2/error.log)")
    pid = apache_pid()
    assert pid is not None
    STATE_DIR.mkdir(mode=0o700, exist_ok=True)
    _record().write_text(json.dumps({"pid": pid, "digest": digest}))
    return pid


def up(user: str) -> dict[str, Any]:
    """Install, configure and start the web tools (idempotent); return ``status()``."""
    require_root()
    ensure_packages(DbParams.from_conf(oarconf.read()).type)
    configure(user)
    start_or_reload()
    return status()


def down(timeout: float = 15) -> bool:
    """Stop Apache if it runs; True if it did. Packages and configuration stay."""
    pid = apache_pid()
    if pid is None:
        return False
    log.info("stopping Apache (pid %d)", pid)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    wait_until(lambda: not pid_alive(pid), timeout, "Apache to exit")
    _record().unlink(missing_ok=True)
    return True


def status(host: str = "localhost") -> dict[str, Any]:
    """Whether Apache runs and where each tool answers."""
    pid = apache_pid()
    return {"running": pid is not None, "pid": pid,
            "urls": urls(host) if pid is not None else {}}

