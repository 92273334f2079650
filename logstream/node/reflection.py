"""Server reflection as both `grpc.reflection.v1alpha` and `grpc.reflection.v1` (newer grpcurl, Postman).

grpcio-reflection (1.85) ships only v1alpha. v1's reflection.proto is v1alpha's with the package
renamed: the same messages, fields, numbers and types, so the same bytes on the wire. Rather than
vendor and generate a second copy of that file, v1's descriptor is derived from v1alpha's at
import (the package renamed in the file and in every type reference), added to the default
descriptor pool so that v1 can itself be listed and described, and the v1 service is served by
the v1alpha servicer's handler with v1alpha's (wire-identical) message classes.
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool  # type: ignore[import-untyped]
from grpc_reflection.v1alpha import reflection
from grpc_reflection.v1alpha import reflection_pb2 as alpha_pb2
from grpc_reflection.v1alpha._async import ReflectionServicer

ALPHA_PACKAGE = "grpc.reflection.v1alpha"
V1_PACKAGE = "grpc.reflection.v1"
V1_FILE = "grpc/reflection/v1/reflection.proto"
ALPHA_SERVICE = reflection.SERVICE_NAME
V1_SERVICE = f"{V1_PACKAGE}.ServerReflection"
SERVICE_NAMES = (ALPHA_SERVICE, V1_SERVICE)


def v1_file_proto() -> descriptor_pb2.FileDescriptorProto:
    """v1alpha's reflection.proto renamed to v1 (pure: a new message each call)."""
    proto = descriptor_pb2.FileDescriptorProto()
    alpha_pb2.DESCRIPTOR.CopyToProto(proto)
    proto.name = V1_FILE
    proto.package = V1_PACKAGE
    proto.ClearField("options")  # v1alpha's java/objc options name v1alpha packages
    old, new = f".{ALPHA_PACKAGE}.", f".{V1_PACKAGE}."
    for message in proto.message_type:
        for field in message.field:
            if field.type_name.startswith(old):
                field.type_name = new + field.type_name[len(old):]
    for service in proto.service:
        for method in service.method:
            method.input_type = new + method.input_type[len(old):]
            method.output_type = new + method.output_type[len(old):]
    return proto


def _ensure_v1_descriptor(pool: descriptor_pool.DescriptorPool) -> None:
    try:
        pool.FindFileByName(V1_FILE)
    except KeyError:
        pool.AddSerializedFile(v1_file_proto().SerializeToString())


def enable(server: grpc.aio.Server, services: Sequence[str]) -> None:
    """Serve reflection under both names on `server`, listing `services` and both reflection services."""
    pool = descriptor_pool.Default()
    _ensure_v1_descriptor(pool)
    servicer = ReflectionServicer((*services, *SERVICE_NAMES), pool=pool)
    for name in SERVICE_NAMES:
        handler = grpc.stream_stream_rpc_method_handler(
            servicer.ServerReflectionInfo,
            request_deserializer=alpha_pb2.ServerReflectionRequest.FromString,
            response_serializer=alpha_pb2.ServerReflectionResponse.SerializeToString,
        )
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(name, {"ServerReflectionInfo": handler}),))
