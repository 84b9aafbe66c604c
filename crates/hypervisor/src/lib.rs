//! Lifeboat hypervisor drivers behind one trait: fake (test double) and qemu.
