"""polars-avro in a child process: Avro chunks in, Arrow IPC out.

polars-avro decodes about ten times faster than fastavro, but on a block whose bytes are corrupt it
can crash the whole interpreter (a segfault, not an exception). Run in a child, such a crash becomes
an error naming the file, and decoding runs on the second core while the parent writes to the warehouse.

Protocol, over the child's stdin/stdout: the parent sends `<8-byte length><Avro container bytes>`
(the file's header plus a run of whole blocks); the child answers `<8-byte length><Arrow IPC stream>`
holding those rows, or a zero length followed by `<8-byte length><utf-8 error>` if it cannot decode them.
"""

from __future__ import annotations

import atexit
import io
import struct
import subprocess
import sys
import threading
from typing import BinaryIO

import pyarrow as pa

_LENGTH = struct.Struct("<Q")


class NativeDecoderFailed(Exception):
    """The child could not decode a chunk, or died while decoding it."""


class NativeDecoder:
    """One long-lived child process, started on first use and again after it dies."""

    def __init__(self, batch_rows: int):
        self.batch_rows = batch_rows
        self.process: subprocess.Popen | None = None
        self.lock = threading.Lock()

    def decode(self, container: bytes) -> pa.Table:
        with self.lock:
            process = self._running()
            sender = threading.Thread(target=_send, args=(process.stdin, container), daemon=True)
            # Sending on a thread: the child may start answering before it has read the whole chunk.
            sender.start()
            try:
                size = _read_length(process.stdout)
                if size == 0:
                    message = process.stdout.read(_read_length(process.stdout)).decode(errors="replace")
                    raise NativeDecoderFailed(message)
                payload = _read_exactly(process.stdout, size)
            except (EOFError, OSError):
                self._stop()
                raise NativeDecoderFailed(f"the decoder process died (exit code {process.wait()})") from None
            finally:
                sender.join()
        return pa.ipc.open_stream(payload).read_all()

    def _running(self) -> subprocess.Popen:
        if self.process is None or self.process.poll() is not None:
            self.process = subprocess.Popen([sys.executable, "-m", __name__, str(self.batch_rows)],
                                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            atexit.register(self._stop)
        return self.process

    def _stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.stdin.close()
            self.process.wait()
        self.process = None


def _send(pipe: BinaryIO, data: bytes) -> None:
    try:
        pipe.write(_LENGTH.pack(len(data)))
        pipe.write(data)
        pipe.flush()
    except (BrokenPipeError, OSError):
        pass


def _read_length(pipe: BinaryIO) -> int:
    return _LENGTH.unpack(_read_exactly(pipe, _LENGTH.size))[0]


def _read_exactly(pipe: BinaryIO, size: int) -> bytes:
    data = pipe.read(size)
    if len(data) != size:
        raise EOFError
    return data


def _serve(batch_rows: int) -> None:
    from polars_avro._avro_rs import AvroSource
    from polars_avro._source import seekable_factory

    requests, answers = sys.stdin.buffer, sys.stdout.buffer
    while True:
        try:
            container = _read_exactly(requests, _read_length(requests))
        except EOFError:
            return
        sink = pa.BufferOutputStream()
        try:
            writer = None
            for native in AvroSource([seekable_factory(io.BytesIO(container))], False, False).batch_iter(
                    batch_rows, None):
                batch = pa.record_batch(native)
                writer = writer or pa.ipc.new_stream(sink, batch.schema)
                writer.write_batch(batch)
            (writer or pa.ipc.new_stream(sink, pa.schema([]))).close()
            payload = sink.getvalue().to_pybytes()
            answers.write(_LENGTH.pack(len(payload)) + payload)
        except BaseException as exc:  # polars-avro reports bad input as a Rust panic
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            message = f"{type(exc).__name__}: {exc}".encode()
            answers.write(_LENGTH.pack(0) + _LENGTH.pack(len(message)) + message)
        answers.flush()


if __name__ == "__main__":
    _serve(int(sys.argv[1]))
