from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class LogRequest(_message.Message):
    __slots__ = ("filename", "path", "line")
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    LINE_FIELD_NUMBER: _ClassVar[int]
    filename: str
    path: str
    line: str
    def __init__(self, filename: _Optional[str] = ..., path: _Optional[str] = ..., line: _Optional[str] = ...) -> None: ...

class LogResponse(_message.Message):
    __slots__ = ("res",)
    RES_FIELD_NUMBER: _ClassVar[int]
    res: str
    def __init__(self, res: _Optional[str] = ...) -> None: ...

class LogChunk(_message.Message):
    __slots__ = ("path", "filename", "data")
    PATH_FIELD_NUMBER: _ClassVar[int]
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    path: str
    filename: str
    data: bytes
    def __init__(self, path: _Optional[str] = ..., filename: _Optional[str] = ..., data: _Optional[bytes] = ...) -> None: ...

class LogBatchRequest(_message.Message):
    __slots__ = ("chunks",)
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    chunks: _containers.RepeatedCompositeFieldContainer[LogChunk]
    def __init__(self, chunks: _Optional[_Iterable[_Union[LogChunk, _Mapping]]] = ...) -> None: ...

class LogBatchResponse(_message.Message):
    __slots__ = ("lines", "bytes")
    LINES_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    lines: int
    bytes: int
    def __init__(self, lines: _Optional[int] = ..., bytes: _Optional[int] = ...) -> None: ...

class PingRequest(_message.Message):
    __slots__ = ("a", "b", "streamerId", "lease_ms", "mediator_id", "interval_ms", "seq", "acked_seq")
    A_FIELD_NUMBER: _ClassVar[int]
    B_FIELD_NUMBER: _ClassVar[int]
    STREAMERID_FIELD_NUMBER: _ClassVar[int]
    LEASE_MS_FIELD_NUMBER: _ClassVar[int]
    MEDIATOR_ID_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_MS_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    ACKED_SEQ_FIELD_NUMBER: _ClassVar[int]
    a: int
    b: int
    streamerId: str
    lease_ms: int
    mediator_id: str
    interval_ms: int
    seq: int
    acked_seq: int
    def __init__(self, a: _Optional[int] = ..., b: _Optional[int] = ..., streamerId: _Optional[str] = ..., lease_ms: _Optional[int] = ..., mediator_id: _Optional[str] = ..., interval_ms: _Optional[int] = ..., seq: _Optional[int] = ..., acked_seq: _Optional[int] = ...) -> None: ...

class PingResponse(_message.Message):
    __slots__ = ("res", "streamer_id", "stats", "held", "held_lease_ms", "open")
    RES_FIELD_NUMBER: _ClassVar[int]
    STREAMER_ID_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    HELD_FIELD_NUMBER: _ClassVar[int]
    HELD_LEASE_MS_FIELD_NUMBER: _ClassVar[int]
    OPEN_FIELD_NUMBER: _ClassVar[int]
    res: int
    streamer_id: str
    stats: StreamerStats
    held: _containers.RepeatedCompositeFieldContainer[FileKey]
    held_lease_ms: int
    open: OpenFiles
    def __init__(self, res: _Optional[int] = ..., streamer_id: _Optional[str] = ..., stats: _Optional[_Union[StreamerStats, _Mapping]] = ..., held: _Optional[_Iterable[_Union[FileKey, _Mapping]]] = ..., held_lease_ms: _Optional[int] = ..., open: _Optional[_Union[OpenFiles, _Mapping]] = ...) -> None: ...

class OpenFiles(_message.Message):
    __slots__ = ("count", "oldest_write_age_ms")
    COUNT_FIELD_NUMBER: _ClassVar[int]
    OLDEST_WRITE_AGE_MS_FIELD_NUMBER: _ClassVar[int]
    count: int
    oldest_write_age_ms: int
    def __init__(self, count: _Optional[int] = ..., oldest_write_age_ms: _Optional[int] = ...) -> None: ...

class RegisterRequest(_message.Message):
    __slots__ = ("id", "addr")
    ID_FIELD_NUMBER: _ClassVar[int]
    ADDR_FIELD_NUMBER: _ClassVar[int]
    id: str
    addr: str
    def __init__(self, id: _Optional[str] = ..., addr: _Optional[str] = ...) -> None: ...

class RegisterResponse(_message.Message):
    __slots__ = ("res",)
    RES_FIELD_NUMBER: _ClassVar[int]
    res: str
    def __init__(self, res: _Optional[str] = ...) -> None: ...

class LeaveRequest(_message.Message):
    __slots__ = ("id", "addr", "files_closed")
    ID_FIELD_NUMBER: _ClassVar[int]
    ADDR_FIELD_NUMBER: _ClassVar[int]
    FILES_CLOSED_FIELD_NUMBER: _ClassVar[int]
    id: str
    addr: str
    files_closed: bool
    def __init__(self, id: _Optional[str] = ..., addr: _Optional[str] = ..., files_closed: _Optional[bool] = ...) -> None: ...

class LeaveResponse(_message.Message):
    __slots__ = ("keys",)
    KEYS_FIELD_NUMBER: _ClassVar[int]
    keys: int
    def __init__(self, keys: _Optional[int] = ...) -> None: ...

class FileKey(_message.Message):
    __slots__ = ("path", "filename")
    PATH_FIELD_NUMBER: _ClassVar[int]
    FILENAME_FIELD_NUMBER: _ClassVar[int]
    path: str
    filename: str
    def __init__(self, path: _Optional[str] = ..., filename: _Optional[str] = ...) -> None: ...

class ReleaseRequest(_message.Message):
    __slots__ = ("keys", "mediator_id")
    KEYS_FIELD_NUMBER: _ClassVar[int]
    MEDIATOR_ID_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.RepeatedCompositeFieldContainer[FileKey]
    mediator_id: str
    def __init__(self, keys: _Optional[_Iterable[_Union[FileKey, _Mapping]]] = ..., mediator_id: _Optional[str] = ...) -> None: ...

class ReleaseResponse(_message.Message):
    __slots__ = ("released",)
    RELEASED_FIELD_NUMBER: _ClassVar[int]
    released: int
    def __init__(self, released: _Optional[int] = ...) -> None: ...

class StatsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StreamerStats(_message.Message):
    __slots__ = ("id", "lines", "bytes", "open_files", "rotations", "files", "mode")
    ID_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    OPEN_FILES_FIELD_NUMBER: _ClassVar[int]
    ROTATIONS_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    id: str
    lines: int
    bytes: int
    open_files: int
    rotations: int
    files: _containers.RepeatedCompositeFieldContainer[FileKey]
    mode: str
    def __init__(self, id: _Optional[str] = ..., lines: _Optional[int] = ..., bytes: _Optional[int] = ..., open_files: _Optional[int] = ..., rotations: _Optional[int] = ..., files: _Optional[_Iterable[_Union[FileKey, _Mapping]]] = ..., mode: _Optional[str] = ...) -> None: ...

class StatusRequest(_message.Message):
    __slots__ = ("cached",)
    CACHED_FIELD_NUMBER: _ClassVar[int]
    cached: bool
    def __init__(self, cached: _Optional[bool] = ...) -> None: ...

class StreamerStatus(_message.Message):
    __slots__ = ("id", "addr", "alive", "files", "lines", "bytes", "last_seen_s")
    ID_FIELD_NUMBER: _ClassVar[int]
    ADDR_FIELD_NUMBER: _ClassVar[int]
    ALIVE_FIELD_NUMBER: _ClassVar[int]
    FILES_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    BYTES_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_S_FIELD_NUMBER: _ClassVar[int]
    id: str
    addr: str
    alive: bool
    files: _containers.RepeatedCompositeFieldContainer[FileKey]
    lines: int
    bytes: int
    last_seen_s: float
    def __init__(self, id: _Optional[str] = ..., addr: _Optional[str] = ..., alive: _Optional[bool] = ..., files: _Optional[_Iterable[_Union[FileKey, _Mapping]]] = ..., lines: _Optional[int] = ..., bytes: _Optional[int] = ..., last_seen_s: _Optional[float] = ...) -> None: ...

class StatusResponse(_message.Message):
    __slots__ = ("mediator_id", "streamers", "counters")
    class CountersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    MEDIATOR_ID_FIELD_NUMBER: _ClassVar[int]
    STREAMERS_FIELD_NUMBER: _ClassVar[int]
    COUNTERS_FIELD_NUMBER: _ClassVar[int]
    mediator_id: str
    streamers: _containers.RepeatedCompositeFieldContainer[StreamerStatus]
    counters: _containers.ScalarMap[str, int]
    def __init__(self, mediator_id: _Optional[str] = ..., streamers: _Optional[_Iterable[_Union[StreamerStatus, _Mapping]]] = ..., counters: _Optional[_Mapping[str, int]] = ...) -> None: ...
