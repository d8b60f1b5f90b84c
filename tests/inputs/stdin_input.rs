//! The `stdin` input through the real binary: empty lines are skipped as the `file` input skips
//! them, while lines of spaces are content and shipped.

use std::io::Write;
use std::process::{Command, Stdio};

#[test]
fn empty_lines_are_skipped_like_the_file_input_does() {
    let dir = tempfile::tempdir().unwrap();
    let input = "first\n\n\r\n   \nlast\n\n";
    // The same bytes through the file input, read to their end, then stdin.
    let log = dir.path().join("app.log");
    std::fs::write(&log, input).unwrap();
    let run = |inputs: &str, feed: Option<&str>| -> Vec<String> {
        let p = dir.path().join("p.yaml");
        std::fs::write(
            &p,
            format!(
                "data_dir: {}/data\nhttp: {{ enabled: false }}\ninputs:\n  app: {inputs}\noutputs:\n  out: {{ type: stdout }}\n",
                dir.path().display()
            ),
        )
        .unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_trawl"))
            .args(["run", "-c"])
            .arg(&p)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        match feed {
            Some(text) => {
                stdin.write_all(text.as_bytes()).unwrap();
                drop(stdin);
            }
            None => {
                // The file input never ends by itself: stop it once it has shipped the last
                // line (bounded wait), then read what it printed.
                drop(stdin);
                let stdout = child.stdout.take().unwrap();
                let reader = std::thread::spawn(move || {
                    use std::io::BufRead;
                    let mut lines = Vec::new();
                    for l in std::io::BufReader::new(stdout).lines() {
                        let l = l.unwrap();
                        let last = l.contains("\"last\"");
                        lines.push(l);
                        if last {
                            break;
                        }
                    }
                    lines
                });
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
                while !reader.is_finished() && std::time::Instant::now() < deadline {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
                let _ = child.wait();
                return reader
                    .join()
                    .unwrap()
                    .iter()
                    .map(|l| message_of(l))
                    .collect();
            }
        }
        let out = child.wait_with_output().unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["message"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    };
    let from_stdin = run("{ type: stdin }", Some(input));
    assert_eq!(from_stdin, vec!["first", "   ", "last"]);
    let from_file = run(
        &format!("{{ type: file, paths: [\"{}\"] }}", log.display()),
        None,
    );
    assert_eq!(
        from_file, from_stdin,
        "stdin and file agree on which lines are events"
    );
}

fn message_of(line: &str) -> String {
    serde_json::from_str::<serde_json::Value>(line).unwrap()["message"]
        .as_str()
        .unwrap()
        .to_owned()
}
