"""The pre-call check's far end: an aiortc peer that sends back whatever it receives.

The browser offers its camera and microphone; this peer answers, and every track it receives is
added back (through a MediaRelay) so the browser sees its own picture and hears its own voice having
crossed the network, and measures the round trip with getStats(). aiortc decodes and re-encodes each
stream (about 12% of a core for 640x480 VP8), so peers are few (CONSULT_ECHO_LIMIT) and short-lived
(CONSULT_ECHO_SECONDS).

aiortc does not trickle: the answer carries every candidate. It uses the first STUN/TURN server it is
given, and a public STUN host when given none, so the ICE servers are always passed explicitly.
`addresses` restricts the host candidates it gathers (tests keep all media on 127.0.0.1).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from dataclasses import dataclass, field
from typing import Any

import aioice.ice
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.contrib.media import MediaRelay

log = logging.getLogger(__name__)

#: Host addresses for candidate gathering in the current task; None: every interface (aioice's own).
_only_addresses: contextvars.ContextVar[tuple[str, ...] | None] = contextvars.ContextVar(
    "verity_echo_addresses", default=None)
_aioice_host_addresses = aioice.ice.get_host_addresses


def _host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
    only = _only_addresses.get()
    if only is None:
        return _aioice_host_addresses(use_ipv4, use_ipv6)
    return list(only)


# aioice reads its host addresses through this module-level function while gathering; it leaves out
# 127.0.0.1 on purpose, and has no option to choose interfaces. Route it through the context variable
# so only the echo peer's own gathering, and only when configured, uses the given addresses.
aioice.ice.get_host_addresses = _host_addresses


class EchoBusy(Exception):
    """Too many pre-call checks at once on this process."""


@dataclass
class EchoPeers:
    ice_servers: list[dict[str, Any]]
    addresses: tuple[str, ...] | None = None
    lifetime: float = 30.0
    limit: int = 4
    peers: dict[str, RTCPeerConnection] = field(default_factory=dict)

    def _configuration(self) -> RTCConfiguration:
        servers = [RTCIceServer(urls=s["urls"], username=s.get("username"), credential=s.get("credential"))
                   for s in self.ice_servers[:1]]
        return RTCConfiguration(iceServers=servers)

    async def answer(self, owner: str, sdp: str) -> str:
        """Answer one offer for `owner` (a connection id); a second offer replaces the first peer."""
        await self.close(owner)
        if len(self.peers) >= self.limit:
            raise EchoBusy("The connection check is busy. Try again in a minute.")
        pc = RTCPeerConnection(self._configuration())
        self.peers[owner] = pc
        relay = MediaRelay()

        @pc.on("track")
        def _echo(track) -> None:
            pc.addTrack(relay.subscribe(track))

        @pc.on("connectionstatechange")
        async def _state() -> None:
            if pc.connectionState in ("failed", "closed"):
                await self.close(owner, pc)

        try:
            await pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="offer"))
            answer = await pc.createAnswer()
            token = _only_addresses.set(self.addresses) if self.addresses else None
            try:
                await pc.setLocalDescription(answer)
            finally:
                if token is not None:
                    _only_addresses.reset(token)
        except Exception:
            await self.close(owner, pc)
            raise
        asyncio.get_running_loop().call_later(self.lifetime, lambda: asyncio.ensure_future(self.close(owner, pc)))
        return pc.localDescription.sdp

    async def close(self, owner: str, pc: RTCPeerConnection | None = None) -> None:
        current = self.peers.get(owner)
        if current is None or (pc is not None and current is not pc):
            if pc is not None:
                await pc.close()
            return
        del self.peers[owner]
        await current.close()

    async def close_all(self) -> None:
        for owner in list(self.peers):
            await self.close(owner)
