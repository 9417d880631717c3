"""The gRPC reference: a no-op grpcio unary AffiliateUpdate on grpc.aio (decodes, answers).

Run as `python -m bench.noop_grpc PORT`; prints nothing, serves until terminated.
"""

from __future__ import annotations

import asyncio
import sys

import grpc

from discovery.proto import cluster_pb2 as pb

SERVICE = "sidero.discovery.server.Cluster"
_EMPTY = pb.AffiliateUpdateResponse().SerializeToString()


async def _update(raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
    pb.AffiliateUpdateRequest.FromString(raw)  # the same decoding work as the real handler
    return _EMPTY


async def serve(port: int) -> None:
    server = grpc.aio.server()
    handlers = {"AffiliateUpdate": grpc.unary_unary_rpc_method_handler(_update)}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1])))
