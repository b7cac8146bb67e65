//! Links librbd: the `ceph` crate binds librados only, and ember declares the few librbd
//! functions it calls itself (src/driver/rbd/ffi.rs). The `.so` symlink comes from Debian's
//! `librbd-dev` (scripts/install-deps.sh installs it); librbd ships no pkg-config file.
fn main() {
    println!("cargo:rustc-link-lib=dylib=rbd");
    println!("cargo:rerun-if-changed=build.rs");
}
