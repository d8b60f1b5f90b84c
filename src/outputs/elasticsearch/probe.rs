//! `trawl test output` for Elasticsearch and OpenSearch: per host, whether it answers, its
//! version, whether the credentials are accepted, and whether the index template is in place.

use super::client::{without_userinfo, Client};
use super::index_template::IndexTemplate;
use super::Config;
use crate::outputs::probe::Check;

/// Checks every host of `config` in turn (a host that is down is reported, not skipped).
pub async fn probe(config: &Config) -> Vec<Check> {
    let mut checks = Vec::new();
    let template = match IndexTemplate::resolve(&config.setup.template, &config.index) {
        Ok(t) => t,
        Err(e) => return vec![Check::failed("index template", e)],
    };
    for host in &config.hosts {
        let name = without_userinfo(host.as_str());
        let one = Config {
            hosts: vec![host.clone()],
            ..config.clone()
        };
        let client = match Client::new(&one) {
            Ok(c) => c,
            Err(e) => {
                checks.push(Check::failed(name, e));
                continue;
            }
        };
        let answer = match client.send(reqwest::Method::GET, "/", None).await {
            Ok(a) => a,
            Err(e) => {
                checks.push(Check::failed(format!("{name} reachable"), e));
                continue;
            }
        };
        checks.push(Check::ok(format!("{name} reachable"), "answered"));
        let with_credentials =
            config.username.is_some() || config.api_key.is_some() || host.as_str() != name.as_str();
        match answer.status {
            200 => {}
            401 | 403 => {
                let detail = if with_credentials {
                    format!(
                        "refused ({}): check username/password or api_key",
                        answer.status
                    )
                } else {
                    format!(
                        "the cluster asks for credentials ({}) and none are configured",
                        answer.status
                    )
                };
                checks.push(Check::failed(format!("{name} credentials"), detail));
                continue;
            }
            s => {
                checks.push(Check::failed(
                    format!("{name} version"),
                    format!("GET / answered {s}: {}", short(&answer.body)),
                ));
                continue;
            }
        }
        checks.push(Check::ok(
            format!("{name} credentials"),
            if with_credentials {
                "accepted"
            } else {
                "none configured, none needed"
            },
        ));
        checks.push(version_check(&name, &answer.body));
        if let Some(t) = &template {
            let path = format!("/_index_template/{}", t.name);
            let what = format!("{name} index template {}", t.name);
            checks.push(
                match client.send(reqwest::Method::HEAD, &path, None).await {
                    Ok(a) if a.status == 200 => Check::ok(what, "present"),
                    Ok(a) if a.status == 404 => Check::note(
                        what,
                        format!(
                            "absent: trawl installs it (for `{}`) before its first delivery",
                            t.pattern
                        ),
                    ),
                    Ok(a) => Check::failed(what, format!("HEAD {path} answered {}", a.status)),
                    Err(e) => Check::failed(what, e),
                },
            );
        }
    }
    checks
}

/// `version.number` and `version.distribution` (OpenSearch sets it) of the root answer.
fn version_check(name: &str, body: &[u8]) -> Check {
    let what = format!("{name} version");
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return Check::failed(what, format!("GET / is not JSON: {}", short(body)));
    };
    let Some(number) = v["version"]["number"].as_str() else {
        return Check::failed(what, format!("no version.number in {}", short(body)));
    };
    let product = match v["version"]["distribution"].as_str() {
        Some("opensearch") => "OpenSearch",
        Some(other) => other,
        None => "Elasticsearch",
    };
    Check::ok(what, format!("{product} {number}"))
}

fn short(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    text.chars().take(200).collect()
}
