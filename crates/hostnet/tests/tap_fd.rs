//! The QEMU `-netdev tap,fd=N` path: `HostNetwork::open_tap` hands out a queue of a port's tap;
//! frames written on it (virtio-net header + Ethernet) reach the bridge, answers come back on
//! it, and the port's anti-spoofing applies to them.

mod common;

use std::io::{Read, Write};
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use common::*;
use lifeboat_hostnet::{netns, HostNetwork, HostOptions, MacAddr, SecurityGroup};

const VNET_HDR: usize = 10;

fn arp_request(mac: MacAddr, sender: Ipv4Addr, target: Ipv4Addr) -> Vec<u8> {
    let mut f = vec![0u8; VNET_HDR];
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&mac.0);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 1]);
    f.extend_from_slice(&mac.0);
    f.extend_from_slice(&sender.octets());
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&target.octets());
    f
}

/// Wait up to 3 s for an ARP reply from `target` on the tap queue; returns the sender MAC.
fn arp_reply(fd: &OwnedFd, target: Ipv4Addr) -> Option<[u8; 6]> {
    // SAFETY: fcntl on an fd we own.
    unsafe {
        let fl = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, fl | libc::O_NONBLOCK);
    }
    let mut file = std::fs::File::from(fd.try_clone().unwrap());
    let end = Instant::now() + Duration::from_secs(3);
    let mut buf = [0u8; 2048];
    while Instant::now() < end {
        match file.read(&mut buf) {
            Ok(n) if n >= VNET_HDR + 42 => {
                let f = &buf[VNET_HDR..n];
                if f[12..14] == [0x08, 0x06] && f[20..22] == [0, 2] && f[28..32] == target.octets()
                {
                    let mut m = [0u8; 6];
                    m.copy_from_slice(&f[22..28]);
                    return Some(m);
                }
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => panic!("read tap: {e}"),
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tap_queue_fd_carries_the_ports_traffic() {
    require_tools();
    let mut g = Guard::new();
    let host = g.host("fd");
    let peer = g.ns("peer");
    let hn = HostNetwork::open(&host, HostOptions::default())
        .await
        .unwrap();
    hn.ensure_network(&net("n", 110, "10.77.10.0/24", None))
        .await
        .unwrap();
    hn.apply_security_groups(&[SecurityGroup {
        id: "default".into(),
        rules: SecurityGroup::default_rules("default"),
        members: vec![],
    }])
    .await
    .unwrap();
    let vm = port("vmfd", "n", 0x30, "10.77.10.20", &["default"]);
    let tap = hn.ensure_port(&vm).await.unwrap();
    let peer_port = port("peer", "n", 0x11, "10.77.10.11", &["default"]);
    hn.ensure_port_namespace(&peer_port, &peer).await.unwrap();
    netns::run_command(
        &peer,
        "ip",
        &["addr", "add", "10.77.10.11/24", "dev", "eth0"],
    )
    .unwrap();

    let fd = hn.open_tap(&tap).unwrap();
    let peer_ip: Ipv4Addr = "10.77.10.11".parse().unwrap();
    let mut w = std::fs::File::from(fd.try_clone().unwrap());
    // Give the tap's carrier and the bridge port a moment after the queue attached.
    std::thread::sleep(Duration::from_millis(300));
    w.write_all(&arp_request(
        vm.mac,
        "10.77.10.20".parse().unwrap(),
        peer_ip,
    ))
    .unwrap();
    let mac = arp_reply(&fd, peer_ip).expect("no ARP reply through the tap queue");
    assert_eq!(MacAddr(mac), peer_port.mac);

    // A sender address that is not the port's is dropped by its anti-spoofing.
    netns::run_command(&peer, "ip", &["neigh", "flush", "all"]).unwrap();
    w.write_all(&arp_request(
        vm.mac,
        "10.77.10.99".parse().unwrap(),
        peer_ip,
    ))
    .unwrap();
    assert_eq!(arp_reply(&fd, peer_ip), None, "spoofed ARP got an answer");
    // Nor may the port use another MAC.
    let other = MacAddr([0xfa, 0x16, 0x3e, 0x00, 0x00, 0x99]);
    w.write_all(&arp_request(other, "10.77.10.20".parse().unwrap(), peer_ip))
        .unwrap();
    assert_eq!(arp_reply(&fd, peer_ip), None, "foreign MAC got an answer");
}
