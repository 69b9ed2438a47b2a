"""WAN emulation for the benchmarks: network namespaces per region and a delay proxy.

This kernel has no ``netem`` qdisc, so one-way delay between regions comes from a
userspace TCP proxy (:mod:`services.cli.delayproxy`) that holds every chunk of bytes for
the delay in each direction; :mod:`bench.wan.netns` builds the namespaces and
:mod:`bench.wan.platform` starts a platform whose cross-region connections all go
through such proxies.
"""
