"""Every RPC a node serves, counted by method and final status code (a grpc.aio server interceptor).

Counts live in a plain dict updated on the event loop at each call's end (a done callback, so a
call's cost is one callback); `metrics.NodeCollector` reads them at scrape time as
`logstream_<role>_grpc_requests_total{node,rpc,code}`.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from logstream.node.handlers import behaviour_of, rebuilt


def code_name(code: grpc.StatusCode | None, cancelled: bool, raised: bool) -> str:
    """The status a call ended with, as its grpc name (OK, INVALID_ARGUMENT, ...). Pure.

    grpc leaves the context's code unset when a behaviour returns normally (OK) or raises
    something other than an abort (then the client sees UNKNOWN)."""
    if code is not None:
        return str(code.name)
    if cancelled:
        return "CANCELLED"
    return "UNKNOWN" if raised else "OK"


class RpcCounts:
    """Calls ended, by (rpc, code); `rpc` is the full method without its slash (`api.LogStreamer/Log`)."""

    def __init__(self) -> None:
        self.ended: dict[tuple[str, str], int] = {}

    def note(self, rpc: str, code: str) -> None:
        self.ended[(rpc, code)] = self.ended.get((rpc, code), 0) + 1

    def snapshot(self) -> dict[tuple[str, str], int]:
        """A copy, safe to take from a scraping thread (dict.copy holds the GIL throughout)."""
        return self.ended.copy()


class RpcMetricsInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Wraps each method handler once (cached by method) so that its call's end is counted."""

    def __init__(self, counts: RpcCounts) -> None:
        self._counts = counts
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    async def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler | None]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(handler_call_details)
        if handler is None:  # an unknown method: grpc answers UNIMPLEMENTED itself
            return None
        method = str(handler_call_details.method)
        cached = self._wrapped.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = _counted(method.lstrip("/"), handler, self._counts)
        self._wrapped[method] = (handler, wrapped)
        return wrapped


def _counted(rpc: str, handler: grpc.RpcMethodHandler, counts: RpcCounts) -> grpc.RpcMethodHandler:
    behaviour = behaviour_of(handler)
    if behaviour is None:  # pragma: no cover - grpc always sets the behaviour of the kind it names
        return handler

    def watch(context: grpc.aio.ServicerContext) -> list[bool]:
        raised = [False]

        def done(ctx: grpc.aio.ServicerContext) -> None:
            counts.note(rpc, code_name(ctx.code(), ctx.cancelled(), raised[0]))

        context.add_done_callback(done)
        return raised

    wrapped: Callable[..., Any]
    if inspect.isasyncgenfunction(behaviour):
        async def generator(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            raised = watch(context)
            try:
                async for reply in behaviour(request, context):
                    yield reply
            except BaseException:
                raised[0] = True
                raise

        wrapped = generator
    elif inspect.iscoroutinefunction(behaviour):
        async def coroutine(request: Any, context: grpc.aio.ServicerContext) -> Any:
            raised = watch(context)
            try:
                return await behaviour(request, context)
            except BaseException:
                raised[0] = True
                raise

        wrapped = coroutine
    else:  # pragma: no cover - every servicer of ours is async
        return handler
    return rebuilt(handler, wrapped)
