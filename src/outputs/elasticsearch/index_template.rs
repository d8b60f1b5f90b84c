//! The index template the output installs before its first request (`setup.template.*`, named
//! after Filebeat's keys): a composable `_index_template` with the ECS mappings of
//! `ecs-mappings.json`, so that `client.ip` is an `ip`, `@timestamp` a `date`, `url.path` a
//! `keyword` in the indices (or data streams) the output writes, as dashboards expect.

use super::client::Client;
use crate::outputs::template::Template;
use serde::Deserialize;
use std::sync::atomic::{AtomicBool, Ordering};

/// ECS field mappings for logs, flow reports and HTTP transactions.
const ECS_MAPPINGS: &str = include_str!("ecs-mappings.json");

/// `setup:` on the output.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Setup {
    #[serde(default)]
    pub template: TemplateSetup,
}

/// `setup.template:` on the output.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateSetup {
    /// Install the template when it is absent; off for users who manage their own.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Template name; by default from the fixed start of `index` (`trawl`, `trawl-logs`).
    #[serde(default)]
    pub name: Option<String>,
    /// Index pattern it applies to; by default the fixed start of `index` followed by `*`.
    #[serde(default)]
    pub pattern: Option<String>,
    /// Replace a template of that name that is already there.
    #[serde(default)]
    pub overwrite: bool,
    /// Priority among composable templates matching the same index; by default 150 plus the
    /// length of the pattern's fixed start (`resolve`).
    #[serde(default)]
    pub priority: Option<u32>,
    /// Make matching names data streams (needs `op_type: create`).
    #[serde(default)]
    pub data_stream: bool,
}

fn yes() -> bool {
    true
}

/// Above Elasticsearch 8's built-in `logs-*-*` (100), as Beats do.
const BASE_PRIORITY: u32 = 150;

impl Default for TemplateSetup {
    fn default() -> Self {
        TemplateSetup {
            enabled: true,
            name: None,
            pattern: None,
            overwrite: false,
            priority: None,
            data_stream: false,
        }
    }
}

/// A template ready to install.
#[derive(Debug)]
pub struct IndexTemplate {
    pub name: String,
    pub pattern: String,
    overwrite: bool,
    body: Vec<u8>,
}

impl IndexTemplate {
    /// The template for an output writing to `index`, or `None` when installing is off.
    pub fn resolve(
        setup: &TemplateSetup,
        index: &Template,
    ) -> Result<Option<IndexTemplate>, String> {
        if !setup.enabled {
            return Ok(None);
        }
        // The part of the index name before its first field or date.
        let fixed = index
            .source()
            .split('%')
            .next()
            .unwrap_or_default()
            .to_owned();
        let pattern = match &setup.pattern {
            Some(p) if p.trim().is_empty() => {
                return Err("`setup.template.pattern` is empty".into())
            }
            Some(p) => p.clone(),
            None if fixed.is_empty() => {
                return Err(format!(
                    "index `{}` starts with a field or a date, so no index pattern follows from \
                     it: set `setup.template.pattern` (and `name`), or `setup.template.enabled: false`",
                    index.source()
                ))
            }
            None => format!("{fixed}*"),
        };
        let name = match &setup.name {
            Some(n) if n.trim().is_empty() => return Err("`setup.template.name` is empty".into()),
            Some(n) => n.clone(),
            None => {
                let base = pattern.trim_end_matches(['*', '-', '_', '.']);
                if base.starts_with("trawl") {
                    base.to_owned()
                } else {
                    format!("trawl-{base}")
                }
            }
        };
        if name
            .chars()
            .any(|c| c.is_ascii_uppercase() || " \"*\\<|,>/?#".contains(c))
        {
            return Err(format!(
                "`setup.template.name` `{name}`: lower case, without spaces or \" * \\ < | , > / ? #"
            ));
        }
        // Two outputs writing `logs-%Y` and `logs-app-%Y` install `logs-*` and `logs-app-*`: at
        // one priority the node refuses the second (overlapping patterns must differ in
        // priority) and its events would wait for ever. Overlapping prefix patterns differ in
        // length, so the longer, more specific one gets the higher priority and applies.
        let priority = setup.priority.unwrap_or_else(|| {
            let fixed_len = pattern.split(['*', '?']).next().unwrap_or_default().len();
            BASE_PRIORITY
                + u32::try_from(fixed_len)
                    .unwrap_or(u32::MAX - BASE_PRIORITY)
                    .min(1000)
        });
        let mappings: serde_json::Value =
            serde_json::from_str(ECS_MAPPINGS).map_err(|e| format!("ecs-mappings.json: {e}"))?;
        let mut body = serde_json::json!({
            "index_patterns": [pattern],
            "priority": priority,
            "template": { "mappings": mappings },
            "_meta": { "managed_by": "trawl", "trawl_version": env!("CARGO_PKG_VERSION") },
        });
        if setup.data_stream {
            body["data_stream"] = serde_json::json!({});
        }
        Ok(Some(IndexTemplate {
            name,
            pattern,
            overwrite: setup.overwrite,
            body: serde_json::to_vec(&body).map_err(|e| e.to_string())?,
        }))
    }
}

/// Installs the template once, before the first bulk request, and remembers that it did.
pub struct Installer {
    template: IndexTemplate,
    done: tokio::sync::Mutex<bool>,
    /// Set while installing fails, so that the failure is logged once.
    failing: AtomicBool,
}

impl Installer {
    pub fn new(template: IndexTemplate) -> Installer {
        Installer {
            template,
            done: tokio::sync::Mutex::new(false),
            failing: AtomicBool::new(false),
        }
    }

    /// True once the template is in place (installed now, earlier, or already there). False
    /// after a failure, logged once until it succeeds: the caller waits and asks again, so no
    /// event is indexed with guessed mappings.
    pub async fn ready(&self, client: &Client) -> bool {
        let mut done = self.done.lock().await;
        if *done {
            return true;
        }
        let t = &self.template;
        match self.install(client).await {
            Ok(what) => {
                tracing::info!(template = %t.name, pattern = %t.pattern, "index template {what}");
                self.failing.store(false, Ordering::Relaxed);
                *done = true;
                true
            }
            Err(e) => {
                if !self.failing.swap(true, Ordering::Relaxed) {
                    tracing::error!(
                        template = %t.name,
                        error = %e,
                        "cannot install the index template; events wait and it is tried again with backoff (set `setup.template.enabled: false` to manage templates yourself)"
                    );
                }
                false
            }
        }
    }

    async fn install(&self, client: &Client) -> Result<&'static str, String> {
        let t = &self.template;
        let path = format!("/_index_template/{}", t.name);
        if !t.overwrite {
            let there = client.send(reqwest::Method::HEAD, &path, None).await?;
            match there.status {
                200 => return Ok("already there"),
                404 => {}
                s => return Err(format!("HEAD {path} answered HTTP {s}")),
            }
        }
        let answer = client
            .send(reqwest::Method::PUT, &path, Some(&t.body))
            .await?;
        if (200..300).contains(&answer.status) {
            Ok("installed")
        } else {
            let body = String::from_utf8_lossy(&answer.body[..answer.body.len().min(500)]);
            Err(format!(
                "PUT {path} answered HTTP {}: {body}",
                answer.status
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(index: &str, setup: TemplateSetup) -> Result<Option<IndexTemplate>, String> {
        IndexTemplate::resolve(&setup, &Template::parse(index).unwrap())
    }

    #[test]
    fn name_and_pattern_follow_the_fixed_start_of_the_index() {
        let t = resolve("trawl-%Y.%m.%d", TemplateSetup::default())
            .unwrap()
            .unwrap();
        assert_eq!((t.name.as_str(), t.pattern.as_str()), ("trawl", "trawl-*"));
        let t = resolve(
            "logs-%{[kubernetes.namespace]}-%Y",
            TemplateSetup::default(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (t.name.as_str(), t.pattern.as_str()),
            ("trawl-logs", "logs-*")
        );
        let err = resolve("%{[ns]}-logs", TemplateSetup::default()).unwrap_err();
        assert!(err.contains("setup.template.pattern"), "{err}");
        let off = TemplateSetup {
            enabled: false,
            ..TemplateSetup::default()
        };
        assert!(resolve("%{[ns]}-logs", off).unwrap().is_none());
    }

    #[test]
    fn the_body_is_a_composable_template_with_ecs_types() {
        let setup = TemplateSetup {
            data_stream: true,
            ..TemplateSetup::default()
        };
        let t = resolve("flows", setup).unwrap().unwrap();
        let body: serde_json::Value = serde_json::from_slice(&t.body).unwrap();
        assert_eq!(body["index_patterns"][0], "flows*");
        assert_eq!(body["priority"], 155, "150 and the length of `flows`");
        assert_eq!(body["data_stream"], serde_json::json!({}));
        let p = &body["template"]["mappings"]["properties"];
        assert_eq!(p["@timestamp"]["type"], "date");
        assert_eq!(p["client"]["properties"]["ip"]["type"], "ip");
        assert_eq!(p["url"]["properties"]["path"]["type"], "keyword");
        assert_eq!(
            p["http"]["properties"]["response"]["properties"]["status_code"]["type"],
            "long"
        );
    }
}
