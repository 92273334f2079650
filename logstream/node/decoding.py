"""Undecodable request bodies: INVALID_ARGUMENT and one rate-limited line, not an ERROR traceback
per request (grpc's generated handlers decode before the servicer runs, and a failing decoder
ends the call with UNKNOWN and a logged traceback).

`checked_server(server)` is handed to a role's `add_*Servicer_to_server` calls in place of the
server: every method handler they register gets a decoder that cannot raise, and a behaviour that
refuses what did not decode.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

import grpc

from logstream.node.handlers import behaviour_of, rebuilt
from logstream.node.ratelog import RateLimitedLog

logger = logging.getLogger(__name__)

_refusals = RateLimitedLog(logger, "refusing undecodable requests")


class Undecodable:
    """What the decoder returns for bytes that are not the method's request message."""

    __slots__ = ("error",)

    def __init__(self, error: Exception) -> None:
        self.error = error


def safe_decoder(decode: Callable[[bytes], Any] | None) -> Callable[[bytes], Any]:
    def decoder(data: bytes) -> Any:
        if decode is None:
            return data
        try:
            return decode(data)
        except Exception as exc:  # any decoder failure is the caller's bad bytes
            return Undecodable(exc)

    return decoder


async def _refuse(method: str, bad: Undecodable, context: grpc.aio.ServicerContext) -> None:
    _refusals.note(method, type(bad.error).__name__)
    await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                        f"request body is not a valid {method} request (undecodable protobuf)")


def _checked(method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    """`handler` with a decoder that cannot raise and a behaviour that refuses what did not decode.

    grpc tells how a behaviour answers by its function (a coroutine function writes through
    `context.write` or returns, an async generator function yields), so each wrapper is of the kind
    it wraps; a synchronous behaviour (none of ours) is left as it is."""
    behaviour = behaviour_of(handler)
    if behaviour is None:  # pragma: no cover - grpc always sets the behaviour of the kind it names
        return handler
    decoder = safe_decoder(handler.request_deserializer)
    streaming_in = handler.request_streaming

    async def requests(iterator: AsyncIterator[Any], context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        async for request in iterator:
            if isinstance(request, Undecodable):
                await _refuse(method, request, context)
            yield request

    async def admitted(request: Any, context: grpc.aio.ServicerContext) -> Any:
        """The request (or request iterator) the behaviour gets; a single undecodable one is refused."""
        if streaming_in:
            return requests(request, context)
        if isinstance(request, Undecodable):
            await _refuse(method, request, context)
        return request

    wrapped: Callable[..., Any]
    if inspect.isasyncgenfunction(behaviour):
        async def generator(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            async for reply in behaviour(await admitted(request, context), context):
                yield reply

        wrapped = generator
    elif inspect.iscoroutinefunction(behaviour):
        async def coroutine(request: Any, context: grpc.aio.ServicerContext) -> Any:
            return await behaviour(await admitted(request, context), context)

        wrapped = coroutine
    else:
        return handler
    return rebuilt(handler, wrapped, decoder)


class _CheckedGeneric(grpc.GenericRpcHandler):  # type: ignore[misc]
    def __init__(self, inner: grpc.GenericRpcHandler) -> None:
        self._inner = inner

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        handler = self._inner.service(handler_call_details)
        if handler is None:
            return None
        method = str(getattr(handler_call_details, "method", "") or "").rsplit("/", 1)[-1]
        return _checked(method, handler)


class CheckedServer:
    """A grpc.aio.Server as the generated `add_*_to_server` functions see it: handlers they add
    are wrapped (see module docstring); everything else goes to the real server."""

    def __init__(self, server: grpc.aio.Server) -> None:
        self._server = server

    def add_generic_rpc_handlers(self, handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        self._server.add_generic_rpc_handlers(tuple(_CheckedGeneric(handler) for handler in handlers))

    def add_registered_method_handlers(self, service: str, handlers: Mapping[str, grpc.RpcMethodHandler]) -> None:
        checked = {name: _checked(name, handler) for name, handler in handlers.items()}
        self._server.add_registered_method_handlers(service, checked)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._server, name)
