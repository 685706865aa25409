#!/usr/bin/env python3
"""ValidateToken and GetProfile "me" under h2load, on SQLite and PostgreSQL
side by side (BENCHMARKS.md, "The embedded default as fast as PostgreSQL").

Starts `identity serve --dev` twice (a fresh SQLite file; a fresh loopback
PostgreSQL database), registers one account on each, then runs ROUNDS
alternating rounds of closed-loop h2load windows (C connections x M streams)
per call and backend, and prints each window, the medians and the ratios
SQLite / PostgreSQL. The request body is the call's gRPC frame, built here
as `services/bench/src/h2load.rs` builds it; one call of each is checked
with grpcio first, since h2load counts any HTTP 200 whatever grpc-status.

Usage: .venv/bin/python scripts/h2load-backends.py [--identity target/release/identity]
       [--rounds 3] [--duration 10] [--warmup 2] [-c 4] [-m 64] [--server-env K=V ...]
"""

import argparse
import json
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

import grpc

PG_ADMIN = "postgres://postgres@127.0.0.1:5432/postgres"


def field(number, payload: bytes) -> bytes:
    """A length-delimited protobuf field (strings, messages)."""
    key = bytes([(number << 3) | 2])
    length, n = b"", len(payload)
    while True:
        byte = n & 0x7F
        n >>= 7
        length += bytes([byte | (0x80 if n else 0)])
        if not n:
            return key + length + payload


def fields(message: bytes):
    """The length-delimited fields of a message (others skipped)."""
    i = 0
    while i < len(message):
        key, i = varint(message, i)
        wire = key & 7
        if wire == 2:
            n, i = varint(message, i)
            yield key >> 3, message[i : i + n]
            i += n
        elif wire == 0:
            _, i = varint(message, i)
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        else:
            raise ValueError(f"wire type {wire}")


def varint(data, i):
    shift = value = 0
    while True:
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, i


def frame(message: bytes) -> bytes:
    return b"\0" + len(message).to_bytes(4, "big") + message


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(binary, database_url, data_dir, extra):
    port = free_port()
    env = {
        "PATH": "/usr/bin:/bin",
        "IDENTITY_DATABASE_URL": database_url,
        "IDENTITY_LISTEN_ADDR": f"127.0.0.1:{port}",
        "IDENTITY_DATA_DIR": data_dir,
        "IDENTITY_LOG_FORMAT": "json",
        "IDENTITY_RATE_LIMIT_ENABLED": "false",
        "IDENTITY_BCRYPT_COST": "4",
    }
    env.update(extra)
    proc = subprocess.Popen(
        [binary, "serve", "--dev"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    grpc.channel_ready_future(channel).result(timeout=60)
    return proc, port, channel


def register(channel) -> str:
    call = channel.unary_unary("/identity.v1.AuthService/Register")
    email = f"bench-{uuid.uuid4().hex[:12]}@example.com"
    answer = call(field(1, email.encode()) + field(2, b"correct horse battery staple"), timeout=30)
    tokens = dict(fields(answer))[2]
    return dict(fields(tokens))[1].decode()


def h2load(port, path, body, token, args) -> float:
    with tempfile.NamedTemporaryFile(suffix=".bin") as f:
        f.write(body)
        f.flush()
        out = subprocess.run(
            ["h2load", "-c", str(args.c), "-m", str(args.m),
             f"--warm-up-time={args.warmup}s", f"--duration={args.duration}s",
             "-d", f.name, "-H", "content-type: application/grpc", "-H", "te: trailers",
             "-H", f"authorization: Bearer {token}", f"http://127.0.0.1:{port}{path}"],
            capture_output=True, text=True, check=True,
        ).stdout
    ok = re.search(r"status codes: (\d+) 2xx", out)
    rps = re.search(r"finished in [^,]+, ([\d.]+) req/s", out)
    failed = re.search(r"requests: .* (\d+) failed", out)
    if not (ok and rps) or (failed and int(failed.group(1))):
        raise SystemExit(f"h2load: {out}")
    return float(rps.group(1))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--identity", default="target/release/identity")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--duration", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("-c", type=int, default=4)
    p.add_argument("-m", type=int, default=64)
    p.add_argument("--server-env", action="append", default=[])
    args = p.parse_args()
    extra = dict(kv.split("=", 1) for kv in args.server_env)

    sqlite_dir = tempfile.mkdtemp(prefix="identity-h2load-sqlite-")
    pg_dir = tempfile.mkdtemp(prefix="identity-h2load-pg-")
    db = f"identity_h2load_{uuid.uuid4().hex}"
    subprocess.run(["psql", PG_ADMIN, "-qc", f"CREATE DATABASE {db}"], check=True)
    servers = {}
    try:
        servers["sqlite"] = start(args.identity, f"sqlite://{sqlite_dir}/identity.db", sqlite_dir, extra)
        servers["postgres"] = start(
            args.identity, f"postgres://postgres@127.0.0.1:5432/{db}", pg_dir, extra
        )
        calls = {}
        for backend, (_, port, channel) in servers.items():
            token = register(channel)
            validate = field(1, token.encode())
            me = field(1, b"me")
            answer = channel.unary_unary("/identity.v1.AuthService/ValidateToken")(validate, timeout=10)
            assert answer[:2] == b"\x08\x01", "the token validates (active = true)"
            channel.unary_unary("/identity.v1.ProfileService/GetProfile")(
                me, metadata=[("authorization", f"Bearer {token}")], timeout=10
            )
            calls[backend] = (port, token, {
                "validate": ("/identity.v1.AuthService/ValidateToken", frame(validate)),
                "get_profile": ("/identity.v1.ProfileService/GetProfile", frame(me)),
            })
        # Memory answers once the listener (PostgreSQL) or poller (SQLite)
        # has confirmed; give both a moment.
        time.sleep(2)
        figures = {(b, c): [] for b in servers for c in ("validate", "get_profile")}
        for r in range(args.rounds):
            order = list(servers) if r % 2 == 0 else list(reversed(list(servers)))
            for call in ("validate", "get_profile"):
                for backend in order:
                    port, token, paths = calls[backend]
                    path, body = paths[call]
                    rps = h2load(port, path, body, token, args)
                    figures[(backend, call)].append(rps)
                    print(f"round {r + 1} {call:11} {backend:8} {rps:10.1f} req/s", flush=True)
        summary = {}
        for call in ("validate", "get_profile"):
            s = statistics.median(figures[("sqlite", call)])
            pg = statistics.median(figures[("postgres", call)])
            ratios = [a / b for a, b in zip(figures[("sqlite", call)], figures[("postgres", call)])]
            summary[call] = {
                "sqlite": figures[("sqlite", call)], "postgres": figures[("postgres", call)],
                "median_sqlite": s, "median_postgres": pg,
                "ratio_of_medians": s / pg, "median_round_ratio": statistics.median(ratios),
            }
            print(f"{call}: median SQLite {s:.0f}, PostgreSQL {pg:.0f} req/s; "
                  f"SQLite / PostgreSQL {s / pg:.3f} (median of round ratios {statistics.median(ratios):.3f})")
        print(json.dumps(summary))
    finally:
        for proc, _, _ in servers.values():
            proc.terminate()
            proc.wait(timeout=30)
        subprocess.run(["psql", PG_ADMIN, "-qc", f"DROP DATABASE IF EXISTS {db} WITH (FORCE)"])


if __name__ == "__main__":
    sys.exit(main())
