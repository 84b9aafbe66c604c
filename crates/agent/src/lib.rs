//! Lifeboat host agent: serves one host's hypervisor driver to the manager over HTTP/JSON, or in-process.
