"""One network namespace per region on a private bridge, plus a link from the root namespace.

Layout, for a ``/24`` such as ``10.213.7.0/24`` (only addresses created here)::

    root namespace (the benchmark) ── <prefix>r ──┐
                                                   │   bridge br0 in namespace <prefix>hub
    region i namespace: wan0 = .(i+1)/24 ──────────┘   (no routing, no NAT, one L2 segment)
                         lo   = .(101+j)/32 for every region j (the regions' "public" addresses)

* ``.(i+1)`` is region *i*'s *link* address: the benchmark in the root namespace
  (``.254``) reaches each region's services, Redis and relay metrics there, with
  no delay (it stands for a client next to that region).
* ``.(101+i)`` is region *i*'s *public* address, the one every service is
  configured with (Kafka's advertised listener, ``MRCACHE_REGION_URLS``). Every
  region namespace holds all public addresses on its own ``lo``: in region *i*
  its own public address reaches its own services directly, and another
  region's public address reaches a delay proxy in region *i* that forwards to
  that region's link address. So the same ``host:port`` (for instance the
  broker's one advertised listener) means "direct" in the broker's region and
  "through the WAN" everywhere else, which a single loopback cannot express.
* ``arp_ignore=1`` in each region namespace keeps a region from answering ARP
  for the public addresses it holds on ``lo``; nothing sends to them over the
  bridge anyway.

Deleting the namespaces removes every interface created here (the root end of
the veth pair goes with its peer); :meth:`WanNet.destroy` also deletes it
explicitly.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field

ROOT_HOST = 254


class NetnsError(RuntimeError):
    pass


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)}: {result.stderr.strip() or result.returncode}")


@dataclass(frozen=True)
class RegionNet:
    region: str
    netns: str
    link: str  # reached from the root namespace, no delay
    public: str  # what every service is configured with


@dataclass
class WanNet:
    regions: tuple[RegionNet, ...]
    hub: str
    root_if: str
    root_addr: str
    subnet: ipaddress.IPv4Network
    created: list[str] = field(default_factory=list)

    @classmethod
    def plan(cls, regions: Sequence[str], subnet: str, *, tag: str | None = None) -> WanNet:
        net = ipaddress.IPv4Network(subnet, strict=True)
        if net.prefixlen != 24 or not net.is_private:
            raise NetnsError(f"--wan-subnet must be a private /24, got {subnet}")
        if len(regions) > 90:
            raise NetnsError("at most 90 regions fit the address plan")
        tag = tag or str(os.getpid())
        prefix = f"mrcb{tag}-"
        base = net.network_address
        return cls(
            regions=tuple(
                RegionNet(
                    region=name,
                    netns=f"{prefix}{name}",
                    link=str(base + i + 1),
                    public=str(base + 101 + i),
                )
                for i, name in enumerate(regions)
            ),
            hub=f"{prefix}hub",
            root_if=f"mrcb{tag}r"[:15],
            root_addr=str(base + ROOT_HOST),
            subnet=net,
        )

    def of(self, region: str) -> RegionNet:
        for r in self.regions:
            if r.region == region:
                return r
        raise KeyError(region)

    def exec_argv(self, region: str, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside the region's namespace (``ip netns exec`` execs, same pid)."""
        return ["ip", "netns", "exec", self.of(region).netns, *argv]

    def check_free(self) -> None:
        """Refuse a subnet the root namespace already routes or holds (other than default)."""
        out = subprocess.run(
            ["ip", "-4", "route", "show", "table", "all"], capture_output=True, text=True
        ).stdout
        for line in out.splitlines():
            dest = line.split()[0] if line.split() else ""
            if dest in ("default", "broadcast", "local", "unreachable", "blackhole"):
                dest = line.split()[1] if len(line.split()) > 1 else ""
            try:
                other = ipaddress.IPv4Network(dest, strict=False)
            except ValueError:
                continue
            if other.prefixlen > 0 and other.overlaps(self.subnet):
                raise NetnsError(
                    f"{self.subnet} overlaps an existing route ({line.strip()}); "
                    "choose another --wan-subnet"
                )
        existing = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        names = {line.split()[0] for line in existing.splitlines() if line.strip()}
        taken = names & {self.hub, *(r.netns for r in self.regions)}
        if taken:
            raise NetnsError(f"network namespaces already exist: {', '.join(sorted(taken))}")

    def create(self) -> None:
        """Build the namespaces, the bridge and the links; :meth:`destroy` undoes it all."""
        self.check_free()
        plen = self.subnet.prefixlen
        _ip("netns", "add", self.hub)
        self.created.append(self.hub)
        _ip("-n", self.hub, "link", "set", "lo", "up")
        _ip("-n", self.hub, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.hub, "link", "set", "br0", "up")
        _ip("link", "add", self.root_if, "type", "veth", "peer", "name", "hroot", "netns", self.hub)
        _ip("-n", self.hub, "link", "set", "hroot", "master", "br0")
        _ip("-n", self.hub, "link", "set", "hroot", "up")
        _ip("addr", "add", f"{self.root_addr}/{plen}", "dev", self.root_if)
        _ip("link", "set", self.root_if, "up")
        for i, r in enumerate(self.regions):
            _ip("netns", "add", r.netns)
            self.created.append(r.netns)
            _ip("-n", r.netns, "link", "set", "lo", "up")
            hub_end = f"h{i}"
            _ip("-n", r.netns, "link", "add", "wan0", "type", "veth", "peer", "name", hub_end)
            _ip("-n", r.netns, "link", "set", hub_end, "netns", self.hub)
            _ip("-n", self.hub, "link", "set", hub_end, "master", "br0")
            _ip("-n", self.hub, "link", "set", hub_end, "up")
            _ip("netns", "exec", r.netns, "sysctl", "-q", "-w", "net.ipv4.conf.all.arp_ignore=1")
            _ip("-n", r.netns, "addr", "add", f"{r.link}/{plen}", "dev", "wan0")
            _ip("-n", r.netns, "link", "set", "wan0", "up")
            for other in self.regions:
                _ip("-n", r.netns, "addr", "add", f"{other.public}/32", "dev", "lo")

    def destroy(self) -> list[str]:
        """Delete what :meth:`create` made; returns the problems (never raises)."""
        problems: list[str] = []
        for name in reversed(self.created):
            try:
                _ip("netns", "del", name)
            except NetnsError as exc:
                problems.append(str(exc))
        self.created.clear()
        # gone with its peer in the hub namespace, unless something still held that namespace
        listed = subprocess.run(
            ["ip", "link", "show", self.root_if], capture_output=True
        ).returncode
        if listed == 0:
            try:
                _ip("link", "del", self.root_if)
            except NetnsError as exc:
                problems.append(str(exc))
        return problems

    def describe(self) -> str:
        lines = [
            f"WAN topology: one network namespace per region on bridge br0 ({self.hub}), "
            f"subnet {self.subnet}; benchmark in the root namespace at {self.root_addr}",
        ]
        for r in self.regions:
            lines.append(
                f"  {r.region:<10} netns {r.netns:<22} link {r.link:<15} public {r.public}"
            )
        return "\n".join(lines)
