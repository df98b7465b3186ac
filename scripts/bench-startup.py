#!/usr/bin/env python3
"""Cold start of a tiny database: compute-ctl against the floor, measured in the same run.

  scripts/bench-startup.py [RUNS] [pageserver|upstream]
      (default 20 pageserver; needs `cargo build --release --bins --examples`)

Both sources start a Replica with skip_pg_catalog_updates from a tiny cluster (initdb):
  pageserver: the cluster, cleanly shut down, as a gzip tar served by the pageserver stand-in
              (pg-basebackup-fetch/examples/pageserver_standin.rs), as Neon serves a basebackup;
              floor = `tar -xzf` of that same file + a bare `postgres` until postmaster.pid says
              ready: "unpack the same data + bare postgres spawn to ready".
  upstream:   the cluster running as a primary, cloned live with BASE_BACKUP (which checkpoints
              the primary on every start); floor = a tar made once by pg_basebackup -Ft,
              unpacked + a bare postgres.
  ours  = compute-ctl from process start to `running`: /metrics.json's total_startup_ms and
          each stage's timing.
Prints p50/p90 of each and the ratio ours/floor. Run as root (drops to postgres) or as the
postgres user.
"""
import json, os, pwd, shutil, signal, socket, statistics, subprocess, sys, tempfile, time, urllib.request

RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 20
SOURCE = sys.argv[2] if len(sys.argv) > 2 else "pageserver"
TENANT, TIMELINE, TOKEN = "b0554b632bd4d547a63b86c3630317e8", "2414a61ffc94e428f14b5758fe308e13", "bench-token"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release")
PGBIN = sorted(
    (d for d in (f"/usr/lib/postgresql/{v}/bin" for v in os.listdir("/usr/lib/postgresql"))
     if os.path.exists(f"{d}/postgres")), key=lambda d: int(d.split("/")[4]))[-1]
AS_ROOT = os.geteuid() == 0
PG = pwd.getpwnam("postgres") if AS_ROOT else None


def demote():
    if PG:
        os.setgid(PG.pw_gid)
        os.setuid(PG.pw_uid)


def run_pg(args, **kw):
    return subprocess.run(args, preexec_fn=demote, check=True, **kw)


def chown(path):
    if PG:
        for d, dirs, files in os.walk(path):
            os.chown(d, PG.pw_uid, PG.pw_gid)
            for f in files:
                os.chown(os.path.join(d, f), PG.pw_uid, PG.pw_gid)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(pgdata, proc, timeout=30):
    pidfile = os.path.join(pgdata, "postmaster.pid")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(pidfile) as f:
                lines = f.read().splitlines()
            if lines and lines[-1].strip() == "ready":
                return
        except FileNotFoundError:
            pass
        if proc.poll() is not None:
            raise RuntimeError("postgres exited before ready")
        time.sleep(0.0005)
    raise RuntimeError("postgres not ready in time")


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def main():
    work = tempfile.mkdtemp(prefix="bench-start-", dir="/dev/shm")
    os.chmod(work, 0o755)
    if PG:
        os.chown(work, PG.pw_uid, PG.pw_gid)
    primary = os.path.join(work, "primary")
    run_pg([f"{PGBIN}/initdb", "--no-sync", "-A", "trust", "-U", "cloud_admin", "-D", primary],
           stdout=subprocess.DEVNULL)
    primary_port = free_port()
    with open(os.path.join(primary, "postgresql.conf"), "a") as f:
        f.write(f"listen_addresses=''\nport={primary_port}\nunix_socket_directories='{work}'\n"
                "wal_level=replica\nmax_wal_senders=10\nfsync=off\n")
    with open(os.path.join(primary, "pg_hba.conf"), "a") as f:
        f.write("local replication all trust\n")
    primary_proc = subprocess.Popen([f"{PGBIN}/postgres", "-D", primary], preexec_fn=demote,
                                    stderr=subprocess.DEVNULL)
    standin = None
    try:
        wait_ready(primary, primary_proc)
        if SOURCE == "pageserver":
            primary_proc.send_signal(signal.SIGINT)  # a clean shutdown, as a pageserver serves
            primary_proc.wait()
            archive = os.path.join(work, "base.tar.gz")
            os.remove(os.path.join(primary, "postmaster.opts"))
            run_pg(["tar", "-czf", archive, "-C", primary, "."])
            standin = subprocess.Popen(
                [f"{BIN}/examples/pageserver_standin", archive, TENANT, TIMELINE, TOKEN, "--replica"],
                stdout=subprocess.PIPE, text=True)
            source = {"pageserver_connstring": f"host=127.0.0.1 port={standin.stdout.readline().strip()}",
                      "tenant_id": TENANT, "timeline_id": TIMELINE, "storage_auth_token": TOKEN}
            floor_archive = (archive, "-xzf")
        else:
            tarball = os.path.join(work, "base")
            run_pg([f"{PGBIN}/pg_basebackup", "-h", work, "-p", str(primary_port), "-U",
                    "cloud_admin", "-D", tarball, "-Ft", "-X", "fetch", "--no-sync"])
            source = {"upstream_connstring": f"host={work} port={primary_port} user=cloud_admin"}
            floor_archive = (os.path.join(tarball, "base.tar"), "-xf")
        ours, floor = [], []
        for i in range(RUNS):
            floor.append(floor_run(work, floor_archive, i))
            ours.append(our_run(work, source, i))
        report(ours, floor)
    finally:
        if standin:
            standin.kill()
            standin.wait()
        if primary_proc.poll() is None:
            primary_proc.send_signal(signal.SIGINT)
            primary_proc.wait()
        shutil.rmtree(work, ignore_errors=True)


def floor_run(work, floor_archive, i):
    pgdata = os.path.join(work, f"floor{i}")
    port = free_port()
    start = time.monotonic()
    os.mkdir(pgdata, 0o700)
    if PG:
        os.chown(pgdata, PG.pw_uid, PG.pw_gid)
    archive, flags = floor_archive
    run_pg(["tar", flags, archive, "-C", pgdata])
    with open(os.path.join(pgdata, "postgresql.conf"), "a") as f:
        f.write(f"port={port}\nunix_socket_directories='{pgdata}'\nlisten_addresses=''\n")
    proc = subprocess.Popen([f"{PGBIN}/postgres", "-D", pgdata], preexec_fn=demote,
                            stderr=subprocess.DEVNULL)
    wait_ready(pgdata, proc)
    elapsed = (time.monotonic() - start) * 1000
    proc.send_signal(signal.SIGINT)  # fast shutdown: an immediate one leaves DSM segments behind
    proc.wait()
    shutil.rmtree(pgdata, ignore_errors=True)
    return {"total_ms": elapsed}


def our_run(work, source, i):
    pgdata = os.path.join(work, f"ours{i}", "pgdata")
    os.makedirs(os.path.dirname(pgdata))
    port, http_port = free_port(), free_port()
    spec = {
        "format_version": 1.0, "mode": "Replica", "skip_pg_catalog_updates": True, **source,
        "cluster": {"roles": [], "databases": [], "settings": [
            {"name": "port", "value": str(port), "vartype": "integer"},
            {"name": "listen_addresses", "value": "", "vartype": "string"},
            {"name": "fsync", "value": "off", "vartype": "bool"}]}}
    spec_path = os.path.join(work, f"ours{i}", "spec.json")
    with open(spec_path, "w") as f:
        json.dump(spec, f)
    proc = subprocess.Popen([f"{BIN}/compute-ctl", "-D", pgdata, "-S", spec_path, "-b",
                             f"{PGBIN}/postgres", "-C", "postgresql://cloud_admin@localhost/postgres",
                             "--http-port", str(http_port)], stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/status", timeout=1) as r:
                    status = json.load(r)["status"]
                if status == "running":
                    break
                if status == "failed":
                    raise RuntimeError("compute failed")
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("compute never ran")
            time.sleep(0.002)
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics.json") as r:
            metrics = json.load(r)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait()
        shutil.rmtree(os.path.dirname(pgdata), ignore_errors=True)
    return {"total_ms": metrics["total_startup_ms"], **metrics}


def report(ours, floor):
    floor_total = [r["total_ms"] for r in floor]
    rows = [("floor: untar the same data + postgres to ready", floor_total)]
    for key in ["sync_safekeepers_ms", "pageserver_connect_micros", "basebackup_ms", "start_postgres_ms", "config_ms",
                "total_startup_ms"]:
        rows.append((f"ours: {key}", [r.get(key, 0) for r in ours]))
    print(f"{RUNS} cold starts of a tiny database ({SOURCE} source, Replica, skip_pg_catalog_updates)")
    print(f"{'measure':<42} {'p50 ms':>8} {'p90 ms':>8}")
    for name, values in rows:
        print(f"{name:<42} {pct(values, 50):>8.1f} {pct(values, 90):>8.1f}")
    ours_total = [r["total_startup_ms"] for r in ours]
    print(f"{'ratio ours/floor (p50)':<42} {pct(ours_total, 50) / pct(floor_total, 50):>8.2f}")


if __name__ == "__main__":
    main()
