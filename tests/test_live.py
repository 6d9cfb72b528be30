"""End to end over real HTTP against a real `tiddly serve` (granian, several workers)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import requests
from serving import free_port, wait_healthy

CLIENTS, INSERTS_EACH = 8, 200


def test_serve_command_serves_demo_schema_from_a_fresh_directory(tmp_path):
    """`tiddly serve` with no options: SQLite file tiddly.db in the working directory, granian."""
    tiddly = shutil.which("tiddly") or os.path.join(os.path.dirname(sys.executable), "tiddly")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("TIDDLY_DATABASE_URL", "DATABASE_URL")}
    process = subprocess.Popen([tiddly, "serve", "--port", str(port)], cwd=tmp_path, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_healthy(base, process)
        health = requests.get(base + "/-/health")
        assert health.headers["Server"] == "granian"
        tables = {t["name"] for t in requests.get(base + "/-/tables").json()["data"]}
        assert {"user", "dual", "books", "stores", "items"} <= tables
        created = requests.post(base + "/books", json={"title": "Dune", "author": "Herbert"})
        assert created.status_code == 201
        fetched = requests.request("FETCH", base + "/books", json={"where": {"title": "Dune"}})
        assert [r["author"] for r in fetched.json()["data"]] == ["Herbert"]
        assert (tmp_path / "tiddly.db").exists()
    finally:
        process.terminate()
        output = process.communicate(timeout=15)[0]
    assert "(granian, 2 workers x 4 threads)" in output


def test_concurrent_inserts_over_http_lose_nothing(db_url, live_server_factory):
    server = live_server_factory(db_url, workers=3, threads=4)

    def client(number: int) -> list[int]:
        statuses = []
        with requests.Session() as session:
            for i in range(INSERTS_EACH):
                response = session.post(server.url + "/dual", json={"text": f"c{number}-{i}"})
                statuses.append(response.status_code)
        return statuses

    with ThreadPoolExecutor(CLIENTS) as pool:
        statuses = [s for result in pool.map(client, range(CLIENTS)) for s in result]

    assert statuses == [201] * (CLIENTS * INSERTS_EACH)
    counted = requests.get(server.url + "/dual", params={"count": "true", "limit": "1"}).json()
    assert counted["count"] == CLIENTS * INSERTS_EACH
    texts = requests.request("FETCH", server.url + "/dual",
                             json={"where": {"text": {"like": "c7-%"}}, "count": True, "limit": 0}).json()
    assert texts["count"] == INSERTS_EACH


