"""An independent SDS client for meshid's SDS server (run by tests/sds_python.rs).

Usage: sds_client.py <unix socket> <spiffe id>

Speaks envoy.service.secret.v3.SecretDiscoveryService with PyPI envoy-data-plane's
betterproto2 stubs over grpclib. Prints `ok <check>` per passed check and `want-rotation`
when it needs the test to rotate the SVID; exits non-zero at the first failure.
"""

import asyncio
import base64
import re
import sys

from grpclib.client import Channel
from grpclib.const import Status as GrpcStatus
from grpclib.exceptions import GRPCError
from envoy_data_plane.envoy.extensions.transport_sockets.tls.v3 import Secret
from envoy_data_plane.envoy.service.discovery.v3 import DiscoveryRequest
from envoy_data_plane.envoy.service.secret.v3 import SecretDiscoveryServiceAsyncStub
from envoy_data_plane.google.rpc import Status

TYPE_URL = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
QUIET = 1.5  # how long "no push" is watched for
WAIT = 5.0  # how long an expected push may take


class Failed(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failed(what)


def secrets(response):
    """The response's secrets, by name, in order."""
    check(response.type_url == TYPE_URL, f"response type_url {response.type_url!r}")
    out = {}
    for any_ in response.resources:
        check(any_.type_url == TYPE_URL, f"resource type_url {any_.type_url!r}")
        secret = Secret.parse(any_.value)
        out[secret.name] = secret
    return out


def pem_ders(data):
    text = data.decode()
    blocks = re.findall(r"-----BEGIN CERTIFICATE-----\n(.*?)-----END CERTIFICATE-----", text, re.S)
    return [base64.b64decode("".join(b.split())) for b in blocks]


def check_cert(secret, spiffe_id):
    tls = secret.tls_certificate
    check(tls is not None and secret.validation_context is None, f"{secret.name}: not a tls_certificate")
    ders = pem_ders(tls.certificate_chain.inline_bytes or b"")
    check(ders, f"{secret.name}: no PEM certificate in certificate_chain")
    # The URI SAN is an IA5String: the ID appears verbatim in the leaf's DER.
    check(spiffe_id.encode() in ders[0], f"{secret.name}: leaf does not name {spiffe_id}")
    key = tls.private_key.inline_bytes or b""
    check(b"-----BEGIN" in key and b"PRIVATE KEY-----" in key, f"{secret.name}: no PEM private key")
    return ders[0]


def check_roots(secret, count=1):
    vc = secret.validation_context
    check(vc is not None and secret.tls_certificate is None, f"{secret.name}: not a validation_context")
    ders = pem_ders(vc.trusted_ca.inline_bytes or b"")
    check(len(ders) == count, f"{secret.name}: {len(ders)} trusted CAs, want {count}")


class Stream:
    """One StreamSecrets call: requests are queued, responses pumped into an inbox."""

    def __init__(self, stub):
        self.out, self.inbox = asyncio.Queue(), asyncio.Queue()
        self.task = asyncio.create_task(self._pump(stub))

    async def _requests(self):
        while (request := await self.out.get()) is not None:
            yield request

    async def _pump(self, stub):
        try:
            async for response in stub.stream_secrets(self._requests()):
                await self.inbox.put(response)
        except Exception as e:  # surfaced by recv()
            await self.inbox.put(e)

    def send(self, names, version="", nonce="", nack=None):
        error = Status(code=3, message=nack) if nack else None
        self.out.put_nowait(DiscoveryRequest(
            version_info=version, resource_names=list(names), type_url=TYPE_URL,
            response_nonce=nonce, error_detail=error))

    async def recv(self, what):
        try:
            response = await asyncio.wait_for(self.inbox.get(), WAIT)
        except TimeoutError:
            raise Failed(f"{what}: no push within {WAIT}s") from None
        check(not isinstance(response, Exception), f"{what}: stream failed: {response!r}")
        return response

    async def quiet(self, what):
        try:
            response = await asyncio.wait_for(self.inbox.get(), QUIET)
        except TimeoutError:
            return
        raise Failed(f"{what}: unexpected push version {response.version_info} nonce {response.nonce}")

    async def close(self):
        self.out.put_nowait(None)
        await asyncio.wait_for(self.task, WAIT)


def ok(what):
    print(f"ok {what}", flush=True)


async def rotation(stream, last, what):
    print("want-rotation", flush=True)
    response = await stream.recv(what)
    check(int(response.version_info) > int(last.version_info),
          f"{what}: version {response.version_info} after {last.version_info}")
    check(response.nonce != last.nonce, f"{what}: nonce {response.nonce} reused")
    return response


async def run(socket, spiffe_id):
    channel = Channel(path=socket)
    stub = SecretDiscoveryServiceAsyncStub(channel)
    try:
        # 1. FetchSecrets: the names answered in order.
        names = ["default", "ROOTCA", spiffe_id]
        fetched = await stub.fetch_secrets(DiscoveryRequest(resource_names=names, type_url=TYPE_URL), timeout=WAIT)
        got = secrets(fetched)
        check(list(got) == names, f"fetch: names {list(got)}")
        check_cert(got["default"], spiffe_id)
        check_cert(got[spiffe_id], spiffe_id)
        check_roots(got["ROOTCA"])
        ok("fetch-secrets")

        # 2. StreamSecrets: first request pushes, an ACK does not, a rotation does.
        s = Stream(stub)
        s.send(["default", "ROOTCA"])
        r1 = await s.recv("first push")
        got = secrets(r1)
        check(sorted(got) == ["ROOTCA", "default"], f"first push: names {list(got)}")
        leaf1 = check_cert(got["default"], spiffe_id)
        check_roots(got["ROOTCA"])
        ok("stream-first-push")
        s.send(["default", "ROOTCA"], r1.version_info, r1.nonce)
        await s.quiet("after ACK")
        ok("ack-is-quiet")
        r2 = await rotation(s, r1, "push on rotation")
        leaf2 = check_cert(secrets(r2)["default"], spiffe_id)
        check(leaf2 != leaf1, "push on rotation: same certificate")
        ok("rotation-pushed")

        # 3. NACK: the rejected version is not resent; the next rotation is pushed.
        s.send(["default", "ROOTCA"], r1.version_info, r2.nonce, nack="test rejects")
        await s.quiet("after NACK")
        ok("nack-not-resent")
        r3 = await rotation(s, r2, "push after NACK")
        check(len(r3.resources) == 2, f"push after NACK: {len(r3.resources)} resources")
        ok("push-after-nack")
        s.send(["default", "ROOTCA"], r3.version_info, r3.nonce)

        # 5. New names on the stream push at once, at the same version.
        s.send(["default", "ROOTCA", "ALL"], r3.version_info, r3.nonce)
        r4 = await s.recv("push on new names")
        got = secrets(r4)
        check(sorted(got) == ["ALL", "ROOTCA", "default"], f"new names: {list(got)}")
        check_roots(got["ALL"])
        check(r4.version_info == r3.version_info, f"new names: version {r4.version_info}, want {r3.version_info}")
        check(r4.nonce != r3.nonce, "new names: nonce reused")
        s.send(["default", "ROOTCA", "ALL"], r4.version_info, r4.nonce)
        await s.quiet("after ACK of new names")
        ok("names-change-pushed")
        await s.close()

        # 4. A name the server holds no secret for is refused as SPIRE's agent refuses it
        #    (InvalidArgument, "not authorized for the requested identities"), on a
        #    stream and from FetchSecrets, even next to known names.
        u = Stream(stub)
        u.send(["default", "nonsense"])
        try:
            refused = await asyncio.wait_for(u.inbox.get(), WAIT)
        except TimeoutError:
            raise Failed("unknown names: no answer") from None
        check(isinstance(refused, GRPCError), f"unknown names: {refused!r}")
        check(refused.status == GrpcStatus.INVALID_ARGUMENT, f"unknown names: {refused.status}")
        check("not authorized" in (refused.message or ""), f"unknown names: {refused.message!r}")
        try:
            await stub.fetch_secrets(DiscoveryRequest(resource_names=["nonsense"]), timeout=WAIT)
            raise Failed("fetch unknown: answered")
        except GRPCError as e:
            check(e.status == GrpcStatus.INVALID_ARGUMENT, f"fetch unknown: {e.status}")
        ok("unknown-names-refused")
    finally:
        channel.close()


def main():
    socket, spiffe_id = sys.argv[1:3]
    try:
        asyncio.run(run(socket, spiffe_id))
    except Failed as e:
        print(f"FAIL {e}", flush=True)
        sys.exit(1)
    print("done", flush=True)


if __name__ == "__main__":
    main()
