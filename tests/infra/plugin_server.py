"""A Pulumi resource provider plugin started the way the engine starts one: it prints its port on stdout, and
the engine talks to it over gRPC on 127.0.0.1 (the built Kubernetes provider, our dynamic provider server)."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from pulumi.runtime.proto import provider_pb2_grpc


@contextlib.contextmanager
def serve(cmd: list[str], stderr_file: Path, **popen) -> Iterator[provider_pb2_grpc.ResourceProviderStub]:
    """A stub for the plugin `cmd` starts; the plugin is stopped when the block exits."""
    with stderr_file.open("w") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True, **popen)
    try:
        port = proc.stdout.readline().strip()
        if not port.isdigit():
            pytest.fail(f"{' '.join(cmd)} did not print its port: {port!r} {stderr_file.read_text()[-2000:]}")
        # A schema runs to megabytes: no cap on what the channel receives.
        channel = grpc.insecure_channel(
            f"127.0.0.1:{port}", options=[("grpc.max_receive_message_length", -1)]
        )
        grpc.channel_ready_future(channel).result(timeout=30)
        yield provider_pb2_grpc.ResourceProviderStub(channel)
        channel.close()
    finally:
        proc.terminate()
        proc.wait(10)
        proc.stdout.close()
