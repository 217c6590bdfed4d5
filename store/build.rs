//! Links librados and librbd (Debian: librados-dev, librbd-dev). This crate is the only one that does.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rustc-link-lib=dylib=rados");
    println!("cargo:rustc-link-lib=dylib=rbd");
}
