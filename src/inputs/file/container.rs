//! Container log formats and Kubernetes path metadata: Docker json-file and CRI lines are
//! unwrapped into their message, stream and time (partial lines flagged for joining), and the
//! pod, namespace, container and ids are read from the log file's path.

use crate::event::{Map, Value};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use std::borrow::Cow;
use std::path::Path;

/// The format of a file's lines.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// Detected from the file's first line: Docker json-file, CRI, or plain text.
    #[default]
    Auto,
    /// Plain lines.
    Raw,
    /// Docker json-file: `{"log":"..\n","stream":"stdout","time":".."}`.
    Docker,
    /// CRI (containerd, CRI-O): `<time> <stream> <P|F> <message>`.
    Cri,
}

/// One line of a container log, unwrapped.
#[derive(Debug, PartialEq)]
pub struct Decoded<'a> {
    pub message: Cow<'a, [u8]>,
    pub stream: Option<&'static str>,
    pub time: Option<DateTime<Utc>>,
    /// The runtime split a long line: the message continues in the next record.
    pub partial: bool,
}

/// Guesses a file's format from its first line.
pub fn detect(line: &[u8]) -> Format {
    if line.first() == Some(&b'{') && decode_docker(line).is_some() {
        Format::Docker
    } else if decode_cri(line).is_some() {
        Format::Cri
    } else {
        Format::Raw
    }
}

fn stream_name(s: &[u8]) -> Option<&'static str> {
    match s {
        b"stdout" => Some("stdout"),
        b"stderr" => Some("stderr"),
        _ => None,
    }
}

/// `2016-10-06T00:17:09.669794202Z stdout F message`; `None` when the line is not CRI.
pub fn decode_cri(line: &[u8]) -> Option<Decoded<'_>> {
    let sp1 = memchr::memchr(b' ', line)?;
    let time = std::str::from_utf8(&line[..sp1]).ok()?;
    let time = DateTime::parse_from_rfc3339(time).ok()?.with_timezone(&Utc);
    let rest = &line[sp1 + 1..];
    let sp2 = memchr::memchr(b' ', rest)?;
    let stream = stream_name(&rest[..sp2])?;
    let rest = &rest[sp2 + 1..];
    // The tag field: `F` or `P`, possibly followed by `:`-separated extra tags.
    let (tag, message) = match memchr::memchr(b' ', rest) {
        Some(sp3) => (&rest[..sp3], &rest[sp3 + 1..]),
        None => (rest, &rest[rest.len()..]),
    };
    let partial = match tag.split(|b| *b == b':').next() {
        Some(b"P") => true,
        Some(b"F") => false,
        _ => return None,
    };
    Some(Decoded {
        message: Cow::Borrowed(message),
        stream: Some(stream),
        time: Some(time),
        partial,
    })
}

#[derive(Deserialize)]
struct DockerLine<'a> {
    #[serde(borrow)]
    log: Cow<'a, str>,
    #[serde(default, borrow)]
    stream: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    time: Option<Cow<'a, str>>,
}

/// A Docker json-file record; `None` when the line is not one. A `log` without a final newline
/// is a piece of a line Docker split (at 16 KiB).
pub fn decode_docker(line: &[u8]) -> Option<Decoded<'_>> {
    let rec: DockerLine = serde_json::from_slice(line).ok()?;
    let mut text = rec.log.into_owned();
    let partial = !text.ends_with('\n');
    if !partial {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    Some(Decoded {
        message: Cow::Owned(text.into_bytes()),
        stream: rec
            .stream
            .as_deref()
            .and_then(|s| stream_name(s.as_bytes())),
        time: rec
            .time
            .as_deref()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc)),
        partial,
    })
}

/// Kubernetes and container fields from a log path, as an object to merge into events:
/// - `/var/log/containers/<pod>_<namespace>_<container>-<64 hex id>.log`
/// - `/var/log/pods/<namespace>_<pod>_<uid>/<container>/<N>.log`
pub fn kubernetes_metadata(path: &Path) -> Option<Map> {
    let name = path.file_name()?.to_str()?;
    let parent = path.parent()?;
    if parent.file_name()?.to_str()? == "containers" {
        let stem = name.strip_suffix(".log")?;
        let mut parts = stem.splitn(3, '_');
        let (pod, ns, rest) = (parts.next()?, parts.next()?, parts.next()?);
        let dash = rest.rfind('-')?;
        let (container, id) = (&rest[..dash], &rest[dash + 1..]);
        if pod.is_empty()
            || ns.is_empty()
            || container.is_empty()
            || id.len() != 64
            || !id.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return None;
        }
        // kubelet's link points into the pod's folder, whose name holds the pod's uid.
        let target = std::fs::read_link(path).ok().map(|t| parent.join(t));
        let uid = target
            .as_deref()
            .and_then(pod_folder)
            .and_then(|(n, p, uid)| (n == ns && p == pod).then_some(uid));
        let mut m = k8s(ns, pod, container, uid.as_deref());
        let mut c = Map::with_capacity(1);
        c.insert("id", Value::from(id));
        m.insert("container", Value::Object(c));
        return Some(m);
    }
    let container = parent.file_name()?.to_str()?;
    let (ns, pod, uid) = pod_folder(path)?;
    Some(k8s(&ns, &pod, container, Some(&uid)))
}

/// Namespace, pod name and uid of `/var/log/pods/<namespace>_<pod>_<uid>/<container>/N.log`.
fn pod_folder(path: &Path) -> Option<(String, String, String)> {
    let name = path.file_name()?.to_str()?;
    let pod_dir = path.parent()?.parent()?;
    if pod_dir.parent()?.file_name()?.to_str()? != "pods" || !is_pod_log_name(name) {
        return None;
    }
    let mut parts = pod_dir.file_name()?.to_str()?.splitn(3, '_');
    let (ns, pod, uid) = (parts.next()?, parts.next()?, parts.next()?);
    if ns.is_empty() || pod.is_empty() || uid.is_empty() {
        return None;
    }
    Some((ns.to_owned(), pod.to_owned(), uid.to_owned()))
}

/// `N.log`, or kubelet's rotated `N.log.<date>-<time>` that a rotation leaves behind.
fn is_pod_log_name(name: &str) -> bool {
    let Some((n, rest)) = name.split_once(".log") else {
        return false;
    };
    !n.is_empty()
        && n.bytes().all(|b| b.is_ascii_digit())
        && (rest.is_empty() || rest.starts_with('.'))
}

fn k8s(ns: &str, pod: &str, container: &str, uid: Option<&str>) -> Map {
    let mut p = Map::with_capacity(2);
    p.insert("name", Value::from(pod));
    if let Some(uid) = uid {
        p.insert("uid", Value::from(uid));
    }
    let mut c = Map::with_capacity(1);
    c.insert("name", Value::from(container));
    let mut k = Map::with_capacity(3);
    k.insert("pod", Value::Object(p));
    k.insert("namespace", Value::from(ns));
    k.insert("container", Value::Object(c));
    let mut m = Map::with_capacity(2);
    m.insert("kubernetes", Value::Object(k));
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cri_full_and_partial() {
        let d = decode_cri(b"2016-10-06T00:17:09.669794202Z stdout P hello ").unwrap();
        assert!(d.partial);
        assert_eq!(&*d.message, b"hello ");
        assert_eq!(d.stream, Some("stdout"));
        let d = decode_cri(b"2016-10-06T00:17:09.669794202Z stderr F").unwrap();
        assert!(!d.partial && d.message.is_empty());
        assert!(decode_cri(b"2016-10-06 not cri").is_none());
        assert!(decode_cri(b"2016-10-06T00:17:09Z stdin F x").is_none());
        assert_eq!(
            detect(b"2016-10-06T00:17:09.669794202Z stdout F x"),
            Format::Cri
        );
    }

    #[test]
    fn docker_lines() {
        let d = decode_docker(
            br#"{"log":"hi there\n","stream":"stderr","time":"2019-04-30T10:00:00.123456789Z"}"#,
        )
        .unwrap();
        assert_eq!(&*d.message, b"hi there");
        assert_eq!(d.stream, Some("stderr"));
        assert!(!d.partial);
        assert_eq!(d.time.unwrap().timestamp_subsec_nanos(), 123456789);
        assert!(decode_docker(br#"{"log":"part"}"#).unwrap().partial);
        assert_eq!(detect(br#"{"msg":"not docker"}"#), Format::Raw);
    }

    #[test]
    fn kubernetes_paths() {
        let id = "a".repeat(64);
        let m = kubernetes_metadata(Path::new(&format!(
            "/var/log/containers/web-7d9_shop_nginx-{id}.log"
        )))
        .unwrap();
        let v = Value::Object(m).to_json();
        assert_eq!(v["kubernetes"]["pod"]["name"], "web-7d9");
        assert_eq!(v["kubernetes"]["namespace"], "shop");
        assert_eq!(v["kubernetes"]["container"]["name"], "nginx");
        assert_eq!(v["container"]["id"], id.as_str());
        let m = kubernetes_metadata(Path::new("/var/log/pods/shop_web-7d9_0b1c-22/nginx/0.log"))
            .unwrap();
        let v = Value::Object(m).to_json();
        assert_eq!(v["kubernetes"]["pod"]["uid"], "0b1c-22");
        assert_eq!(v["kubernetes"]["container"]["name"], "nginx");
        assert!(kubernetes_metadata(Path::new("/var/log/syslog")).is_none());
        let rotated = Path::new("/var/log/pods/shop_web-7d9_0b1c-22/nginx/0.log.20261123-100000");
        assert!(kubernetes_metadata(rotated).is_some());
        let other = Path::new("/var/log/pods/shop_web-7d9_0b1c-22/nginx/debug.log");
        assert!(kubernetes_metadata(other).is_none());
    }

    /// kubelet's `/var/log/containers` link names no uid; its target's folder does.
    #[test]
    fn a_containers_link_gives_the_pod_uid_of_its_target() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("pods/shop_web-7d9_0b1c-22/nginx");
        std::fs::create_dir_all(&target).unwrap();
        std::fs::create_dir_all(dir.path().join("containers")).unwrap();
        let id = "b".repeat(64);
        let uid_of = |link: &str, to: &Path| {
            let path = dir.path().join("containers").join(link);
            std::os::unix::fs::symlink(to, &path).unwrap();
            let v = Value::Object(kubernetes_metadata(&path).unwrap()).to_json();
            assert_eq!(v["container"]["id"], id.as_str());
            v["kubernetes"]["pod"]["uid"].as_str().map(str::to_owned)
        };
        let absolute = uid_of(
            &format!("web-7d9_shop_nginx-{id}.log"),
            &target.join("0.log"),
        );
        assert_eq!(absolute.as_deref(), Some("0b1c-22"));
        let relative = uid_of(
            &format!("web-7d9_shop_sidecar-{id}.log"),
            Path::new("../pods/shop_web-7d9_0b1c-22/nginx/1.log"),
        );
        assert_eq!(relative.as_deref(), Some("0b1c-22"));
        // A link into another pod's folder: its uid is not this pod's.
        let elsewhere = uid_of(&format!("api-1_shop_app-{id}.log"), &target.join("0.log"));
        assert_eq!(elsewhere, None);
    }
}
