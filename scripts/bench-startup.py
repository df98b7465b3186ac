#!/usr/bin/env python3
"""Cold start of a tiny database: compute-ctl against the floor, measured in the same run.

  scripts/bench-startup.py [RUNS] [pageserver|grpc|upstream|pooled|embedded]
      (default 20 pageserver; needs `cargo build --release --bins --examples` and, for grpc,
      `cargo build --release -p pg-page-grpc --features stand-in --examples`;
      BENCH_PROFILE=debug takes target/debug instead)

Both sources start a Replica with skip_pg_catalog_updates from a tiny cluster (initdb):
  pageserver: the cluster, cleanly shut down, as a gzip tar served by the pageserver stand-in
              (pg-basebackup-fetch/examples/pageserver_standin.rs), as Neon serves a basebackup;
              floor = `tar -xzf` of that same file + a bare `postgres` until postmaster.pid says
              ready: "unpack the same data + bare postgres spawn to ready".
  grpc:       the same archive served by both stand-ins, the libpq one and the gRPC one
              (pg-page-grpc/examples/grpc_pageserver_standin.rs: GetBaseBackup in 256 KiB
              chunks, as the pageserver's gRPC page service sends it); each run starts the
              floor, a compute on libpq and a compute whose spec prefers gRPC, in turn.
  upstream:   the cluster running as a primary, cloned live with BASE_BACKUP (which checkpoints
              the primary on every start); floor = a tar made once by pg_basebackup -Ft,
              unpacked + a bare postgres.
  pooled:     the pageserver setup; besides the cold start from process start (wall clock),
              a pooled start: compute-ctl with no spec, waited to `empty`, then the time from
              POST /configure to `running` (what a control plane's tenant waits for).
  embedded:   `compute-ctl --embedded-default` (initdb source, the sample spec: two roles, two
              databases) to `running`, wall clock from process start, with the template cache
              warm (a private cache dir, filled by one untimed start) and with it off;
              floor = `initdb --no-sync` + `pg_ctl start -w` of the same cluster.
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
BIN = os.path.join(ROOT, "target", os.environ.get("BENCH_PROFILE", "release"))
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
    if SOURCE == "embedded":
        try:
            embedded(work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return
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
    standin = grpc_standin = None
    try:
        wait_ready(primary, primary_proc)
        if SOURCE in ("pageserver", "grpc"):
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
            if SOURCE == "grpc":
                grpc_standin = subprocess.Popen(
                    [f"{BIN}/examples/grpc_pageserver_standin", archive, TENANT, TIMELINE, TOKEN],
                    stdout=subprocess.PIPE, text=True)
                grpc_url = f"grpc://no_user@127.0.0.1:{grpc_standin.stdout.readline().strip()}"
                grpc_source = {"pageserver_connection_info": {
                    "shard_count": 0, "prefer_protocol": "grpc",
                    "shards": {"0000": {"pageservers": [{"id": 1, "grpc_url": grpc_url}]}}},
                    "tenant_id": TENANT, "timeline_id": TIMELINE, "storage_auth_token": TOKEN}
        else:
            tarball = os.path.join(work, "base")
            run_pg([f"{PGBIN}/pg_basebackup", "-h", work, "-p", str(primary_port), "-U",
                    "cloud_admin", "-D", tarball, "-Ft", "-X", "fetch", "--no-sync"])
            source = {"upstream_connstring": f"host={work} port={primary_port} user=cloud_admin"}
            floor_archive = (os.path.join(tarball, "base.tar"), "-xf")
        ours, floor, pooled, grpc = [], [], [], []
        for i in range(RUNS):
            floor.append(floor_run(work, floor_archive, i))
            ours.append(our_run(work, source, i))
            if SOURCE == "pooled":
                pooled.append(our_run(work, source, i, pooled=True))
            if SOURCE == "grpc":
                grpc.append(our_run(work, grpc_source, f"grpc{i}"))
        report(ours, floor)
        if grpc:
            print(f"{os.path.getsize(archive)} bytes of gzip tar; the same starts over gRPC:")
            report(grpc, floor)
            for key in ["pageserver_connect_micros", "basebackup_ms", "total_startup_ms"]:
                libpq_p50 = pct([r.get(key, 0) for r in ours], 50)
                grpc_p50 = pct([r.get(key, 0) for r in grpc], 50)
                ratio = grpc_p50 / libpq_p50 if libpq_p50 else float("nan")
                print(f"{f'gRPC/libpq {key} (p50)':<42} {ratio:>8.2f}")
        if pooled:
            cold = [r["wall_ms"] for r in ours]
            warm = [r["wall_ms"] for r in pooled]
            print(f"{'ours: cold, process start -> running':<42} {pct(cold, 50):>8.1f} {pct(cold, 90):>8.1f}")
            print(f"{'ours: pooled, POST /configure -> running':<42} {pct(warm, 50):>8.1f} {pct(warm, 90):>8.1f}")
            print(f"{'ratio pooled/cold (p50)':<42} {pct(warm, 50) / pct(cold, 50):>8.2f}")
    finally:
        for server in (standin, grpc_standin):
            if server:
                server.kill()
                server.wait()
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


def tiny_spec(source, port):
    return {
        "format_version": 1.0, "mode": "Replica", "skip_pg_catalog_updates": True, **source,
        "cluster": {"roles": [], "databases": [], "settings": [
            {"name": "port", "value": str(port), "vartype": "integer"},
            {"name": "listen_addresses", "value": "", "vartype": "string"},
            {"name": "fsync", "value": "off", "vartype": "bool"}]}}


def wait_status(http_port, want, deadline_s=60):
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/status", timeout=1) as r:
                status = json.load(r)["status"]
            if status == want:
                return
            if status == "failed":
                raise RuntimeError("compute failed")
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"compute never reached {want}")
        time.sleep(0.001)


def our_run(work, source, i, pooled=False):
    """A start from process start (wall_ms), or with `pooled` from POST /configure."""
    pgdata = os.path.join(work, f"ours{i}", "pgdata")
    os.makedirs(os.path.dirname(pgdata))
    port, http_port = free_port(), free_port()
    spec = tiny_spec(source, port)
    spec_path = os.path.join(work, f"ours{i}", "spec.json")
    with open(spec_path, "w") as f:
        json.dump(spec, f)
    args = [f"{BIN}/compute-ctl", "-D", pgdata, "-b", f"{PGBIN}/postgres", "-C",
            "postgresql://cloud_admin@localhost/postgres", "--http-port", str(http_port)]
    if not pooled:
        args += ["-S", spec_path]
    start = time.monotonic()
    proc = subprocess.Popen(args, stderr=subprocess.DEVNULL)
    try:
        if pooled:
            wait_status(http_port, "empty")
            body = json.dumps({"spec": spec, "compute_ctl_config": {}}).encode()
            start = time.monotonic()
            request = urllib.request.Request(f"http://127.0.0.1:{http_port}/configure", data=body,
                                             headers={"Content-Type": "application/json"})
            urllib.request.urlopen(request, timeout=60).close()
        wait_status(http_port, "running")
        wall = (time.monotonic() - start) * 1000
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics.json") as r:
            metrics = json.load(r)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait()
        shutil.rmtree(os.path.dirname(pgdata), ignore_errors=True)
    return {"total_ms": metrics["total_startup_ms"], "wall_ms": wall, **metrics}


def embedded_run(work, i, env):
    pgdata = os.path.join(work, f"emb{i}", "pgdata")
    os.makedirs(os.path.dirname(pgdata))
    http_port = free_port()
    start = time.monotonic()
    proc = subprocess.Popen([f"{BIN}/compute-ctl", "--embedded-default", "-D", pgdata, "-b",
                             f"{PGBIN}/postgres", "-C", "postgresql://cloud_admin@localhost/postgres",
                             "--http-port", str(http_port)], stderr=subprocess.DEVNULL,
                            env={**os.environ, **env})
    try:
        wait_status(http_port, "running")
        wall = (time.monotonic() - start) * 1000
        with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics.json") as r:
            metrics = json.load(r)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait()
        shutil.rmtree(os.path.dirname(pgdata), ignore_errors=True)
    return {"wall_ms": wall, **metrics}


def embedded_floor(work, i):
    pgdata = os.path.join(work, f"floor{i}")
    port = free_port()
    start = time.monotonic()
    run_pg([f"{PGBIN}/initdb", "--no-sync", "-A", "trust", "-U", "cloud_admin", "-E", "UTF8",
            "--locale=C.UTF-8", "-D", pgdata], stdout=subprocess.DEVNULL)
    run_pg([f"{PGBIN}/pg_ctl", "start", "-w", "-D", pgdata, "-l", os.path.join(work, f"floor{i}.log"),
            "-o", f"-p {port} -k {pgdata} -c listen_addresses=''"], stdout=subprocess.DEVNULL)
    elapsed = (time.monotonic() - start) * 1000
    run_pg([f"{PGBIN}/pg_ctl", "stop", "-m", "fast", "-D", pgdata], stdout=subprocess.DEVNULL)
    shutil.rmtree(pgdata, ignore_errors=True)
    return elapsed


def embedded(work):
    cache = os.path.join(work, "template-cache")
    warm_env = {"COMPUTE_TOOLS_TEMPLATE_CACHE": cache}
    off_env = {"COMPUTE_TOOLS_NO_TEMPLATE_CACHE": "true"}
    first = embedded_run(work, "first", warm_env)  # fills the cache (untimed in the table)
    floor, warm, off = [], [], []
    for i in range(RUNS):
        floor.append(embedded_floor(work, i))
        warm.append(embedded_run(work, i, warm_env))
        off.append(embedded_run(work, f"off{i}", off_env))
    print(f"{RUNS} starts of the embedded default (initdb source, sample spec); wall clock")
    print(f"{'measure':<46} {'p50 ms':>8} {'p90 ms':>8}")
    rows = [("floor: initdb --no-sync + pg_ctl start -w", floor),
            ("ours: template cache warm, -> running", [r["wall_ms"] for r in warm]),
            ("ours: warm, basebackup_ms", [r.get("basebackup_ms", 0) for r in warm]),
            ("ours: warm, start_postgres_ms", [r.get("start_postgres_ms", 0) for r in warm]),
            ("ours: warm, config_ms", [r.get("config_ms", 0) for r in warm]),
            ("ours: --no-template-cache, -> running", [r["wall_ms"] for r in off]),
            ("ours: off, basebackup_ms", [r.get("basebackup_ms", 0) for r in off])]
    for name, values in rows:
        print(f"{name:<46} {pct(values, 50):>8.1f} {pct(values, 90):>8.1f}")
    print(f"{'first start (cache miss: builds the template)':<46} {first['wall_ms']:>8.1f}")
    for name, values in [("warm", rows[1][1]), ("off", rows[5][1])]:
        print(f"{f'ratio {name}/floor (p50, p90)':<46} {pct(values, 50) / pct(floor, 50):>8.2f}"
              f" {pct(values, 90) / pct(floor, 90):>8.2f}")


def report(ours, floor):
    floor_total = [r["total_ms"] for r in floor]
    rows = [("floor: untar the same data + postgres to ready", floor_total)]
    for key in ["sync_safekeepers_ms", "pageserver_connect_micros", "basebackup_ms", "start_postgres_ms", "config_ms",
                "total_startup_ms"]:
        rows.append((f"ours: {key}", [r.get(key, 0) for r in ours]))
    print(f"{RUNS} cold starts of a tiny database ({SOURCE} source, Replica, skip_pg_catalog_updates,"
          f" {os.path.basename(BIN)} build)")
    print(f"{'measure':<42} {'p50 ms':>8} {'p90 ms':>8}")
    for name, values in rows:
        print(f"{name:<42} {pct(values, 50):>8.1f} {pct(values, 90):>8.1f}")
    ours_total = [r["total_startup_ms"] for r in ours]
    print(f"{'ratio ours/floor (p50)':<42} {pct(ours_total, 50) / pct(floor_total, 50):>8.2f}")


if __name__ == "__main__":
    main()
