//! What is shipped: the container image, the Debian package under a real systemd, and the
//! Kubernetes manifests, validated and run.
//! One test binary (`cargo test --release --test packaging`), one module per former test file;
//! `cargo test --release --test packaging <module>::` runs one of them.

#[path = "../support/mod.rs"]
mod support;

mod deb_systemd;
mod image;
mod manifest_containers;
mod manifests;
