//! A real Prometheus server (Debian's package `prometheus`):
//! [`Prometheus::start`] writes its configuration in a temp dir (one scrape
//! job of the given targets every second, the given rule files), runs
//! `/usr/bin/prometheus` on a free 127.0.0.1 port with its storage there,
//! waits until it is ready, and kills it by PID on Drop (also when the test
//! fails). [`Prometheus::query`] asks its HTTP API.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The server binary.
pub const PROMETHEUS_BINARY: &str = "/usr/bin/prometheus";

/// A running Prometheus server, our child.
pub struct Prometheus {
    child: Child,
    dir: tempfile::TempDir,
    /// Its base URL, e.g. `http://127.0.0.1:41234`.
    pub url: String,
}

impl Prometheus {
    /// Starts a server scraping `targets` (`host:port`) every second as job
    /// `job_name` with `scrape_config` (more YAML keys of that job, indented
    /// by four spaces, e.g. `"    honor_labels: true\n"`), evaluating
    /// `rule_files` every second.
    pub fn start(
        job_name: &str,
        targets: &[String],
        scrape_config: &str,
        rule_files: &[&Path],
    ) -> Prometheus {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = crate::registry::free_port();
        let targets = targets
            .iter()
            .map(|target| format!("\"{target}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let rules = rule_files
            .iter()
            .map(|file| format!("  - \"{}\"\n", file.display()))
            .collect::<String>();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n{rules}\
             scrape_configs:\n  - job_name: {job_name}\n{scrape_config}\
             \x20   static_configs:\n      - targets: [{targets}]\n"
        );
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).expect("writing prometheus.yml");
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("a log file");
        let child = Command::new(PROMETHEUS_BINARY)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("cloning the log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|error| {
                panic!("starting {PROMETHEUS_BINARY} (package prometheus): {error}")
            });
        let mut prometheus = Prometheus {
            child,
            dir,
            url: format!("http://127.0.0.1:{port}"),
        };
        let ready = format!("{}/-/ready", prometheus.url);
        let agent = agent();
        let answered = crate::wait::poll(crate::DEADLINE, || {
            if let Ok(Some(status)) = prometheus.child.try_wait() {
                panic!("prometheus exited ({status}):\n{}", prometheus.log());
            }
            agent
                .get(&ready)
                .call()
                .is_ok_and(|response| response.status().as_u16() == 200)
                .then_some(())
        });
        assert!(
            answered.is_some(),
            "prometheus never became ready:\n{}",
            prometheus.log()
        );
        prometheus
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    /// `GET /api/v1/PATH?query=QUERY` (PATH `query`, `rules`, `targets`,
    /// ...): the JSON answer's `data`, or None when it did not answer with
    /// status `success`.
    pub fn api(&self, path: &str, query: Option<&str>) -> Option<serde_json::Value> {
        let agent = agent();
        let mut request = agent.get(&format!("{}/api/v1/{path}", self.url));
        if let Some(query) = query {
            request = request.query("query", query);
        }
        let mut response = request.call().ok()?;
        let body: serde_json::Value =
            serde_json::from_str(&response.body_mut().read_to_string().ok()?).ok()?;
        (body["status"] == "success").then(|| body["data"].clone())
    }

    /// The result vector of an instant `query`: each series' labels and value.
    pub fn query(&self, query: &str) -> Vec<(serde_json::Value, f64)> {
        let Some(data) = self.api("query", Some(query)) else {
            return Vec::new();
        };
        data["result"]
            .as_array()
            .map(|results| {
                results
                    .iter()
                    .filter_map(|result| {
                        let value = result["value"][1].as_str()?.parse().ok()?;
                        Some((result["metric"].clone(), value))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
