//! A real VM (QEMU, TCG, the guest image from guest/out) on a tap of a Lifeboat network: a
//! namespace guest on the same network reaches it over the bridge with security groups on,
//! and the VM's NIC carries the port's MAC. The guest's /init configures the port's fixed IP
//! from the kernel command line (it has no DHCP client yet).

mod common;

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use common::*;
use lifeboat_hostnet::{
    netns, Direction, EtherType, HostNetwork, HostOptions, Protocol, Remote, SecurityGroup,
    SecurityGroupRule,
};

struct Vm(Child);

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn guest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../guest/out")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_qemu_guest_on_a_tap_is_reachable_over_the_bridge() {
    require_tools();
    let dir = guest_dir();
    for f in ["vmlinux", "initramfs.cpio.gz"] {
        assert!(
            dir.join(f).exists(),
            "{} missing: run `bash guest/build-image.sh`",
            dir.join(f).display()
        );
    }
    assert!(
        Command::new("qemu-system-x86_64")
            .arg("--version")
            .output()
            .is_ok(),
        "qemu-system-x86_64 is not installed"
    );
    let mut g = Guard::new();
    let host = g.host("vm");
    let peer = g.ns("peer");
    let hn = HostNetwork::open(&host, HostOptions::default())
        .await
        .unwrap();
    hn.ensure_network(&net("n", 109, "10.77.9.0/24", None))
        .await
        .unwrap();
    hn.apply_security_groups(&[SecurityGroup {
        id: "default".into(),
        rules: SecurityGroup::default_rules("default"),
        members: vec!["10.77.9.20".parse().unwrap(), "10.77.9.11".parse().unwrap()],
    }])
    .await
    .unwrap();
    let vm_port = port("vmport", "n", 0x20, "10.77.9.20", &["default"]);
    let tap = hn.ensure_port(&vm_port).await.unwrap();
    assert_eq!(tap, "tapvmport");
    hn.ensure_port_namespace(&port("peer", "n", 0x11, "10.77.9.11", &["default"]), &peer)
        .await
        .unwrap();
    netns::run_command(
        &peer,
        "ip",
        &["addr", "add", "10.77.9.11/24", "dev", "eth0"],
    )
    .unwrap();

    let tmp = tempfile::tempdir().unwrap();
    let serial = tmp.path().join("serial.log");
    let prefix = hn.exec_prefix();
    let mut cmd = Command::new(&prefix[0]);
    cmd.args(&prefix[1..])
        .arg("qemu-system-x86_64")
        .args(["-machine", "pc", "-accel", "tcg", "-m", "160", "-smp", "1"])
        .args(["-display", "none", "-monitor", "none", "-no-reboot"])
        .arg("-kernel")
        .arg(dir.join("vmlinux"))
        .arg("-initrd")
        .arg(dir.join("initramfs.cpio.gz"))
        .args([
            "-append",
            "console=ttyS0 quiet panic=-1 lifeboat.ip=10.77.9.20/24 lifeboat.hostname=vm1 lifeboat.data=none",
        ])
        .arg("-serial")
        .arg(format!("file:{}", serial.display()))
        .args(HostNetwork::qemu_nic_args(&vm_port, "net0"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let _vm = Vm(cmd.spawn().unwrap());
    let vm_ip: IpAddr = "10.77.9.20".parse().unwrap();
    let up = ping_within(&peer, vm_ip, 120);
    assert!(
        up,
        "the VM did not answer; serial console:\n{}",
        std::fs::read_to_string(&serial).unwrap_or_default()
    );
    // The VM's MAC as the peer sees it is the port's.
    let neigh = netns::run_command(&peer, "ip", &["neigh", "show", "10.77.9.20"]).unwrap();
    assert!(neigh.contains("fa:16:3e:00:00:20"), "{neigh}");

    // A group without ICMP from the peer cuts it off; a rule brings it back.
    let icmp_from_peer = SecurityGroupRule {
        direction: Direction::Ingress,
        ethertype: EtherType::IPv4,
        protocol: Some(Protocol::Icmp),
        port_range_min: None,
        port_range_max: None,
        remote: Remote::Cidr("10.77.9.11/32".parse().unwrap()),
    };
    let mut vm_port2 = vm_port.clone();
    vm_port2.security_groups = vec!["locked".into()];
    let groups = |rules: Vec<SecurityGroupRule>| {
        vec![
            SecurityGroup {
                id: "default".into(),
                rules: SecurityGroup::default_rules("default"),
                members: vec!["10.77.9.11".parse().unwrap()],
            },
            SecurityGroup {
                id: "locked".into(),
                rules,
                members: vec![vm_ip],
            },
        ]
    };
    hn.apply_security_groups(&groups(vec![])).await.unwrap();
    hn.ensure_port(&vm_port2).await.unwrap();
    assert!(!ping(&peer, vm_ip), "no ingress rule: blocked");
    hn.apply_security_groups(&groups(vec![icmp_from_peer]))
        .await
        .unwrap();
    assert!(ping_within(&peer, vm_ip, 5), "ICMP rule: allowed");
}
