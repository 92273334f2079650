"""grpc method handlers taken apart and rebuilt: what the interceptors (decoding, rpcmetrics) share."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc


def behaviour_of(handler: grpc.RpcMethodHandler) -> Callable[..., Any] | None:
    """The servicer function behind `handler` (grpc sets exactly the one of its kind)."""
    if handler.request_streaming:
        return handler.stream_unary or handler.stream_stream  # type: ignore[no-any-return]
    return handler.unary_unary or handler.unary_stream  # type: ignore[no-any-return]


def rebuilt(handler: grpc.RpcMethodHandler, behaviour: Callable[..., Any],
            request_deserializer: Callable[[bytes], Any] | None = None) -> grpc.RpcMethodHandler:
    """A handler of `handler`'s kind running `behaviour` (and, if given, another request decoder)."""
    make = {
        (False, False): grpc.unary_unary_rpc_method_handler,
        (False, True): grpc.unary_stream_rpc_method_handler,
        (True, False): grpc.stream_unary_rpc_method_handler,
        (True, True): grpc.stream_stream_rpc_method_handler,
    }[(handler.request_streaming, handler.response_streaming)]
    decoder = request_deserializer if request_deserializer is not None else handler.request_deserializer
    return make(behaviour, decoder, handler.response_serializer)
