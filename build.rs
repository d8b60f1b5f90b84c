//! Links the `trawl` executable as position-dependent (non-PIE). A PIE binary must relocate its
//! 1.7 MB `.data.rel.ro` and read the whole `.rela.dyn` table at every start, which alone keeps
//! about 3 MB resident on an idle node; without PIE the linker resolves them once at build time.

fn main() {
    // A static build (`-C target-feature=+crt-static`, the forwarder of app containers) links as
    // static-pie, which `-no-pie` would turn into a binary that crashes at start.
    let static_crt = std::env::var("CARGO_CFG_TARGET_FEATURE")
        .is_ok_and(|f| f.split(',').any(|x| x == "crt-static"));
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") && !static_crt {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
