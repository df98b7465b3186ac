#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets under fuzz/corpus/ (see SOURCES.md there)."""
import io, json, os, struct, sys, tarfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "fuzz", "corpus")
FIXTURES = os.environ.get("NEON_FIXTURES", "/work/shared/fixtures/neon")


def put(target, name, data):
    os.makedirs(os.path.join(CORPUS, target), exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(CORPUS, target, name), "wb") as f:
        f.write(data)


SAMPLE = {
    "format_version": 1.0,
    "suspend_timeout_seconds": 0,
    "mode": "Primary",
    "cluster": {
        "roles": [{"name": "alice", "encrypted_password": "SCRAM-SHA-256$4096:c2FsdA==$a:b", "options": None}],
        "databases": [{"name": "app", "owner": "alice", "options": [{"name": "allow_connections", "value": "true", "vartype": "bool"}]}],
        "settings": [
            {"name": "max_connections", "value": "100", "vartype": "integer"},
            {"name": "neon.timeline_id", "value": "0123456789abcdef0123456789abcdef", "vartype": "string"},
            {"name": "search_path", "value": "'$user', public", "vartype": "string"},
        ],
        "postgresql_conf": "work_mem = '4MB'\n# a comment\nlog_min_messages = warning\n",
    },
    "delta_operations": [{"action": "rename_role", "name": "bob", "new_name": "carol"}],
}


def spec_seeds():
    for name in sorted(os.listdir(FIXTURES)):
        if name.endswith(".json"):
            with open(os.path.join(FIXTURES, name), "rb") as f:
                put("spec", name, f.read())
    put("spec", "sample.json", json.dumps(SAMPLE))
    put("spec", "envelope.json", json.dumps({"spec": SAMPLE, "compute_ctl_config": {"jwks": {"keys": []}}}))
    put("spec", "empty-envelope.json", '{"spec": null}')


def document_seeds():
    doc = {
        "document_version": 1,
        "spec": SAMPLE,
        "pgdata": "/var/lib/postgresql/data",
        "pgbin": "/usr/lib/postgresql/17/bin/postgres",
        "connstr": "postgresql://cloud_admin@localhost/postgres",
        "instance": {"port": 55432, "socket_dir": "/tmp"},
        "sync_safekeepers": {"method": "skipped", "lsn": "0/0"},
        "basebackup": {"source": "initdb", "basebackup_ms": 12, "attempts": 1, "files": 3},
        "future_field": {"kept": True},
    }
    put("document", "full.json", json.dumps(doc))
    del doc["spec"]
    put("document", "no-spec.json", json.dumps(doc))


def tar_bytes(members):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    # Small seeds: the members, then the two zero blocks of the end (no record padding).
    data = buf.getvalue().rstrip(b"\0")
    return data + b"\0" * ((-len(data)) % 512 + 1024)


def member(name, kind=tarfile.REGTYPE, data=b"", link=""):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = 0o600 if kind == tarfile.REGTYPE else 0o700
    info.linkname = link
    if kind == tarfile.REGTYPE:
        info.size = len(data)
        return info, data
    return info, None


def tar_seeds():
    put("tar", "pgdata.tar", tar_bytes([
        member("global", tarfile.DIRTYPE),
        member("global/pg_control", data=b"\x01" * 64),
        member("base/1/", tarfile.DIRTYPE),
        member("base/1/1259", data=b"page" * 32),
        member("PG_VERSION", data=b"17\n"),
        member("postgresql.auto.conf", data=b""),
    ]))
    put("tar", "symlink.tar", tar_bytes([member("pg_wal", tarfile.SYMTYPE, link="/tmp")]))
    put("tar", "dotdot.tar", tar_bytes([member("../escape", data=b"x")]))
    put("tar", "absolute.tar", tar_bytes([member("/tmp/absolute", data=b"x")]))
    put("tar", "hardlink.tar", tar_bytes([member("a", data=b"x"), member("b", tarfile.LNKTYPE, link="a")]))
    put("tar", "fifo.tar", tar_bytes([member("fifo", tarfile.FIFOTYPE)]))
    put("tar", "longname.tar", tar_bytes([member("d/" + "n" * 150, data=b"long")]))
    put("tar", "file-then-dir.tar", tar_bytes([member("x", data=b"1"), member("x/y", data=b"2")]))


def msg(kind, body=b""):
    return kind + struct.pack("!I", len(body) + 4) + body


def cstr(s):
    return s.encode() + b"\0"


def ready():
    return msg(b"Z", b"I")


def startup_ok():
    return (msg(b"R", struct.pack("!I", 0)) + msg(b"S", cstr("server_version") + cstr("17.2"))
            + msg(b"K", struct.pack("!II", 42, 7)) + ready())


def row_description(names):
    body = struct.pack("!H", len(names))
    for name in names:
        body += cstr(name) + struct.pack("!IHIhih", 0, 0, 25, -1, -1, 0)
    return msg(b"T", body)


def data_row(values):
    body = struct.pack("!H", len(values))
    for v in values:
        body += struct.pack("!i", -1) if v is None else struct.pack("!i", len(v)) + v
    return msg(b"D", body)


def error(code, text):
    return msg(b"E", b"S" + cstr("ERROR") + b"C" + cstr(code) + b"M" + cstr(text) + b"\0")


def wire_seeds():
    query = (row_description(["systemid", "timeline", "xlogpos", "dbname"])
             + data_row([b"7000000000000000001", b"1", b"0/16B3748", None])
             + msg(b"C", cstr("IDENTIFY_SYSTEM")) + ready())
    put("wire", "query", b"\x00" + startup_ok() + query)
    copy = (msg(b"H", b"\x00" + struct.pack("!H", 0)) + msg(b"d", b"tar data " * 20)
            + msg(b"d", b"more") + msg(b"c") + msg(b"C", cstr("COPY 0")) + ready())
    put("wire", "copy-payloads", b"\x01" + startup_ok() + copy)
    put("wire", "copy-read", b"\x02" + startup_ok() + copy)
    put("wire", "cleartext", b"\x00" + msg(b"R", struct.pack("!I", 3)) + startup_ok() + query)
    put("wire", "md5", b"\x00" + msg(b"R", struct.pack("!I", 5) + b"salt") + startup_ok() + query)
    put("wire", "scram", b"\x00" + msg(b"R", struct.pack("!I", 10) + cstr("SCRAM-SHA-256") + b"\0")
        + msg(b"R", struct.pack("!I", 11) + b"r=nonce,s=c2FsdA==,i=4096"))
    put("wire", "error", b"\x01" + startup_ok() + error("42601", "syntax error") + ready())
    put("wire", "startup-error", b"\x00" + error("28P01", "password authentication failed"))
    put("wire", "notice", b"\x00" + startup_ok()
        + msg(b"N", b"S" + cstr("NOTICE") + b"M" + cstr("hello") + b"\0") + query)


def vm_monitor_seeds():
    frames = [
        '{"min":1,"max":1}',
        '{"type":"UpscaleNotification","content":{"granted":{"cpu":1.5,"mem":4294967296}},"id":2}',
        '{"type":"DownscaleRequest","content":{"target":{"cpu":0.25,"mem":1024}},"id":4}',
        '{"type":"HealthCheck","content":{},"id":6}',
        '{"type":"InternalError","content":{"error":"x"},"id":8}',
        '{"type":"InvalidMessage","content":{"error":"y"},"id":9}',
        '{"type":"Nope","content":{},"id":12}',
        '{"type":"HealthCheck","id":-1}',
    ]
    for index, frame in enumerate(frames):
        prefix = b"\x00" if index == 0 else b"\x01"
        put("vm_monitor", f"frame-{index}", prefix + frame.encode())


LOG = """2026-11-24 22:00:00.123 UTC [1] LOG:  database system is ready to accept connections
2026-11-24 22:00:01.456 UTC [77] ERROR:  role "alice" already exists
2026-11-24 22:00:01.456 UTC [77] STATEMENT:  CREATE ROLE alice WITH LOGIN
\tENCRYPTED PASSWORD 'SCRAM-SHA-256$4096:c2FsdA==$c3RvcmVk:c2VydmVy';
2026-11-24 22:00:02.000 UTC [78] LOG:  connection authorized: user=cloud_admin password=md5aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa
\tDETAIL: näive ünïcode line
"""


def http_and_pgconf_seeds():
    # Byte strings for the structure-aware bodies: a few fixed patterns the fuzzer grows.
    for index, pattern in enumerate([b"\x00" * 64, b"\x01\x02\x03\x04" * 32, bytes(range(256)),
                                     b"\xff" * 128, b"\x02\x01" + b"a=1&b=2" * 8]):
        put("http", f"bytes-{index}", pattern)
        put("pgconf", f"bytes-{index}", pattern)
        put("logs", f"structured-{index}", b"\x01" + pattern)
    put("logs", "raw", b"\x00" + LOG.encode())


spec_seeds()
document_seeds()
tar_seeds()
wire_seeds()
vm_monitor_seeds()
http_and_pgconf_seeds()
print("seeds written under", CORPUS, file=sys.stderr)
