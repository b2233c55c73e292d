"""Real local servers for tests: free ports, readiness polling, and an S3 API (moto's server).

Shared by every test that talks to a server process, so they all wait and clean up alike.
"""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

S3_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen | None = None, timeout: float = 90) -> bytes:
    """Poll ``url`` until it answers 200 and return the body; fail fast if ``proc`` exits."""
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{url}: the server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return response.read()
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer in {timeout:.0f}s")
        time.sleep(0.5)


def stop(proc: subprocess.Popen, timeout: float = 30) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextmanager
def s3_server(*buckets: str) -> Iterator[dict[str, str]]:
    """A moto S3 server on a free localhost port with ``buckets`` created.

    Yields the environment a client needs: credentials, region and the endpoint under the names
    boto3 (``AWS_ENDPOINT_URL``), MLflow (``MLFLOW_S3_ENDPOINT_URL``) and the project read.
    """
    import boto3
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    env = {**S3_CREDENTIALS, "AWS_ENDPOINT_URL": endpoint, "MLFLOW_S3_ENDPOINT_URL": endpoint}
    client = boto3.client(
        "s3", endpoint_url=endpoint, region_name=S3_CREDENTIALS["AWS_DEFAULT_REGION"],
        aws_access_key_id="testing", aws_secret_access_key="testing",
    )
    for bucket in buckets:
        client.create_bucket(Bucket=bucket)
    try:
        yield env
    finally:
        server.stop()
