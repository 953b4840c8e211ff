"""polars-avro in a child process: Avro chunks in, Arrow record batches out as they are decoded.

polars-avro decodes about ten times faster than fastavro, but on a block whose bytes are corrupt it
can crash the whole interpreter (a segfault, not an exception). Run in a child, such a crash becomes
an error naming the file, and decoding runs on the second core while the parent writes to the warehouse.

Protocol, over the child's stdin/stdout: the parent sends `<8-byte length><Avro container bytes>`
(the file's header plus a run of whole blocks); the child answers with frames `<1-byte kind><8-byte
length><payload>`: the Arrow schema once, then each record batch as soon as it is decoded, then an
end frame, or an error frame (utf-8 text) if it cannot decode them.

Batches travel as Arrow IPC messages written straight to the pipe and read straight into Arrow's own
memory pool: no intermediate Python bytes, whose fresh pages cost more than the copy on a VM.
"""

from __future__ import annotations

import atexit
import io
import os
import struct
import subprocess
import sys
import threading
from typing import BinaryIO, Iterator

import pyarrow as pa

_LENGTH = struct.Struct("<Q")
_FRAME = struct.Struct("<cQ")
_SCHEMA, _BATCH, _END, _ERROR = b"S", b"B", b"E", b"X"
# Transparent huge pages for the child's allocators: on this project's VM, first touching fresh 4 KB pages
# costs ~2.5 s per GB (0.1 s with huge pages), and the reader alone went from 15.5 s to 11.8 s on a 2M-event day.
_CHILD_ENVIRONMENT = {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1", "MIMALLOC_ALLOW_LARGE_OS_PAGES": "1"}


class NativeDecoderFailed(Exception):
    """The child could not decode a chunk, or died while decoding it."""


class NativeDecoder:
    """One long-lived child process, started on first use and again after it dies."""

    def __init__(self, batch_rows: int):
        self.batch_rows = batch_rows
        self.process: subprocess.Popen | None = None
        self.lock = threading.Lock()

    def decode(self, container: bytes) -> Iterator[pa.RecordBatch]:
        """The chunk's record batches, yielded as the child decodes them; the child is ours until the end."""
        with self.lock:
            process = self._running()
            sender = threading.Thread(target=_send, args=(process.stdin, container), daemon=True)
            # Sending on a thread: the child starts answering before it has read the whole chunk.
            sender.start()
            finished = False
            try:
                schema = None
                while True:
                    kind, payload = _read_frame(process.stdout)
                    if kind == _SCHEMA:
                        schema = pa.ipc.read_schema(payload)
                    elif kind == _BATCH:
                        yield pa.ipc.read_record_batch(payload, schema)
                    elif kind == _END:
                        finished = True
                        return
                    else:
                        finished = True
                        raise NativeDecoderFailed(payload.to_pybytes().decode(errors="replace"))
            except (EOFError, OSError, ValueError):
                self._stop()
                raise NativeDecoderFailed(f"the decoder process died (exit code {process.wait()})") from None
            finally:
                if not finished:
                    # Abandoned mid-chunk (the load failed): the rest of the answer would be misread.
                    self._stop()
                sender.join()

    def start(self) -> None:
        """Start the child now, so its imports overlap with the caller's own set-up."""
        with self.lock:
            self._running()

    def _running(self) -> subprocess.Popen:
        if self.process is None or self.process.poll() is not None:
            self.process = subprocess.Popen([sys.executable, "-m", __name__, str(self.batch_rows)],
                                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                            env={**os.environ, **_CHILD_ENVIRONMENT})
            atexit.register(self._stop)
        return self.process

    def _stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None


def _send(pipe: BinaryIO, data: bytes) -> None:
    try:
        pipe.write(_LENGTH.pack(len(data)))
        pipe.write(data)
        pipe.flush()
    except (BrokenPipeError, OSError, ValueError):
        pass


def _read_frame(pipe: BinaryIO) -> tuple[bytes, pa.Buffer]:
    header = pipe.read(_FRAME.size)
    if len(header) != _FRAME.size:
        raise EOFError
    kind, size = _FRAME.unpack(header)
    payload = pa.allocate_buffer(size)
    view, filled = memoryview(payload), 0
    while filled < size:
        read = pipe.readinto(view[filled:])
        if not read:
            raise EOFError
        filled += read
    return kind, payload


def _read_exactly(pipe: BinaryIO, size: int) -> bytes:
    data = pipe.read(size)
    if len(data) != size:
        raise EOFError
    return data


def _write_frame(pipe: BinaryIO, kind: bytes, payload) -> None:
    pipe.write(_FRAME.pack(kind, len(payload)))
    pipe.write(payload)


def _without_dictionaries(batch: pa.RecordBatch) -> pa.RecordBatch:
    """Enums arrive dictionary-encoded; a lone IPC message cannot carry the dictionary, so send the values."""
    plain = pa.schema([field.with_type(_plain_type(field.type)) for field in batch.schema])
    return batch if plain == batch.schema else batch.cast(plain)


def _plain_type(arrow_type: pa.DataType) -> pa.DataType:
    if pa.types.is_dictionary(arrow_type):
        return _plain_type(arrow_type.value_type)
    if pa.types.is_struct(arrow_type):
        return pa.struct([field.with_type(_plain_type(field.type)) for field in arrow_type])
    if pa.types.is_list(arrow_type):
        return pa.list_(arrow_type.value_field.with_type(_plain_type(arrow_type.value_type)))
    if pa.types.is_large_list(arrow_type):
        return pa.large_list(arrow_type.value_field.with_type(_plain_type(arrow_type.value_type)))
    if pa.types.is_map(arrow_type):
        return pa.map_(arrow_type.key_field.with_type(_plain_type(arrow_type.key_type)),
                       arrow_type.item_field.with_type(_plain_type(arrow_type.item_type)))
    return arrow_type


def _serve(batch_rows: int) -> None:
    from polars_avro._avro_rs import AvroSource
    from polars_avro._source import seekable_factory

    requests, answers = sys.stdin.buffer, sys.stdout.buffer
    while True:
        try:
            container = _read_exactly(requests, _LENGTH.unpack(_read_exactly(requests, _LENGTH.size))[0])
        except EOFError:
            return
        try:
            schema_sent = False
            for native in AvroSource([seekable_factory(io.BytesIO(container))], False, False).batch_iter(
                    batch_rows, None):
                batch = _without_dictionaries(pa.record_batch(native))
                if not schema_sent:
                    _write_frame(answers, _SCHEMA, batch.schema.serialize())
                    schema_sent = True
                _write_frame(answers, _BATCH, batch.serialize())
            _write_frame(answers, _END, b"")
        except BaseException as exc:  # polars-avro reports bad input as a Rust panic
            if isinstance(exc, (KeyboardInterrupt, SystemExit, BrokenPipeError)):
                raise
            _write_frame(answers, _ERROR, f"{type(exc).__name__}: {exc}".encode())
        answers.flush()


if __name__ == "__main__":
    _serve(int(sys.argv[1]))
