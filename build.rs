//! Links the `trawl` executable as position-dependent (non-PIE). A PIE binary must relocate its
//! 1.7 MB `.data.rel.ro` and read the whole `.rela.dyn` table at every start, which alone keeps
//! about 3 MB resident on an idle node; without PIE the linker resolves them once at build time.

fn main() {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
