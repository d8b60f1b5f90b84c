//! Several `hosts`, some of them wrong, in front of a real OpenSearch node
//! (`tests/support/opensearch.rs`): the user hears about each wrong host once, and the one
//! right host takes everything without the output ever counting as down.

use crate::support;

use std::time::Duration;
use support::opensearch::OpenSearch;
use support::process::{assert_each_once, free_port, numbered_lines, write_file, Trawl};

/// Three hosts, the first and the last with a wrong port (nothing listens there), as after a
/// copy-paste from another cluster's file. Before, only the host a request happened to meet
/// was reported, with an outage warning ("not taking requests") every few seconds and each
/// request to a wrong host waiting out a retry back-off, and the template install failing on
/// the first one; now a refused connection goes on to the next host at once and each wrong host
/// is logged once.
#[test]
fn two_wrong_hosts_of_three_are_each_named_once_and_the_right_one_takes_everything() {
    let os = OpenSearch::shared();
    let index = "hosts-two-wrong";
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let wrong = [free_port(), free_port()].map(|p| format!("127.0.0.1:{p}"));
    let cfg = write_file(
        d,
        "pipeline.yaml",
        &format!(
            "data_dir: {data}\nhttp: {{ enabled: false }}\ninputs:\n  app: {{ type: stdin }}\noutputs:\n  es:\n    type: elasticsearch\n    hosts: [\"{w0}\", \"{right}\", \"{w1}\"]\n    index: {index}\n    batch: {{ max_events: 20, timeout: 50ms }}\n",
            data = d.join("data").display(),
            w0 = wrong[0],
            w1 = wrong[1],
            right = os.url,
        ),
    );
    let log_path = d.join("trawl.log");
    let mut t = Trawl::start(&cfg, Some(&log_path));
    let lines = numbered_lines("hosts", 400);
    // In pieces over a few seconds, so that requests take turns over the hosts as a running
    // shipper's do, and a wrong host comes back after its 5 s pause.
    for chunk in lines.as_bytes().chunks(lines.len() / 8) {
        t.feed(chunk);
        std::thread::sleep(Duration::from_millis(800));
    }
    let status = t.finish(Duration::from_secs(120));
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(status.success(), "trawl exited with {status}: {log}");
    let want: Vec<String> = lines.lines().map(str::to_owned).collect();
    assert_each_once(&os.copies_by_message(index), &want);
    for host in &wrong {
        let named = log
            .lines()
            .filter(|l| l.contains(host.as_str()) && (l.contains("WARN") || l.contains("ERROR")))
            .count();
        assert_eq!(named, 1, "{host} named once as unreachable:\n{log}");
    }
    for outage in ["not taking requests", "cannot install the index template"] {
        assert!(
            !log.contains(outage),
            "one host answering is no outage (`{outage}`):\n{log}"
        );
    }
}
