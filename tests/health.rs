//! `/health` names a component that cannot do its job at run time, through the real binary:
//! a live capture that can open none of its interfaces is a 503, not an input quietly capturing
//! nothing.

mod support {
    pub mod process;
}

use std::time::Duration;
use support::process::{free_port, http_get as get, wait_until, write_file, Trawl};

#[test]
fn a_capture_on_no_interface_turns_health_503_naming_the_input() {
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let cfg = write_file(
        dir.path(),
        "pipeline.yaml",
        &format!(
            "data_dir: {data}\nhttp: {{ address: \"{addr}\" }}\ninputs:\n  web:\n    type: http\n    capture: {{ interfaces: [trawl-none0] }}\noutputs:\n  out: {{ type: \"null\" }}\n",
            data = dir.path().join("data").display()
        ),
    );
    let _t = Trawl::start(&cfg, Some(&dir.path().join("trawl.log")));
    let mut last = None;
    wait_until(Duration::from_secs(30), "/health to answer 503", || {
        last = get(&addr, "/health");
        last.as_ref().is_some_and(|(status, _)| *status == 503)
    });
    let (_, body) = last.unwrap();
    assert!(body.contains("web"), "{body}");
    assert!(body.contains("trawl-none0"), "{body}");
}
