//! Network faults between real hosts: peers in their own network namespaces (veth pairs,
//! private addresses, nftables drop rules inside the namespace, a forwarding proxy for
//! slowness and stalls), cut, stalled or dropped while a stage or a compute works.
//!
//! Each test bounds its own time (a watchdog, and a deadline on every wait) and cleans up
//! its namespaces, proxies and servers on drop, also when it fails. Without root or
//! `ip netns`/`nft` the tests print a loud skip line, and fail when `CI` is set.

#![allow(clippy::unwrap_used)] // Test code: a panic is the test failing, with its message.

mod common;
mod control_plane;
mod pageserver;
mod primary;
mod replica;
mod safekeepers;
mod upstream_sync;
