//! `trawl validate` says what `run` will do: what would fail or misbehave at run time is
//! rejected up front with file, line, column and key, and `run` refuses it the same way.

use crate::support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;
use support::process::{write_file, Trawl};

const TRAWL: &str = env!("CARGO_BIN_EXE_trawl");

/// `a.dead_letter: b` with `b.dead_letter: a`: a letter rejected again would bounce forever
/// (growing at each turn) and shutdown could never drain it. Chains that end are fine.
#[test]
fn a_dead_letter_cycle_is_rejected_where_it_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let out = |n: &str| dir.path().join(n).display().to_string();
    let cycle = write_file(
        dir.path(),
        "cycle.yaml",
        &format!(
            "data_dir: {data}\nhttp: {{ enabled: false }}\ninputs:\n  app: {{ type: stdin }}\noutputs:\n  main: {{ type: file, path: {m}, dead_letter: a }}\n  a: {{ type: file, path: {a}, dead_letter: b }}\n  b: {{ type: file, path: {b}, dead_letter: c }}\n  c: {{ type: file, path: {c}, dead_letter: a }}\n",
            data = out("data"),
            m = out("m.log"),
            a = out("a.log"),
            b = out("b.log"),
            c = out("c.log"),
        ),
    );
    let err = refused_by_validate(&cycle);
    let f = cycle.display().to_string();
    // Reported once, at the first member's `dead_letter:` value (line 7: output `a`).
    let text = std::fs::read_to_string(&cycle).unwrap();
    let line7 = text.lines().nth(6).unwrap();
    let col = line7.find("dead_letter: ").unwrap() + "dead_letter: ".len() + 1;
    assert!(
        err.contains(&format!(
            "{f}:7:{col}: outputs.a.dead_letter: dead-letter cycle a → b → c → a"
        )),
        "{err}"
    );
    assert_eq!(err.matches("dead-letter cycle").count(), 1, "{err}");
    assert!(err.contains("invalid (1 error)"), "{err}");

    // `run` refuses it too, at once, instead of hanging at shutdown.
    let mut t = Trawl::start(&cycle, Some(&dir.path().join("run.log")));
    let status = t.wait(Duration::from_secs(30));
    assert_eq!(status.code(), Some(1));
    let log = std::fs::read_to_string(dir.path().join("run.log")).unwrap();
    assert!(log.contains("dead-letter cycle a → b → c → a"), "{log}");

    // The same outputs as a chain that ends: valid.
    let chain = write_file(
        dir.path(),
        "chain.yaml",
        &std::fs::read_to_string(&cycle)
            .unwrap()
            .replace(", dead_letter: a }\n", " }\n"),
    );
    let v = Command::new(TRAWL)
        .args(["validate", "-c"])
        .arg(&chain)
        .output()
        .unwrap();
    assert_eq!(
        v.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&v.stderr)
    );
}

#[test]
fn an_output_that_is_its_own_dead_letter_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_file(
        dir.path(),
        "self.yaml",
        "inputs:\n  app: { type: stdin }\noutputs:\n  a: { type: stdout, dead_letter: a }\n",
    );
    let err = refused_by_validate(&cfg);
    assert!(
        err.contains(&format!(
            "{}:4:35: outputs.a.dead_letter: `a` is not another output",
            cfg.display()
        )),
        "{err}"
    );
}

/// Each of these used to pass `validate` and then fail or misbehave at run time: a BPF filter
/// libpcap cannot compile (the input then captured nothing), a property librdkafka does not know,
/// an empty file path, an address that is not one, batches or queues of size 0 (clamped to 1:
/// many times slower). Each is now an error at its own line and column.
#[test]
fn what_run_would_refuse_or_mishandle_is_rejected_by_validate() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "data_dir: {data}\nhttp: {{ address: \"999.1.1.1:99999\" }}\npipeline: {{ batch_size: 0, queue_batches: 0 }}\ninputs:\n  web:\n    type: http\n    capture: {{ bpf_filter: \"tcp port 80 and and\" }}\noutputs:\n  k:\n    type: kafka\n    brokers: [\"127.0.0.1:9\"]\n    topic: logs\n    librdkafka: {{ no.such.property: \"1\" }}\n  f:\n    type: file\n    path: \"\"\n",
        data = dir.path().join("data").display()
    );
    let cfg = write_file(dir.path(), "bad.yaml", &text);
    let err = refused_by_validate(&cfg);
    let f = cfg.display().to_string();
    let at = |line: usize, key: &str| {
        let l = text.lines().nth(line - 1).unwrap();
        let col = l.find(key).unwrap() + 1;
        format!("{f}:{line}:{col}: ")
    };
    for (line, value, path, says) in [
        (2, "\"999", "http.address", "not a listen address"),
        (3, "0,", "pipeline.batch_size", "at least 1"),
        (3, "0 }", "pipeline.queue_batches", "at least 1"),
        (7, "\"tcp", "inputs.web.capture.bpf_filter", "BPF"),
        (13, "\"1\"", "outputs.k.librdkafka", "no.such.property"),
        (16, "\"\"", "outputs.f.path", "empty"),
    ] {
        let head = format!("{}{path}: ", at(line, value));
        let found = err
            .lines()
            .find(|l| l.contains(&head))
            .unwrap_or_else(|| panic!("no error at {head}: {err}"));
        assert!(found.contains(says), "{found}");
    }
    assert!(err.contains("invalid (6 errors)"), "{err}");
}

/// `trawl validate -c cfg`, which must refuse it (exit 1): what it said on stderr.
fn refused_by_validate(cfg: &std::path::Path) -> String {
    let v = Command::new(TRAWL)
        .args(["validate", "-c"])
        .arg(cfg)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&v.stderr).into_owned();
    assert_eq!(v.status.code(), Some(1), "{err}");
    err
}

/// `trawl validate` of a pipeline with the one input `input` (a flow mapping) and a stdout
/// output: its exit code and stderr.
fn validate_input(input: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("p.yaml");
    std::fs::write(
        &p,
        format!("inputs:\n  i: {input}\noutputs:\n  o: {{ type: stdout }}\n"),
    )
    .unwrap();
    let out = Command::new(TRAWL)
        .args(["validate", "-c"])
        .arg(&p)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code(), err)
}

/// `trawl validate` of a pipeline with the one input `input` (a flow mapping) and a stdout
/// output: it must refuse it (exit 1) naming line 2 of the file; its stderr.
fn refused_input(input: &str) -> String {
    let (code, err) = validate_input(input);
    assert_eq!(code, Some(1), "{input}: {err}");
    assert!(err.contains("p.yaml:2:"), "{input}: {err}");
    err
}

#[test]
fn file_input_sizes_and_counts_that_cannot_work_are_rejected_at_their_key() {
    for (setting, key) in [
        ("max_open_files: 0", "max_open_files"),
        ("read_buffer: 100GiB", "read_buffer"),
        ("max_line_bytes: 0", "max_line_bytes"),
    ] {
        let err = refused_input(&format!("{{ type: file, paths: [/tmp/x.log], {setting} }}"));
        assert!(err.contains(&format!("inputs.i.{key}")), "{setting}: {err}");
    }
}

/// The journald input's bounds: none may be 0 (nothing could ever be read or joined).
#[test]
fn journald_bounds_of_zero_are_rejected_at_their_key() {
    for key in [
        "max_in_flight_batches",
        "max_joined_sources",
        "max_held_entries",
    ] {
        let err = refused_input(&format!("{{ type: journald, {key}: 0 }}"));
        assert!(
            err.contains(&format!("inputs.i.{key}")) && err.contains("at least 1"),
            "{key}: {err}"
        );
    }
}

/// A journald input's `take_over` names its former name: its own name, or an empty one, is
/// refused at the key, as the file input's is.
#[test]
fn journald_take_over_of_itself_or_nothing_is_rejected_at_its_key() {
    for input in [
        "{ type: journald, take_over: i }",
        "{ type: journald, take_over: \"\" }",
    ] {
        let err = refused_input(input);
        let col = 5 + input.find("take_over: ").unwrap() + "take_over: ".len() + 1;
        assert!(
            err.contains(&format!("p.yaml:2:{col}: inputs.i.take_over"))
                && err.contains("former name"),
            "{input}: {err}"
        );
    }
}

/// Line limits of 0 (every line cut to one byte, every journal entry skipped) or past 1 GiB (a
/// typo that lets a sender make trawl hold that much), and a socket input taking no
/// connection, are refused at the key's own line and column, as the file input's are.
#[test]
fn line_limits_and_connection_counts_that_cannot_work_are_rejected_at_their_key() {
    for (input, key) in [
        ("{ type: stdin, max_line_bytes: 0 }", "max_line_bytes"),
        (
            "{ type: socket, address: \"tcp:127.0.0.1:9\", max_line_bytes: 100GiB }",
            "max_line_bytes",
        ),
        (
            "{ type: socket, address: \"tcp:127.0.0.1:9\", max_connections: 0 }",
            "max_connections",
        ),
        ("{ type: journald, max_entry_bytes: 0 }", "max_entry_bytes"),
        ("{ type: journald, matches: [oops] }", "matches"),
    ] {
        let err = refused_input(input);
        // `  i: ` comes before the input on its line; columns count from 1.
        let col = 5 + input.find(&format!("{key}: ")).unwrap() + key.len() + 2 + 1;
        assert!(
            err.contains(&format!("p.yaml:2:{col}: inputs.i.{key}")),
            "{input}: {err}"
        );
    }
}

/// `socket_mode` must be octal permissions, and only on a Unix socket.
#[test]
fn socket_modes_that_are_not_permissions_are_rejected_at_their_key() {
    for (address, mode, says) in [
        ("unix:/tmp/x.sock", "\"0999\"", "not a mode"),
        ("unix:/tmp/x.sock", "\"01777\"", "not a mode"),
        ("tcp:127.0.0.1:9000", "\"0660\"", "`unix:` addresses only"),
    ] {
        let err = refused_input(&format!(
            "{{ type: socket, address: \"{address}\", socket_mode: {mode} }}"
        ));
        assert!(
            err.contains("inputs.i.socket_mode") && err.contains(says),
            "{mode}: {err}"
        );
    }
}

/// `when: {input: ...}` with a misspelt input name matched nothing: an output so conditioned
/// received nothing and counted every event as delivered. It is refused like a misspelt
/// `inputs:` entry, at the name, in outputs and processors, inside `and`/`or`/`not` too.
#[test]
fn a_when_input_naming_no_input_is_rejected_at_the_name() {
    let dir = tempfile::tempdir().unwrap();
    let text = "inputs:\n  app: {type: stdin}\nprocessors:\n  - type: add_fields\n    fields: {x: 1}\n    when: {or: [{input: apx}, {not: {input: [app, zz]}}]}\noutputs:\n  c: {type: stdout, when: {input: [ap]}}\n  d: {type: stdout, when: {input: app}}\n";
    let cfg = write_file(dir.path(), "w.yaml", text);
    let err = refused_by_validate(&cfg);
    let f = cfg.display();
    for (line, col, path, name) in [
        (6, 25, "processors[0].when.input", "apx"),
        (6, 51, "processors[0].when.input", "zz"),
        (8, 36, "outputs.c.when.input", "ap"),
    ] {
        let want =
            format!("{f}:{line}:{col}: {path}: unknown input `{name}`, expected one of `app`");
        assert!(err.contains(&want), "no `{want}` in {err}");
    }
    assert!(err.contains("invalid (3 errors)"), "{err}");
}

/// Values that parse but that `run` refuses, or runs silently wrong: each was accepted by
/// validate. An unset `${VAR}` gives most of the empty ones (an empty bearer token served
/// /metrics and /-/reload to anyone; an empty `data_dir` wrote registries into the working
/// folder); a 100 GiB capture buffer took the node's memory; `shutdown_timeout: 0s` made every
/// stop exit 1; the librdkafka CA file and SASL mechanism failed only when the producer started.
#[test]
fn empty_or_impossible_values_are_rejected_at_their_key() {
    let dir = tempfile::tempdir().unwrap();
    let text = "\
data_dir: \"${TRAWL_TEST_UNSET_DIR}\"
http: {bearer_token: \"${TRAWL_TEST_UNSET_TOKEN}\"}
shutdown_timeout: 0s
pipeline: {workers: 2000}
inputs:
  a: {type: file, paths: [\"\"]}
  b: {type: pcap_file, path: \"\"}
  c: {type: http, capture: {interfaces: []}}
  d: {type: http, capture: {interfaces: [lo], buffer_size: 100GiB}}
  e: {type: http, capture: {interfaces: [lo], max_in_flight: 0}}
outputs:
  k: {type: kafka, brokers: [\"127.0.0.1:9\"], topic: \"\"}
  k2: {type: kafka, brokers: [\"127.0.0.1:9\"], topic: \"bad topic\"}
  k3: {type: kafka, brokers: [\"127.0.0.1:9\"], topic: t, librdkafka: {ssl.ca.location: /nonexistent, security.protocol: ssl}}
  k4: {type: kafka, brokers: [\"127.0.0.1:9\"], topic: t, librdkafka: {sasl.mechanisms: GSSAPI, security.protocol: sasl_plaintext}}
  f: {type: file, path: /tmp/somewhere/}
";
    refused_at(
        &write_file(dir.path(), "e.yaml", text),
        &[
            (1, "data_dir", "empty"),
            (2, "http.bearer_token", "empty"),
            (3, "shutdown_timeout", "above 0"),
            (4, "pipeline.workers", "at most"),
            (6, "inputs.a.paths", "empty pattern"),
            (7, "inputs.b.path", "empty"),
            (8, "inputs.c.capture.interfaces", "empty"),
            (9, "inputs.d.capture.buffer_size", "at most"),
            (10, "inputs.e.capture.max_in_flight", "from 1 byte"),
            (12, "outputs.k.topic", "empty"),
            (13, "outputs.k2.topic", "not a Kafka topic name"),
            (14, "outputs.k3.librdkafka", "ssl.ca.location"),
            (15, "outputs.k4.librdkafka", "GSSAPI"),
            (16, "outputs.f.path", "not a folder"),
        ],
    );
}

/// A value of the wrong type in one global section used to stop the reading of all of them:
/// the mistakes in the others showed only once it was fixed. Each section is read on its own.
#[test]
fn mistakes_in_several_global_sections_are_all_reported_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let text = "\
http: {enabled: maybe}
pipeline: {batch_size: 0}
shutdown_timeout: soon
data_dir: \"\"
inputs:
  a: {type: stdin}
outputs:
  o: {type: stdout}
";
    refused_at(
        &write_file(dir.path(), "g.yaml", text),
        &[
            (1, "http.enabled", "`true` or `false`"),
            (2, "pipeline.batch_size", "at least 1"),
            (3, "shutdown_timeout", "soon"),
            (4, "data_dir", "empty"),
        ],
    );
}

/// Runs `trawl validate -c cfg`, which must refuse it with exactly these errors: for each,
/// a line of its stderr at `cfg:LINE:` naming the key path and saying `says`.
fn refused_at(cfg: &Path, errors: &[(usize, &str, &str)]) {
    let err = refused_by_validate(cfg);
    for (line, path, says) in errors {
        let head = format!("{}:{line}:", cfg.display());
        let found = err
            .lines()
            .find(|l| l.contains(&head) && l.contains(&format!(" {path}: ")))
            .unwrap_or_else(|| panic!("no error for {path} at line {line}: {err}"));
        assert!(found.contains(says), "{found}");
    }
    let n = errors.len();
    let counted = format!("invalid ({n} error{})", if n == 1 { "" } else { "s" });
    assert!(err.contains(&counted), "{err}");
}

/// `remove: [@timestamp]` was refused, but rename, add_fields, a regex or dissect field or
/// target could still move or overwrite it, leaving events without their time or with text
/// in it; and a regex group's inline type was not checked as `types:` is.
#[test]
fn processors_that_would_move_or_overwrite_the_timestamp_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let text = "\
inputs:
  app: {type: stdin}
processors:
  - {type: rename, fields: [{from: '@timestamp', to: t}]}
  - {type: rename, fields: [{from: x, to: '@timestamp'}]}
  - {type: add_fields, fields: {'@timestamp': notatime}}
  - {type: add_fields, target: '@timestamp', fields: {a: 1}}
  - {type: regex, target: '@timestamp', patterns: ['(?<a>x)']}
  - {type: regex, patterns: ['(?<@timestamp>x)']}
  - {type: regex, patterns: ['(?<a:integr>x)']}
  - {type: dissect, tokenizer: '%{@timestamp} %{b}'}
  - {type: regex, patterns: ['(?<a:int>x) (?<b>y)']}
  - {type: add_fields, fields: {'@timestamps': fine}}
outputs:
  c: {type: stdout}
";
    refused_at(
        &write_file(dir.path(), "ts.yaml", text),
        &[
            (4, "processors[0].fields[0].from", "cannot be moved away"),
            (
                5,
                "processors[1].fields[0].to",
                "would overwrite `@timestamp`",
            ),
            (6, "processors[2].fields", "would overwrite `@timestamp`"),
            (7, "processors[3].fields", "`@timestamp.a` would overwrite"),
            (
                8,
                "processors[4].patterns[0]",
                "`@timestamp.a` would overwrite",
            ),
            (
                9,
                "processors[5].patterns[0]",
                "would overwrite `@timestamp`",
            ),
            (10, "processors[6].patterns[0]", "unknown type `integr`"),
            (
                11,
                "processors[7].tokenizer",
                "would overwrite `@timestamp`",
            ),
        ],
    );
}

/// A field name with an empty part (`a..b`, `.c`, `d.`), a regex group so named, a nested
/// dissect key or a time format with no `%` field ran, and wrote keys named `` (`{"a":{"":
/// {"b":..}}}`) or failed on every event. Each is refused at its key.
#[test]
fn field_names_with_empty_parts_and_formats_that_match_nothing_are_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let text = "\
inputs:
  app: {type: stdin}
processors:
  - {type: regex, patterns: ['(?<a..b>x)']}
  - {type: regex, patterns: ['(?<.c>x)']}
  - {type: rename, fields: [{from: x, to: 'd.'}]}
  - {type: add_fields, fields: {'p..q': 1}}
  - {type: dissect, tokenizer: '%{a%{b}} %{c}'}
  - {type: dissect, tokenizer: '%{a..b} %{c}'}
  - {type: timestamp, field: t, formats: ['2006-01-02 15:04:05']}
  - {type: add_fields, fields: {'fine.name': 1}}
outputs:
  c: {type: stdout}
";
    refused_at(
        &write_file(dir.path(), "f.yaml", text),
        &[
            (4, "processors[0].patterns[0]", "`a..b` has an empty part"),
            (5, "processors[1].patterns[0]", "`.c` has an empty part"),
            (6, "processors[2].fields[0].to", "`d.` has an empty part"),
            (7, "processors[3].fields", "`p..q` has an empty part"),
            (8, "processors[4].tokenizer", "a key holds no `%{`"),
            (9, "processors[5].tokenizer", "`a..b` has an empty part"),
            (10, "processors[6].formats[0]", "has no `%` field"),
        ],
    );
}

/// A kubeconfig that is not one (a file named by mistake) was found only at run, where the
/// watch retried it quietly for ever and no event got its pod.
#[test]
fn a_kubeconfig_that_is_not_one_is_rejected_at_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let not_one = write_file(dir.path(), "kubeconfig", "just some text\n");
    let text = format!(
        "inputs:\n  a: {{type: stdin}}\nprocessors:\n  - {{type: kubernetes, node: true, kubeconfig: {}}}\noutputs:\n  c: {{type: stdout}}\n",
        not_one.display()
    );
    refused_at(
        &write_file(dir.path(), "k.yaml", &text),
        &[(4, "processors[0].kubeconfig", "cannot be read as one")],
    );
}

/// An unset `${VAR:?message}` is one error, named by its key, with the user's message; the
/// text left in the value (`${PC_FMT:?...}` is no format) is not refused a second time.
#[test]
fn a_required_variable_left_unset_is_one_error_at_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let text = "inputs:\n  f:\n    type: file\n    paths: [\"${TRAWL_TEST_UNSET_PATH:?set it to the log}\"]\n    format: \"${TRAWL_TEST_UNSET_FMT:?cri or docker}\"\noutputs:\n  o: {type: stdout}\n";
    refused_at(
        &write_file(dir.path(), "e.yaml", text),
        &[
            (
                4,
                "inputs.f.paths[0]",
                "`TRAWL_TEST_UNSET_PATH` is not set: set it to the log",
            ),
            (
                5,
                "inputs.f.format",
                "`TRAWL_TEST_UNSET_FMT` is not set: cri or docker",
            ),
        ],
    );
}

/// A CA file that is missing or holds no certificate is refused at `tls.ca_file` itself, for
/// Elasticsearch as for Kafka, not at the top of the output.
#[test]
fn tls_ca_files_that_cannot_be_used_are_rejected_at_their_key() {
    let dir = tempfile::tempdir().unwrap();
    let not_pem = write_file(dir.path(), "ca.txt", "not a certificate\n");
    let text = format!(
        "inputs:\n  a: {{type: stdin}}\noutputs:\n  es:\n    type: elasticsearch\n    hosts: [\"https://es:9200\"]\n    tls:\n      ca_file: /nonexistent/ca.pem\n  es2:\n    type: elasticsearch\n    hosts: [\"https://es:9200\"]\n    tls: {{ca_file: {}}}\n  k:\n    type: kafka\n    brokers: [\"k:9093\"]\n    topic: t\n    tls: {{ca_file: /nonexistent/ca.pem}}\n",
        not_pem.display()
    );
    refused_at(
        &write_file(dir.path(), "t.yaml", &text),
        &[
            (
                8,
                "outputs.es.tls.ca_file",
                "/nonexistent/ca.pem: No such file",
            ),
            (12, "outputs.es2.tls.ca_file", "no PEM certificate found"),
            (
                17,
                "outputs.k.tls.ca_file",
                "/nonexistent/ca.pem: No such file",
            ),
        ],
    );
}

/// Socket addresses `bind` would refuse (no port, a port above 65535, a scheme trawl does not
/// have, a Unix path longer than `sun_path`) are refused by validate at the key, not found by
/// `run` after the input, or on a reload its predecessor, has stopped.
#[test]
fn socket_addresses_that_cannot_be_bound_are_rejected_at_their_key() {
    let long = format!("unix:/tmp/{}.sock", "x".repeat(100));
    for (address, says) in [
        ("tcp:localhost", "no port"),
        ("tcp:127.0.0.1:70000", "not a port"),
        ("tcp::9000", "no host"),
        ("udp:127.0.0.1:9000", "not a host"),
        (long.as_str(), "at most 107"),
        ("unix:", "empty"),
    ] {
        let err = refused_input(&format!("{{ type: socket, address: \"{address}\" }}"));
        assert!(
            err.contains("inputs.i.address") && err.contains(says),
            "{address}: {err}"
        );
    }
    for address in ["tcp:[::1]:9000", "tcp:0.0.0.0:0", "localhost:9000"] {
        let (code, err) = validate_input(&format!("{{ type: socket, address: \"{address}\" }}"));
        assert_eq!(code, Some(0), "{address}: {err}");
    }
}

/// `vxlan_ports` out of the UDP range (0, above 65535, negative), on a live capture and on a
/// capture file: refused at the element, with file:line:col and key path, by validate and run.
#[test]
fn vxlan_ports_out_of_range_are_rejected_at_the_element() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "live.yaml",
            "inputs:\n  wire:\n    type: http\n    capture:\n      interfaces: [lo]\n      vxlan_ports: [4789, 0]\n",
            "6:27: inputs.wire.capture.vxlan_ports[1]: expected a UDP port from 1 to 65535, got 0",
        ),
        (
            "file.yaml",
            "inputs:\n  old:\n    type: pcap_file\n    path: /nonexistent.pcap\n    vxlan_ports:\n      - 0\n",
            "6:9: inputs.old.vxlan_ports[0]: expected a UDP port from 1 to 65535, got 0",
        ),
        (
            "flows.yaml",
            "inputs:\n  f:\n    type: flows\n    capture: { vxlan_ports: [70000] }\n",
            "4:30: inputs.f.capture.vxlan_ports[0]",
        ),
        (
            "negative.yaml",
            "inputs:\n  f:\n    type: flows\n    capture: { vxlan_ports: [8472, -1] }\n",
            "4:36: inputs.f.capture.vxlan_ports[1]",
        ),
    ];
    refused_by_validate_and_run(dir.path(), &cases);
}

/// Each `(file name, inputs, error)`: the pipeline with these inputs is refused by validate
/// with `error` (its line:col counted within `inputs`) and by run.
fn refused_by_validate_and_run(dir: &Path, cases: &[(&str, &str, &str)]) {
    for (name, inputs, want) in cases {
        let cfg = write_file(
            dir,
            name,
            &format!(
                "data_dir: {}\nhttp: {{ enabled: false }}\n{inputs}outputs:\n  o: {{ type: stdout }}\n",
                dir.join("data").display()
            ),
        );
        // The two global lines come first: the lines of `inputs` move down by two.
        let (line_col, rest) = want.split_once(':').unwrap();
        let line: usize = line_col.parse::<usize>().unwrap() + 2;
        let want = format!("{}:{line}:{rest}", cfg.display());
        let v = Command::new(TRAWL)
            .args(["validate", "-c"])
            .arg(&cfg)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&v.stderr);
        assert_eq!(v.status.code(), Some(1), "{name}: {err}");
        assert!(err.contains(&want), "{name}: want `{want}` in:\n{err}");
        let mut t = Trawl::start(&cfg, Some(&dir.join("run.log")));
        assert_eq!(t.wait(Duration::from_secs(30)).code(), Some(1), "{name}");
    }
}

/// `key_by_vlan` and `key_by_tunnel` are true or false, on a live capture and beside a capture
/// file's path: another value is refused at its key by validate and run.
#[test]
fn key_by_vlan_or_tunnel_other_than_a_boolean_is_rejected_at_its_key() {
    let dir = tempfile::tempdir().unwrap();
    refused_by_validate_and_run(
        dir.path(),
        &[
            (
                "live.yaml",
                "inputs:\n  f:\n    type: flows\n    capture: { interfaces: [lo], key_by_vlan: maybe }\n",
                "4:47: inputs.f.capture.key_by_vlan: expected `true` or `false`, found `maybe`",
            ),
            (
                "file.yaml",
                "inputs:\n  f:\n    type: pcap_file\n    path: /nonexistent.pcap\n    key_by_vlan: 0\n",
                "5:18: inputs.f.key_by_vlan: expected `true` or `false`",
            ),
            (
                "live_tunnel.yaml",
                "inputs:\n  f:\n    type: packet\n    capture:\n      interfaces: [lo]\n      key_by_tunnel: vni\n",
                "6:22: inputs.f.capture.key_by_tunnel: expected `true` or `false`, found `vni`",
            ),
            (
                "file_tunnel.yaml",
                "inputs:\n  f:\n    type: pcap_file\n    path: /nonexistent.pcap\n    key_by_tunnel: [100]\n",
                "5:20: inputs.f.key_by_tunnel: expected `true` or `false`, found a list",
            ),
        ],
    );
}

/// A typo or a wrong value in a protocol section, whether its key is one of the connection
/// settings every protocol shares or one of the protocol's own, in a `packet` input's
/// `protocols:`, a shorthand input (`type: dns`) or a `pcap_file`: refused at the key, with
/// file:line:col and key path, by validate and run.
#[test]
fn a_typo_in_a_protocol_section_is_rejected_at_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "packet.yaml",
            "inputs:\n  net:\n    type: packet\n    capture: { interfaces: [lo] }\n    protocols:\n      dns: { ports: [53] }\n      redis:\n        ports: [6379]\n        max_conections: 7\n",
            "9:9: inputs.net.protocols.redis.max_conections: unknown field `max_conections`",
        ),
        (
            "shorthand.yaml",
            "inputs:\n  d:\n    type: dns\n    capture: { interfaces: [lo] }\n    trasaction_timeout: 2s\n",
            "5:5: inputs.d.trasaction_timeout: unknown field `trasaction_timeout`",
        ),
        (
            "legacy.yaml",
            "inputs:\n  f:\n    type: pcap_file\n    path: /nonexistent.pcap\n    pgsql: { ports: [5432], keep_literal: true }\n",
            "5:29: inputs.f.pgsql.keep_literal: unknown field `keep_literal`",
        ),
        (
            "value.yaml",
            "inputs:\n  f:\n    type: pcap_file\n    path: /nonexistent.pcap\n    protocols:\n      tls:\n        max_connections: lots\n",
            "7:26: inputs.f.protocols.tls.max_connections: ",
        ),
        (
            "protocol.yaml",
            "inputs:\n  n:\n    type: packet\n    protocols:\n      mysq: {}\n",
            "5:7: inputs.n.protocols.mysq: unknown field `mysq`",
        ),
    ];
    for (name, inputs, want) in cases {
        let cfg = write_file(
            dir.path(),
            name,
            &format!(
                "data_dir: {}\nhttp: {{ enabled: false }}\n{inputs}outputs:\n  o: {{ type: stdout }}\n",
                dir.path().join("data").display()
            ),
        );
        // The two global lines come first: the lines of `inputs` move down by two.
        let (line_col, rest) = want.split_once(':').unwrap();
        let line: usize = line_col.parse::<usize>().unwrap() + 2;
        let want = format!("{}:{line}:{rest}", cfg.display());
        let v = Command::new(TRAWL)
            .args(["validate", "-c"])
            .arg(&cfg)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&v.stderr);
        assert_eq!(v.status.code(), Some(1), "{name}: {err}");
        assert!(err.contains(&want), "{name}: want `{want}` in:\n{err}");
        let mut t = Trawl::start(&cfg, Some(&dir.path().join("run.log")));
        assert_eq!(t.wait(Duration::from_secs(30)).code(), Some(1), "{name}");
    }
}

/// `type: null` unquoted is YAML's null, not the `null` output: the error says so and how to
/// write it.
#[test]
fn an_unquoted_null_type_is_explained() {
    let dir = tempfile::tempdir().unwrap();
    refused_by_validate_and_run(
        dir.path(),
        &[
            (
                "null.yaml",
                "inputs:\n  i:\n    type: null\n",
                "3:11: inputs.i.type: expected the component type as text, found YAML's null (`null` unquoted); write `type: \"null\"` for the null output",
            ),
        ],
    );
}

/// Typos in where the outputs deliver, which would otherwise only show once running as a node
/// or broker that never answers (`http//es:9200` read as a node named `http`): refused at the
/// element by validate and run.
#[test]
fn a_mistyped_elasticsearch_host_or_kafka_broker_is_rejected_at_the_element() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_file(
        dir.path(),
        "outputs.yaml",
        &format!(
            "data_dir: {}\nhttp: {{ enabled: false }}\ninputs:\n  app: {{ type: stdin }}\noutputs:\n  es:\n    type: elasticsearch\n    inputs: [app]\n    hosts: [\"es:9200\", \"http//es:9200\"]\n  k:\n    type: kafka\n    inputs: [app]\n    topic: logs\n    brokers:\n      - kafka-0.kafka:9092\n      - kafka//x:9092\n",
            dir.path().join("data").display()
        ),
    );
    let err = refused_by_validate(&cfg);
    let f = cfg.display();
    for want in [
        format!(
            "{f}:9:24: outputs.es.hosts[1]: host `http//es:9200`: `http` must be followed by `://`"
        ),
        format!(
            "{f}:16:9: outputs.k.brokers[1]: broker `kafka//x:9092`: `kafka//x` is not a host name"
        ),
    ] {
        assert!(err.contains(&want), "want `{want}` in:\n{err}");
    }
    assert!(err.contains("invalid (2 errors)"), "{err}");
    let mut t = Trawl::start(&cfg, Some(&dir.path().join("run.log")));
    assert_eq!(t.wait(Duration::from_secs(30)).code(), Some(1));
}

/// A user with three hosts, two of them mistyped, hears about both in one `validate`, each at
/// its own line, column and index (before, only the first: fixing it revealed the second).
#[test]
fn every_mistyped_host_of_a_list_is_reported_at_its_own_index() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_file(
        dir.path(),
        "hosts.yaml",
        &format!(
            "data_dir: {}\nhttp: {{ enabled: false }}\ninputs:\n  app: {{ type: stdin }}\noutputs:\n  es:\n    type: elasticsearch\n    hosts:\n      - http//es1:9200\n      - es2:9200\n      - es3:port\n",
            dir.path().join("data").display()
        ),
    );
    let err = refused_by_validate(&cfg);
    let f = cfg.display();
    for want in [
        format!("{f}:9:9: outputs.es.hosts[0]: host `http//es1:9200`"),
        format!("{f}:11:9: outputs.es.hosts[2]: host `es3:port`"),
    ] {
        assert!(err.contains(&want), "want `{want}` in:\n{err}");
    }
    assert!(err.contains("invalid (2 errors)"), "{err}");
}

/// A user fixing a file one `validate` at a time should not meet a second mistake in the same
/// component only after fixing the first: every mistake is listed in one pass, each at its
/// own line and column, with no false "missing field" for a key whose value was wrong.
#[test]
fn every_mistake_in_one_component_is_listed_in_one_pass() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_file(
        dir.path(),
        "many.yaml",
        &format!(
            "data_dir: {}\nhttp: {{ enabled: false }}\ninputs:\n  app:\n    type: file\n    paths: [/var/log/app.log]\n    start_at: middle\n    max_open_files: lots\n    multilin: {{}}\noutputs:\n  k:\n    type: kafka\n    inputs: [app]\n    topic: logs\n    brokers: [\"kafka//x:9092\"]\n    acks: 3\n    compression: lz5\n",
            dir.path().join("data").display()
        ),
    );
    let err = refused_by_validate(&cfg);
    let f = cfg.display();
    for want in [
        format!("{f}:7:15: inputs.app.start_at: unknown variant `middle`"),
        format!("{f}:8:21: inputs.app.max_open_files: expected a whole number (0 or more), found `lots`"),
        format!("{f}:9:5: inputs.app.multilin: unknown field `multilin`"),
        format!("{f}:15:15: outputs.k.brokers[0]: broker `kafka//x:9092`"),
        format!("{f}:16:11: outputs.k.acks: unknown variant `3`"),
        format!("{f}:17:18: outputs.k.compression: unknown variant `lz5`"),
    ] {
        assert!(err.contains(&want), "want `{want}` in:\n{err}");
    }
    assert!(!err.contains("missing field"), "{err}");
    assert!(err.contains("invalid (6 errors)"), "{err}");
    let mut t = Trawl::start(&cfg, Some(&dir.path().join("run.log")));
    assert_eq!(t.wait(Duration::from_secs(30)).code(), Some(1));
}
